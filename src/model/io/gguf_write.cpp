// Writing GGUF v3 files in the layout llama.cpp's reader expects (every tensor padded).
#include <limits>
#include <set>
#include <utility>

#include "model/io/checked.h"
#include "model/io/gguf.h"
#include "model/io/gguf_detail.h"
#include "util/atomic_writer.h"
#include "util/error.h"

namespace drafteu::io {
namespace {

class HeaderBuilder {
 public:
  explicit HeaderBuilder(const std::filesystem::path& path) : path_(path) {}
  std::string& bytes() { return buf_; }

  template <typename T>
  void put(T v) {
    buf_.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    buf_.append(s);
  }

  void put_scalar(const std::string& key, GgufType t, const GgufScalar& s) {
    switch (t) {
      case GgufType::U8:
        return put(integer<uint8_t>(key, s));
      case GgufType::I8:
        return put(integer<int8_t>(key, s));
      case GgufType::U16:
        return put(integer<uint16_t>(key, s));
      case GgufType::I16:
        return put(integer<int16_t>(key, s));
      case GgufType::U32:
        return put(integer<uint32_t>(key, s));
      case GgufType::I32:
        return put(integer<int32_t>(key, s));
      case GgufType::U64:
        return put(integer<uint64_t>(key, s));
      case GgufType::I64:
        return put(integer<int64_t>(key, s));
      case GgufType::F32:
        return put(static_cast<float>(number(key, s)));
      case GgufType::F64:
        return put(number(key, s));
      case GgufType::BOOL:
        if (!std::holds_alternative<bool>(s)) bad(key, "bool value must hold a bool");
        return put<uint8_t>(std::get<bool>(s) ? 1 : 0);
      case GgufType::STRING:
        if (!std::holds_alternative<std::string>(s)) bad(key, "string value must hold a string");
        return put_string(std::get<std::string>(s));
      case GgufType::ARRAY:
        break;
    }
    bad(key, "invalid value type ", static_cast<uint32_t>(t));
  }

  void put_value(const std::string& key, const GgufValue& v) {
    put(static_cast<uint32_t>(v.type));
    if (v.type != GgufType::ARRAY) return put_scalar(key, v.type, v.scalar);
    if (v.elem_type == GgufType::ARRAY) bad(key, "arrays of arrays are not supported");
    put(static_cast<uint32_t>(v.elem_type));
    put<uint64_t>(v.array.size());
    for (const auto& s : v.array) put_scalar(key, v.elem_type, s);
  }

  template <typename... Args>
  [[noreturn]] void bad(const std::string& key, const Args&... args) const {
    fail(path_.string(), ": cannot write GGUF key '", key, "': ", args...);
  }

 private:
  template <typename T>
  T integer(const std::string& key, const GgufScalar& s) const {
    bool ok = false;
    T out{};
    if (const auto* i = std::get_if<int64_t>(&s)) {
      ok = std::in_range<T>(*i);
      out = static_cast<T>(*i);
    } else if (const auto* u = std::get_if<uint64_t>(&s)) {
      ok = std::in_range<T>(*u);
      out = static_cast<T>(*u);
    } else {
      bad(key, "integer value must hold int64_t or uint64_t");
    }
    if (!ok) bad(key, "value does not fit the declared integer type");
    return out;
  }
  double number(const std::string& key, const GgufScalar& s) const {
    if (const auto* d = std::get_if<double>(&s)) return *d;
    if (const auto* i = std::get_if<int64_t>(&s)) return static_cast<double>(*i);
    if (const auto* u = std::get_if<uint64_t>(&s)) return static_cast<double>(*u);
    bad(key, "float value must hold a number");
  }

  const std::filesystem::path& path_;
  std::string buf_;
};

uint64_t pad_to(uint64_t n, uint64_t a) {
  return (n + a - 1) / a * a;
}

}  // namespace

void write_gguf(const std::filesystem::path& path, const std::map<std::string, GgufValue>& metadata,
                const std::vector<GgufTensorToWrite>& tensors, uint32_t alignment) {
  const std::string where = path.string();
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    fail(where, ": GGUF alignment ", alignment, " is not a power of two");

  std::map<std::string, GgufValue> kv = metadata;
  if (auto it = kv.find("general.alignment"); it != kv.end()) {
    const auto* v = std::get_if<uint64_t>(&it->second.scalar);
    if (it->second.type != GgufType::U32 || !v || *v != alignment)
      fail(where, ": metadata 'general.alignment' must be u32 ", alignment);
  } else if (alignment != 32) {
    kv["general.alignment"] = GgufValue{GgufType::U32, uint64_t{alignment}, {}, {}};
  }

  HeaderBuilder h(path);
  h.put(detail::kGgufMagic);
  h.put(detail::kGgufVersion);
  h.put<uint64_t>(tensors.size());
  h.put<uint64_t>(kv.size());
  for (const auto& [key, value] : kv) {
    h.put_string(key);
    h.put_value(key, value);
  }

  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const std::string what = cat(where, ": cannot write GGUF tensor '", t.name, "': ");
    if (!names.insert(t.name).second) fail(what, "name given twice");
    size_t elem = detail::ggml_elem_size(static_cast<uint32_t>(t.type));
    if (elem == 0) fail(what, "unsupported ggml type ", static_cast<uint32_t>(t.type));
    if (t.shape.empty() || t.shape.size() > detail::kGgmlMaxDims)
      fail(what, t.shape.size(), " dimensions (1 to ", detail::kGgmlMaxDims, " allowed)");
    auto nbytes = detail::checked_nbytes(t.shape, elem);
    if (!nbytes) fail(what, "negative or overflowing shape");
    if (*nbytes != t.nbytes) fail(what, "nbytes ", t.nbytes, " but shape needs ", *nbytes);
    if (t.nbytes > 0 && !t.data) fail(what, "data is null");
    h.put_string(t.name);
    h.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) h.put<int64_t>(*d);
    h.put(static_cast<uint32_t>(t.type));
    h.put<uint64_t>(offset);
    offset += pad_to(t.nbytes, alignment);
  }
  h.bytes().append(pad_to(h.bytes().size(), alignment) - h.bytes().size(), '\0');

  AtomicWriter out(path);
  out.write(h.bytes().data(), h.bytes().size());
  for (const auto& t : tensors) {
    out.write(t.data, t.nbytes);
    out.write_zeros(pad_to(t.nbytes, alignment) - t.nbytes);
  }
  out.commit();
}

}  // namespace drafteu::io
