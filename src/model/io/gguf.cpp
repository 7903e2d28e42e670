// Reading and validating GGUF v2/v3 files. Every count and length is checked against the bytes
// left in the file before anything is allocated, so a lying header cannot cause a huge allocation.
#include <algorithm>
#include <cstring>
#include <set>

#include "model/io/checked.h"
#include "model/io/gguf.h"
#include "model/io/gguf_detail.h"
#include "util/error.h"

namespace drafteu::io {
namespace {

using detail::gguf_fixed_size;

// A bounds-checked little-endian reader over the mapped file.
class Cursor {
 public:
  Cursor(const std::filesystem::path& path, const uint8_t* data, size_t size)
      : path_(path), data_(data), size_(size) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <typename... Args>
  [[noreturn]] void bad(const Args&... args) const {
    fail(path_.string(), ": invalid GGUF file: ", args...);
  }

  void need(uint64_t n, std::string_view what) const {
    if (n > remaining())
      bad("truncated: ", what, " at offset ", pos_, " needs ", n, " bytes, only ", remaining(),
          " remain");
  }
  template <typename T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(std::string_view what) {
    uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      bad(what, ": string length ", len, " at offset ", pos_ - 8, " exceeds the ", remaining(),
          " bytes left in the file");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const std::filesystem::path& path_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

bool valid_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::F64);
}

GgufScalar read_scalar(Cursor& c, GgufType t, const std::string& what) {
  switch (t) {
    case GgufType::U8:
      return uint64_t{c.read<uint8_t>(what)};
    case GgufType::I8:
      return int64_t{c.read<int8_t>(what)};
    case GgufType::U16:
      return uint64_t{c.read<uint16_t>(what)};
    case GgufType::I16:
      return int64_t{c.read<int16_t>(what)};
    case GgufType::U32:
      return uint64_t{c.read<uint32_t>(what)};
    case GgufType::I32:
      return int64_t{c.read<int32_t>(what)};
    case GgufType::U64:
      return c.read<uint64_t>(what);
    case GgufType::I64:
      return c.read<int64_t>(what);
    case GgufType::F32:
      return double{c.read<float>(what)};
    case GgufType::F64:
      return c.read<double>(what);
    case GgufType::BOOL: {
      uint8_t b = c.read<uint8_t>(what);
      if (b > 1) c.bad(what, ": bool value ", int{b}, " is neither 0 nor 1");
      return b == 1;
    }
    case GgufType::STRING:
      return c.str(what);
    case GgufType::ARRAY:
      break;
  }
  c.bad(what, ": unexpected value type ", static_cast<uint32_t>(t));
}

GgufValue read_value(Cursor& c, uint32_t raw_type, const std::string& key) {
  const std::string what = cat("key '", key, "'");
  if (!valid_type(raw_type)) c.bad(what, ": unknown value type ", raw_type);
  GgufValue v;
  v.type = static_cast<GgufType>(raw_type);
  if (v.type != GgufType::ARRAY) {
    v.scalar = read_scalar(c, v.type, what);
    return v;
  }
  uint32_t elem = c.read<uint32_t>(what);
  if (!valid_type(elem)) c.bad(what, ": unknown array element type ", elem);
  if (elem == static_cast<uint32_t>(GgufType::ARRAY))
    c.bad(what, ": arrays of arrays are not supported");
  v.elem_type = static_cast<GgufType>(elem);
  uint64_t n = c.read<uint64_t>(what);
  // A string element takes at least its 8-byte length.
  size_t min_elem = v.elem_type == GgufType::STRING ? 8 : gguf_fixed_size(v.elem_type);
  if (n > c.remaining() / min_elem)
    c.bad(what, ": array length ", n, " of ", gguf_type_name(v.elem_type), " exceeds the ",
          c.remaining(), " bytes left in the file");
  // Each GgufScalar is ~40 bytes, so cap the up-front reserve; growth is then bounded by the
  // elements actually present in the file.
  v.array.reserve(std::min<uint64_t>(n, 1 << 16));
  for (uint64_t i = 0; i < n; ++i) v.array.push_back(read_scalar(c, v.elem_type, what));
  return v;
}

}  // namespace

std::string_view gguf_type_name(GgufType t) {
  static constexpr std::string_view names[] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                               "i32", "f32", "bool", "string", "array",
                                               "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(t);
  return i < std::size(names) ? names[i] : std::string_view("?");
}

std::string ggml_type_name(uint32_t type) {
  static constexpr const char* names[] = {
      "F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
  if (type < std::size(names)) return names[type];
  return "unknown";
}

GgufFile::GgufFile(const std::filesystem::path& path) : map_(path) {
  Cursor c(path, map_.data(), map_.size());
  uint32_t magic = c.read<uint32_t>("magic");
  if (magic != detail::kGgufMagic) c.bad("bad magic (not a GGUF file)");
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    c.bad("unsupported version ", version_, " (only GGUF v2 and v3 are read)");
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each kv needs >= 8 (key length) + 4 (type) + 1 bytes; each tensor info >= 8 + 4 + 4 + 8.
  if (n_kv > c.remaining() / 13)
    c.bad("metadata count ", n_kv, " is impossible for the ", c.remaining(), " bytes left");
  if (n_tensors > c.remaining() / 24)
    c.bad("tensor count ", n_tensors, " is impossible for the ", c.remaining(), " bytes left");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str(cat("metadata key #", i));
    uint32_t type = c.read<uint32_t>(cat("type of key '", key, "'"));
    GgufValue v = read_value(c, type, key);
    if (!kv_.emplace(key, std::move(v)).second) c.bad("key '", key, "' appears twice");
  }

  if (auto it = kv_.find("general.alignment"); it != kv_.end()) {
    const GgufValue& a = it->second;
    if (a.type != GgufType::U32) c.bad("key 'general.alignment' must be u32");
    uint64_t v = std::get<uint64_t>(a.scalar);
    if (v == 0 || (v & (v - 1)) != 0)
      c.bad("key 'general.alignment' = ", v, " is not a power of two");
    alignment_ = static_cast<uint32_t>(v);
  }

  std::vector<uint64_t> offsets;
  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = c.str(cat("tensor #", i, " name"));
    const std::string what = cat("tensor '", t.name, "'");
    uint32_t n_dims = c.read<uint32_t>(what);
    if (n_dims > detail::kGgmlMaxDims)
      c.bad(what, ": ", n_dims, " dimensions (at most ", detail::kGgmlMaxDims, ")");
    for (uint32_t d = 0; d < n_dims; ++d) {
      auto ne = c.read<int64_t>(what);
      if (ne < 0) c.bad(what, ": negative dimension ", ne);
      t.ne.push_back(ne);
    }
    uint32_t type = c.read<uint32_t>(what);
    offsets.push_back(c.read<uint64_t>(what));
    size_t elem = detail::ggml_elem_size(type);
    if (elem == 0)
      fail(path.string(), ": tensor '", t.name, "' has ggml type ", type, " (",
           ggml_type_name(type),
           "); only F32, F16 and BF16 are supported (quantized models are not)");
    t.type = static_cast<GgmlType>(type);
    t.dtype = detail::ggml_to_dtype(t.type);
    t.shape.assign(t.ne.rbegin(), t.ne.rend());
    auto nbytes = detail::checked_nbytes(t.ne, elem);
    if (!nbytes || !detail::checked_numel_prefixes(t.ne)) c.bad(what, ": shape overflows");
    t.nbytes = *nbytes;
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment after the tensor infos.
  const size_t size = map_.size();
  const uint64_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (!tensors_.empty() && data_start > size)
    c.bad("data section at offset ", data_start, " lies past the end of the file (", size,
          " bytes)");
  const uint64_t data_size = tensors_.empty() ? 0 : size - data_start;

  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) {
    GgufTensor& t = tensors_[i];
    uint64_t off = offsets[i];
    if (off % alignment_ != 0)
      c.bad("tensor '", t.name, "': offset ", off, " is not a multiple of the alignment ",
            alignment_);
    if (off > data_size || t.nbytes > data_size - off)
      c.bad("tensor '", t.name, "': data [", off, ", +", t.nbytes, ") runs past the ", data_size,
            "-byte data section");
    t.data = map_.data() + data_start + off;
    order[i] = i;
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return offsets[a] < offsets[b]; });
  for (size_t k = 1; k < order.size(); ++k) {
    const size_t a = order[k - 1], b = order[k];
    if (offsets[a] + tensors_[a].nbytes > offsets[b])
      c.bad("tensor '", tensors_[b].name, "' overlaps tensor '", tensors_[a].name, "'");
  }
  std::set<std::string_view> names;
  for (const auto& t : tensors_)
    if (!names.insert(t.name).second) c.bad("tensor '", t.name, "' appears twice");
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace drafteu::io
