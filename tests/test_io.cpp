// Checkpoint formats: dtype conversions, safetensors and GGUF, checked against bytes written and
// parsed by independent Python code (Debian's python3 with torch), hand-computed bit patterns,
// the real stories260K GGUF, and hand-crafted malformed files.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "model/io/dtype.h"
#include "model/io/gguf.h"
#include "model/io/safetensors.h"
#include "test_errors.h"
#include "test_support.h"
#include "util/error.h"
#include "util/json.h"

namespace fs = std::filesystem;
using namespace drafteu::io;
using drafteu::Error;
using nlohmann::json;

namespace {

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << p;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs `fn`, expecting a drafteu::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no drafteu::Error thrown (expected one mentioning " << *parts.begin() << ")";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// Runs a Python snippet with the reference interpreter and returns its stdout.
std::string run_python(const fs::path& dir, const std::string& name, const std::string& script,
                       const std::string& args) {
  fs::path file = dir / (name + ".py");
  write_bytes(file, script);
  std::string cmd =
      std::string(drafteu::test::reference_python()) + " '" + file.string() + "' " + args;
  auto r = drafteu::test::run_command(cmd);
  EXPECT_EQ(r.exit_code, 0) << "python failed:\n" << r.err;
  return r.out;
}

std::string quote(const fs::path& p) {
  return "'" + p.string() + "'";
}

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  convert_to_f32(t.dtype, t.data, out.data(), out.size());
  return out;
}

uint16_t f16(float f) {
  uint16_t h;
  convert_f32_to_f16(&f, &h, 1);
  return h;
}
uint16_t bf16(float f) {
  uint16_t h;
  convert_f32_to_bf16(&f, &h, 1);
  return h;
}
float from16(DType t, uint16_t h) {
  float f;
  convert_to_f32(t, &h, &f, 1);
  return f;
}
float fbits(uint32_t b) {
  return std::bit_cast<float>(b);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// dtype conversions against hand-computed bit patterns

TEST(DType, NamesAndSizes) {
  DType t;
  ASSERT_TRUE(parse_dtype("BF16", &t));
  EXPECT_EQ(t, DType::BF16);
  EXPECT_EQ(dtype_name(DType::F16), "F16");
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::BOOL), 1u);
  EXPECT_FALSE(parse_dtype("F8_E4M3", &t));
  EXPECT_FALSE(parse_dtype("f32", &t));
  int32_t i = 1;
  float f;
  expect_error([&] { convert_to_f32(DType::I32, &i, &f, 1); }, {"I32"});
}

TEST(DType, HalfToFloat) {
  EXPECT_EQ(from16(DType::F16, 0x3C00), 1.0f);
  EXPECT_EQ(from16(DType::F16, 0xBC00), -1.0f);
  EXPECT_EQ(from16(DType::F16, 0xC000), -2.0f);
  EXPECT_EQ(from16(DType::F16, 0x3555), 0.333251953125f);
  EXPECT_EQ(from16(DType::F16, 0x7BFF), 65504.0f);
  EXPECT_EQ(from16(DType::F16, 0x0400), std::ldexp(1.0f, -14));         // smallest normal
  EXPECT_EQ(from16(DType::F16, 0x0001), std::ldexp(1.0f, -24));         // smallest subnormal
  EXPECT_EQ(from16(DType::F16, 0x03FF), 1023 * std::ldexp(1.0f, -24));  // largest subnormal
  EXPECT_EQ(from16(DType::F16, 0x7C00), INFINITY);
  EXPECT_EQ(from16(DType::F16, 0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(from16(DType::F16, 0x7E00)));
  EXPECT_TRUE(std::isnan(from16(DType::F16, 0x7C01)));
  float nz = from16(DType::F16, 0x8000);
  EXPECT_EQ(nz, 0.0f);
  EXPECT_TRUE(std::signbit(nz));
  EXPECT_EQ(from16(DType::BF16, 0x3F80), 1.0f);
  EXPECT_EQ(from16(DType::BF16, 0xC049), -3.140625f);
  EXPECT_EQ(from16(DType::BF16, 0x7F80), INFINITY);
}

TEST(DType, FloatToHalfRounding) {
  EXPECT_EQ(f16(1.0f), 0x3C00);
  EXPECT_EQ(f16(-2.0f), 0xC000);
  EXPECT_EQ(f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f16(65519.996f), 0x7BFF);  // just below the halfway point to 65536
  EXPECT_EQ(f16(65520.0f), 0x7C00);    // tie; 0x7BFF is odd, so it rounds up to inf
  EXPECT_EQ(f16(1e6f), 0x7C00);
  EXPECT_EQ(f16(-INFINITY), 0xFC00);
  uint16_t nan = f16(NAN);
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  EXPECT_EQ(f16(fbits(0x7F800001)) & 0x03FF, 0x0200);        // signalling NaN stays NaN (quiet)
  EXPECT_EQ(f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie -> even (down)
  EXPECT_EQ(f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3C01);
  EXPECT_EQ(f16(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f16(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and 2^-24 -> 0
  EXPECT_EQ(f16(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f16(3 * std::ldexp(1.0f, -25)), 0x0002);                      // 1.5 ulp: tie -> even
  EXPECT_EQ(f16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)), 0x0400);  // rounds up to normal
  EXPECT_EQ(f16(1e-10f), 0x0000);
  // Every finite half survives half -> float -> half.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00) continue;
    ASSERT_EQ(f16(from16(DType::F16, static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(DType, FloatToBf16Rounding) {
  EXPECT_EQ(bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16(fbits(0x3F808000)), 0x3F80);  // tie, 0x3F80 even -> down
  EXPECT_EQ(bf16(fbits(0x3F818000)), 0x3F82);  // tie, 0x3F81 odd -> up
  EXPECT_EQ(bf16(fbits(0x3F808001)), 0x3F81);  // above the tie
  EXPECT_EQ(bf16(fbits(0x3F807FFF)), 0x3F80);  // below the tie
  EXPECT_EQ(bf16(fbits(0xBF818000)), 0xBF82);  // sign does not matter
  EXPECT_EQ(bf16(fbits(0x7F7FFFFF)), 0x7F80);  // FLT_MAX rounds to inf
  EXPECT_EQ(bf16(INFINITY), 0x7F80);
  EXPECT_EQ(bf16(fbits(0x7FC00000)), 0x7FC0);
  EXPECT_EQ(bf16(fbits(0x7F800001)), 0x7FC0);  // NaN whose payload is in the low bits only
  EXPECT_EQ(bf16(fbits(0x00000001)), 0x0000);  // tiny subnormal -> 0
}

// The same conversions against torch on many values, including subnormals and overflow.
// An empty tensor (shape [0], as in Safetensors.ReadsFileWrittenByPython) converts with the null
// pointers an empty std::vector gives: a no-op, which the UBSan build checks (memcpy of null).
TEST(DType, EmptyConversionWithNullPointersIsANoOp) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64})
    EXPECT_NO_THROW(convert_to_f32(t, nullptr, nullptr, 0)) << dtype_name(t);
  TensorView empty;
  empty.shape = {3, 0};
  EXPECT_TRUE(to_f32(empty).empty());
}

TEST(DType, ConversionsMatchTorch) {
  auto dir = drafteu::test::scratch_dir("io_dtype_torch");
  const std::string script = R"PY(
import sys, torch
p = sys.argv[1]
g = torch.Generator().manual_seed(0)
n = 20000
bits = torch.randint(-2**31, 2**31, (n,), generator=g, dtype=torch.int64).to(torch.int32)
x1 = bits.view(torch.float32)
x2 = torch.randn(n, generator=g) * torch.pow(2.0, torch.randint(-30, 20, (n,), generator=g).float())
x3 = torch.tensor([65520.0, 65519.99, 2.0**-25, 3 * 2.0**-25, 2.0**-24, 1e-8, -0.0])
x = torch.cat([x1, x2, x3])
x = x[~torch.isnan(x)]
open(p + '.f32', 'wb').write(x.numpy().tobytes())
open(p + '.f16', 'wb').write(x.half().view(torch.int16).numpy().tobytes())
open(p + '.bf16', 'wb').write(x.bfloat16().view(torch.int16).numpy().tobytes())
print(x.numel())
)PY";
  fs::path base = dir / "vals";
  int n = std::stoi(run_python(dir, "conv", script, quote(base)));
  std::string f32 = read_bytes(base.string() + ".f32"), h = read_bytes(base.string() + ".f16"),
              b = read_bytes(base.string() + ".bf16");
  ASSERT_EQ(f32.size(), size_t(n) * 4);
  ASSERT_EQ(h.size(), size_t(n) * 2);
  std::vector<float> x(n);
  std::vector<uint16_t> th(n), tb(n), mh(n), mb(n);
  std::memcpy(x.data(), f32.data(), f32.size());
  std::memcpy(th.data(), h.data(), h.size());
  std::memcpy(tb.data(), b.data(), b.size());
  convert_f32_to_f16(x.data(), mh.data(), n);
  convert_f32_to_bf16(x.data(), mb.data(), n);
  int bad_h = 0, bad_b = 0;
  for (int i = 0; i < n; ++i) {
    if (mh[i] != th[i] && bad_h++ < 5)
      ADD_FAILURE() << "f16 of " << x[i] << ": " << mh[i] << " vs torch " << th[i];
    if (mb[i] != tb[i] && bad_b++ < 5)
      ADD_FAILURE() << "bf16 of " << x[i] << ": " << mb[i] << " vs torch " << tb[i];
  }
  EXPECT_EQ(bad_h, 0);
  EXPECT_EQ(bad_b, 0);
  // And back: our f16/bf16 -> f32 equals torch's widening (compare via torch's own bits).
  std::vector<float> back(n);
  convert_to_f32(DType::F16, th.data(), back.data(), n);
  for (int i = 0; i < n; ++i) ASSERT_EQ(f16(back[i]), th[i]);
}

// ---------------------------------------------------------------------------------------------
// safetensors

namespace {

// u64 little-endian header length + header + data (no padding added).
std::string st_bytes(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

const char* kPyStWriter = R"PY(
import json, struct, sys, torch
tensors = {
    "w.f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1.0,
    "w.f16": torch.tensor([1.0, -2.5, 65504.0, 2.0**-24, 0.1], dtype=torch.float16),
    "w.bf16": torch.tensor([[1.0, -3.140625], [256.0, 0.1]], dtype=torch.bfloat16),
    "w.i64": torch.tensor([1, -2, 1 << 40], dtype=torch.int64),
    "scalar": torch.tensor(3.5, dtype=torch.float32),
    "empty": torch.zeros(0, 4, dtype=torch.float32),
}
DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
def raw(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()
header = {"__metadata__": {"format": "pt", "source": "python"}}
buf = b""
for name in ["w.bf16", "scalar", "empty", "w.f32", "w.i64", "w.f16"]:  # deliberately not sorted
    t = tensors[name]
    b = raw(t)
    header[name] = {"dtype": DT[t.dtype], "shape": list(t.shape), "data_offsets": [len(buf), len(buf) + len(b)]}
    buf += b
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + buf)
print(json.dumps({n: {"dtype": DT[t.dtype], "shape": list(t.shape),
                      "values": t.double().flatten().tolist()} for n, t in tensors.items()}))
)PY";

const char* kPyStReader = R"PY(
import json, struct, sys, torch
data = open(sys.argv[1], "rb").read()
n = struct.unpack_from("<Q", data, 0)[0]
hdr = json.loads(data[8:8 + n])
buf = data[8 + n:]
meta = hdr.pop("__metadata__", {})
TD = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32,
      "I64": torch.int64, "U8": torch.uint8}
spans = sorted(tuple(v["data_offsets"]) for v in hdr.values())
cur, ok = 0, True
for b, e in spans:
    ok = ok and b == cur
    cur = e
res = {"header_len": n, "metadata": meta, "contiguous": ok and cur == len(buf), "tensors": {}}
for name, v in hdr.items():
    b, e = v["data_offsets"]
    dt = TD[v["dtype"]]
    t = torch.frombuffer(bytearray(buf[b:e]), dtype=dt) if e > b else torch.empty(0, dtype=dt)
    t = t.reshape(v["shape"])
    res["tensors"][name] = {"dtype": v["dtype"], "shape": v["shape"],
                            "aligned": b % t.element_size() == 0,
                            "values": t.double().flatten().tolist()}
print(json.dumps(res))
)PY";

}  // namespace

TEST(Safetensors, ReadsFileWrittenByPython) {
  auto dir = drafteu::test::scratch_dir("io_st_py_write");
  fs::path file = dir / "py.safetensors";
  json expected = json::parse(run_python(dir, "writer", kPyStWriter, quote(file)));

  SafetensorsFile f(file);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("source"), "python");
  ASSERT_EQ(f.tensors().size(), expected.size());
  // tensors() is in offset order, as Python laid them out.
  EXPECT_EQ(f.tensors().front().name, "w.bf16");
  EXPECT_EQ(f.tensors().back().name, "w.f16");
  for (const auto& [name, e] : expected.items()) {
    SCOPED_TRACE(name);
    const TensorView* t = f.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(dtype_name(t->dtype), e["dtype"].get<std::string>());
    EXPECT_EQ(t->shape, e["shape"].get<std::vector<int64_t>>());
    auto want = e["values"].get<std::vector<double>>();
    ASSERT_EQ(static_cast<size_t>(t->numel()), want.size());
    if (t->dtype == DType::I64) {
      std::vector<int64_t> got(want.size());
      std::memcpy(got.data(), t->data, t->nbytes);
      for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], static_cast<int64_t>(want[i]));
      continue;
    }
    auto got = to_f32(*t);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], static_cast<float>(want[i])) << i;
  }
  EXPECT_EQ(f.find("missing"), nullptr);
}

TEST(Safetensors, PythonParsesFileWrittenByCpp) {
  auto dir = drafteu::test::scratch_dir("io_st_cpp_write");
  fs::path file = dir / "cpp.safetensors";
  std::vector<float> a = {0.5f, -1.25f, 3.0f, 1e-3f, 7.0f, -0.0f};
  std::vector<float> b_src = {1.0f, -2.5f, 65504.0f, 0.1f, std::ldexp(1.0f, -24)};
  std::vector<uint16_t> b(b_src.size());
  convert_f32_to_f16(b_src.data(), b.data(), b.size());
  std::vector<float> c_src = {1.0f, -3.140625f, 256.0f, 0.1f};
  std::vector<uint16_t> c(c_src.size());
  convert_f32_to_bf16(c_src.data(), c.data(), c.size());
  std::vector<int32_t> d = {7, -8, 1 << 30};
  std::vector<uint8_t> u = {1, 2, 3};
  // Odd sizes first, so a writer that kept this order would misalign the F32 tensor.
  std::vector<TensorToWrite> tensors = {
      {"u8", DType::U8, {3}, u.data(), u.size()},
      {"f16", DType::F16, {5}, b.data(), b.size() * 2},
      {"f32", DType::F32, {2, 3}, a.data(), a.size() * 4},
      {"bf16", DType::BF16, {2, 2}, c.data(), c.size() * 2},
      {"i32", DType::I32, {3}, d.data(), d.size() * 4},
      {"none", DType::F32, {0, 2}, nullptr, 0},
  };
  write_safetensors(file, tensors, {{"format", "pt"}, {"who", "drafteu"}});

  json r = json::parse(run_python(dir, "reader", kPyStReader, quote(file)));
  EXPECT_EQ(r["header_len"].get<uint64_t>() % 8, 0u);
  EXPECT_TRUE(r["contiguous"].get<bool>());
  EXPECT_EQ(r["metadata"], (json{{"format", "pt"}, {"who", "drafteu"}}));
  ASSERT_EQ(r["tensors"].size(), tensors.size());
  auto values = [&](const char* n) { return r["tensors"][n]["values"].get<std::vector<double>>(); };
  for (const auto& [name, t] : r["tensors"].items()) EXPECT_TRUE(t["aligned"].get<bool>()) << name;
  EXPECT_EQ(r["tensors"]["f32"]["shape"], json({2, 3}));
  auto va = values("f32");
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(va[i], a[i]);
  // Python's torch decodes our f16/bf16 bits: the values must be the correctly rounded ones.
  EXPECT_EQ(values("f16"),
            (std::vector<double>{1.0, -2.5, 65504.0, 0.0999755859375, std::ldexp(1.0, -24)}));
  EXPECT_EQ(values("bf16"), (std::vector<double>{1.0, -3.140625, 256.0, 0.10009765625}));
  EXPECT_EQ(values("i32"), (std::vector<double>{7, -8, 1 << 30}));
  EXPECT_EQ(values("u8"), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(r["tensors"]["none"]["shape"], json({0, 2}));

  // And our own reader agrees.
  SafetensorsFile f(file);
  EXPECT_EQ(f.metadata().at("who"), "drafteu");
  EXPECT_EQ(to_f32(*f.find("f32")), a);
  EXPECT_EQ(std::memcmp(f.find("bf16")->data, c.data(), 8), 0);
  // No temp files left behind.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir)) entries += e.path().extension() != ".py";
  EXPECT_EQ(entries, 1);
}

TEST(Safetensors, RejectsMalformedFiles) {
  auto dir = drafteu::test::scratch_dir("io_st_bad");
  auto check = [&](const std::string& name, const std::string& bytes,
                   std::initializer_list<std::string> parts) {
    SCOPED_TRACE(name);
    fs::path p = dir / (name + ".safetensors");
    write_bytes(p, bytes);
    std::vector<std::string> all = {p.filename().string()};
    all.insert(all.end(), parts);
    try {
      SafetensorsFile f(p);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      for (const auto& s : all)
        EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << s << " not in " << e.what();
    }
  };
  const std::string f4(4, 'x'), f8(8, 'x');
  check("empty", "", {"8-byte"});
  check("truncated", std::string("\x10\x00\x00", 3), {"8-byte"});
  {
    std::string b = st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f4);
    uint64_t lie = 1000;
    std::memcpy(b.data(), &lie, 8);
    check("header_too_long", b, {"header length 1000"});
  }
  check("not_json", st_bytes("{not json", f4), {"not valid JSON"});
  check("not_object", st_bytes("[1,2]"), {"not a JSON object"});
  check("missing_dtype", st_bytes(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", f4),
        {"'w'", "dtype"});
  check("dtype_not_string", st_bytes(R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", f4),
        {"'w'", "dtype"});
  check("missing_shape", st_bytes(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", f4),
        {"'w'", "shape"});
  check("shape_string", st_bytes(R"({"w":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", f4),
        {"'w'", "shape"});
  check("negative_shape",
        st_bytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", f4),
        {"'w'", "negative"});
  check("missing_offsets", st_bytes(R"({"w":{"dtype":"F32","shape":[1]}})", f4),
        {"'w'", "data_offsets"});
  check("offsets_three",
        st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", f4),
        {"'w'", "data_offsets"});
  check("unknown_dtype",
        st_bytes(R"({"w":{"dtype":"F8_E9M9","shape":[1],"data_offsets":[0,1]}})", "x"),
        {"'w'", "unknown dtype", "F8_E9M9"});
  check("out_of_range", st_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f4),
        {"'w'", "data_offsets", "past"});
  check("end_before_begin",
        st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", f4),
        {"'w'", "before"});
  check("wrong_length", st_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f8),
        {"'w'", "needs 12"});
  check(
      "overlap",
      st_bytes(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          f8),
      {"'a'", "'b'", "overlaps"});
  check(
      "gap",
      st_bytes(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
          std::string(12, 'x')),
      {"'b'", "gap"});
  check("trailing", st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f8),
        {"trailing"});
  check(
      "duplicate",
      st_bytes(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
          f4),
      {"'a'", "twice"});
  check("bad_metadata", st_bytes(R"({"__metadata__":{"k":1}})"), {"__metadata__", "'k'"});
  check("entry_not_object", st_bytes(R"({"w":[1]})"), {"'w'", "not a JSON object"});
}

// Hostile headers found by fuzzing and by hand (issue 14): each once crashed or overflowed.
TEST(Safetensors, RejectsHostileHeaders) {
  auto dir = drafteu::test::scratch_dir("io_st_hostile");
  auto error_for = [&](const std::string& name, const std::string& header,
                       const std::string& data = "") {
    fs::path p = dir / (name + ".safetensors");
    write_bytes(p, st_bytes(header, data));
    try {
      SafetensorsFile f(p);
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
      return msg;
    }
    return std::string("(accepted)");
  };
  // 200k levels of nesting in a shape and in __metadata__: dump() in the error message used to
  // overflow the stack.
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  EXPECT_NE(error_for("deep_shape",
                      R"({"w":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,0]}})")
                .find("nests deeper than"),
            std::string::npos);
  EXPECT_NE(error_for("deep_meta", R"({"__metadata__":{"k":)" + deep + "}}").find("nests deeper"),
            std::string::npos);
  // A value just within the depth limit, but huge: the message previews it, never dumps it.
  std::string wide = "[1";
  for (int i = 0; i < 50000; ++i) wide += ",1";
  wide += "]";
  const std::string msg = error_for("wide_meta", R"({"__metadata__":{"k":)" + wide + "}}");
  EXPECT_NE(msg.find("'k'"), std::string::npos) << msg;
  EXPECT_LT(msg.size(), 1000u);
  // 2^31 * 2^32 elements before a zero: 0 bytes, but numel() arithmetic overflowed int64.
  EXPECT_NE(
      error_for("numel_overflow",
                R"({"w":{"dtype":"U8","shape":[2147483648,4294967296,0],"data_offsets":[0,0]}})")
          .find("overflow"),
      std::string::npos);
  TensorView v;
  v.name = "huge";
  v.shape = {int64_t{1} << 40, int64_t{1} << 40};
  EXPECT_THROW(v.numel(), Error);
  v.shape = {3, 0, 5};
  EXPECT_EQ(v.numel(), 0);
}

TEST(Json, DepthLimitSkipsStringsAndNamesTheSource) {
  using drafteu::check_json_depth;
  EXPECT_NO_THROW(check_json_depth(R"({"a": "[[[[[[[[", "b": "\"[[[["})", "x.json", 2));
  EXPECT_NO_THROW(check_json_depth("[[]]", "x.json", 2));
  const std::string err = drafteu::test::error_of([] { check_json_depth("[[[]]]", "x.json", 2); });
  EXPECT_NE(err.find("x.json"), std::string::npos) << err;
  EXPECT_NE(err.find("deeper than 2"), std::string::npos) << err;
  // The limit holds for the parser and the file reader too.
  const std::string deep = std::string(1000, '[') + std::string(1000, ']');
  EXPECT_THROW(drafteu::parse_json(deep, "deep"), Error);
  EXPECT_EQ(drafteu::parse_json("[[1]]", "ok"), json::parse("[[1]]"));
  EXPECT_EQ(drafteu::json_preview(json("abc")), "\"abc\"");
  EXPECT_EQ(drafteu::json_preview(json::array({1, 2})), "an array of 2 elements");
  EXPECT_LE(drafteu::json_preview(json(std::string(500, 'x'))).size(), 70u);
}

TEST(Safetensors, CheckpointSingleAndSharded) {
  auto dir = drafteu::test::scratch_dir("io_st_ckpt");
  std::vector<std::vector<float>> data;
  std::vector<TensorToWrite> tensors;
  for (int i = 0; i < 5; ++i) data.push_back(std::vector<float>(10 + i, 0.25f * i));
  for (int i = 0; i < 5; ++i)
    tensors.push_back({"layer." + std::to_string(i),
                       DType::F32,
                       {int64_t(data[i].size())},
                       data[i].data(),
                       data[i].size() * 4});

  // Single file.
  write_safetensors_checkpoint(dir / "single", tensors);
  EXPECT_TRUE(fs::exists(dir / "single/model.safetensors"));
  SafetensorsCheckpoint single(dir / "single");
  EXPECT_EQ(single.names().size(), 5u);
  EXPECT_EQ(to_f32(single.get("layer.3")), data[3]);
  expect_error([&] { single.get("nope.weight"); }, {"nope.weight", "single", "not found"});

  // Sharded: at most 100 bytes a shard -> sizes 40+44 | 48+52 | 56: three shards.
  fs::path sh = dir / "sharded";
  write_safetensors_checkpoint(sh, tensors, 100, {{"format", "pt"}});
  ASSERT_TRUE(fs::exists(sh / "model.safetensors.index.json"));
  json idx = json::parse(read_bytes(sh / "model.safetensors.index.json"));
  EXPECT_EQ(idx["metadata"]["total_size"].get<int>(), 40 + 44 + 48 + 52 + 56);
  EXPECT_EQ(idx["weight_map"]["layer.0"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(idx["weight_map"]["layer.1"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(idx["weight_map"]["layer.3"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(idx["weight_map"]["layer.4"], "model-00003-of-00003.safetensors");
  int files = 0;
  for (const auto& e : fs::directory_iterator(sh)) files += e.path().extension() == ".safetensors";
  EXPECT_EQ(files, 3);
  SafetensorsCheckpoint ck(sh);
  EXPECT_EQ(ck.names(),
            (std::vector<std::string>{"layer.0", "layer.1", "layer.2", "layer.3", "layer.4"}));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(to_f32(ck.get("layer." + std::to_string(i))), data[i]);
  expect_error([&] { ck.get("missing"); }, {"'missing'", "sharded"});

  // Missing shard.
  fs::path broken = dir / "missing_shard";
  fs::copy(sh, broken);
  fs::remove(broken / "model-00002-of-00003.safetensors");
  expect_error([&] { SafetensorsCheckpoint x(broken); },
               {"model-00002-of-00003.safetensors", "layer.2", "missing"});

  // The same tensor in two shards.
  fs::path dup = dir / "dup";
  fs::create_directories(dup);
  write_safetensors(dup / "a.safetensors", {tensors[0], tensors[1]});
  write_safetensors(dup / "b.safetensors", {tensors[1], tensors[2]});
  write_bytes(
      dup / "model.safetensors.index.json",
      R"({"weight_map":{"layer.0":"a.safetensors","layer.1":"a.safetensors","layer.2":"b.safetensors"}})");
  expect_error([&] { SafetensorsCheckpoint x(dup); },
               {"'layer.1'", "twice", "a.safetensors", "b.safetensors"});

  // The index names a shard that lacks the tensor.
  write_bytes(dup / "model.safetensors.index.json",
              R"({"weight_map":{"layer.0":"a.safetensors","layer.2":"a.safetensors"}})");
  fs::remove(dup / "b.safetensors");
  expect_error([&] { SafetensorsCheckpoint x(dup); }, {"'layer.2'", "a.safetensors"});

  // Writing a single file over a sharded directory drops the stale index.
  write_safetensors_checkpoint(sh, tensors);
  EXPECT_FALSE(fs::exists(sh / "model.safetensors.index.json"));
  EXPECT_EQ(SafetensorsCheckpoint(sh).names().size(), 5u);

  expect_error([&] { SafetensorsCheckpoint x(dir / "nothing_here"); }, {"nothing_here"});
}

TEST(Safetensors, WriterRejectsBadInput) {
  auto dir = drafteu::test::scratch_dir("io_st_write_bad");
  float x[4] = {};
  expect_error(
      [&] {
        write_safetensors(dir / "a.safetensors", {{"t", DType::F32, {3}, x, 16}});
      },
      {"'t'", "nbytes"});
  expect_error(
      [&] {
        write_safetensors(dir / "a.safetensors",
                          {{"t", DType::F32, {4}, x, 16}, {"t", DType::F32, {4}, x, 16}});
      },
      {"'t'", "twice"});
  expect_error(
      [&] {
        write_safetensors(dir / "a.safetensors", {{"__metadata__", DType::F32, {4}, x, 16}});
      },
      {"__metadata__"});
  EXPECT_FALSE(fs::exists(dir / "a.safetensors"));
}

// ---------------------------------------------------------------------------------------------
// GGUF

namespace {

// An independent GGUF parser: prints metadata, tensor infos, the llama.cpp layout check, and
// per-tensor float64 sums and leading values.
const char* kPyGguf = R"PY(
import json, struct, sys
data = open(sys.argv[1], "rb").read()
pos = 0
def rd(fmt):
    global pos
    v = struct.unpack_from("<" + fmt, data, pos)[0]
    pos += struct.calcsize("<" + fmt)
    return v
def rstr():
    global pos
    n = rd("Q")
    s = data[pos:pos + n].decode("utf-8")
    pos += n
    return s
SC = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
def rval(t):
    if t == 8:
        return rstr()
    if t == 9:
        et = rd("I")
        n = rd("Q")
        return {"elem_type": et, "values": [rval(et) for _ in range(n)]}
    return rd(SC[t])
assert data[:4] == b"GGUF"
pos = 4
ver = rd("I"); nt = rd("Q"); nkv = rd("Q")
kv = {}
for _ in range(nkv):
    k = rstr(); t = rd("I")
    kv[k] = {"type": t, "value": rval(t)}
infos = []
for _ in range(nt):
    name = rstr(); nd = rd("I")
    ne = [rd("q") for _ in range(nd)]
    ty = rd("I"); off = rd("Q")
    infos.append((name, ne, ty, off))
al = kv.get("general.alignment", {"value": 32})["value"]
ds = (pos + al - 1) // al * al
SZ = {0: 4, 1: 2, 30: 2}
tensors = []
expect_off = 0
layout_ok = True
for name, ne, ty, off in infos:
    n = 1
    for d in ne:
        n *= d
    nb = n * SZ[ty]
    layout_ok = layout_ok and off == expect_off
    expect_off += (nb + al - 1) // al * al
    raw = data[ds + off: ds + off + nb]
    if ty == 0:
        vals = list(struct.unpack("<%df" % n, raw))
    elif ty == 1:
        vals = list(struct.unpack("<%de" % n, raw))
    else:
        vals = [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in struct.unpack("<%dH" % n, raw)]
    s = 0.0
    for v in vals:
        s += v
    tensors.append({"name": name, "ne": ne, "type": ty, "offset": off, "sum": s, "head": vals[:8]})
layout_ok = layout_ok and len(data) >= ds + expect_off
print(json.dumps({"version": ver, "kv": kv, "tensors": tensors, "data_start": ds, "alignment": al,
                  "llamacpp_layout_ok": layout_ok}))
)PY";

json value_to_json(const GgufValue& v) {
  auto scalar = [](const GgufScalar& s) {
    return std::visit([](const auto& x) { return json(x); }, s);
  };
  if (v.type != GgufType::ARRAY) return {{"type", int(v.type)}, {"value", scalar(v.scalar)}};
  json arr = json::array();
  for (const auto& s : v.array) arr.push_back(scalar(s));
  return {{"type", int(v.type)}, {"value", {{"elem_type", int(v.elem_type)}, {"values", arr}}}};
}

// Compares our reading of `file` with the independent Python parse, field by field.
json compare_with_python(const fs::path& dir, const fs::path& file) {
  json py = json::parse(run_python(dir, "gguf_parse", kPyGguf, quote(file)));
  GgufFile g(file);
  EXPECT_EQ(py["version"].get<uint32_t>(), g.version());
  EXPECT_EQ(py["alignment"].get<uint32_t>(), g.alignment());
  EXPECT_EQ(py["kv"].size(), g.metadata().size());
  for (const auto& [key, v] : g.metadata()) EXPECT_EQ(value_to_json(v), py["kv"][key]) << key;
  EXPECT_EQ(py["tensors"].size(), g.tensors().size());
  for (size_t i = 0; i < std::min<size_t>(py["tensors"].size(), g.tensors().size()); ++i) {
    const json& p = py["tensors"][i];
    const GgufTensor& t = g.tensors()[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(p["name"], t.name);
    EXPECT_EQ(p["ne"].get<std::vector<int64_t>>(), t.ne);
    EXPECT_EQ(p["type"].get<uint32_t>(), uint32_t(t.type));
    std::vector<float> vals(t.nbytes / dtype_size(t.dtype));
    convert_to_f32(t.dtype, t.data, vals.data(), vals.size());
    double sum = 0;
    for (float v : vals) sum += v;
    EXPECT_EQ(sum, p["sum"].get<double>());
    auto head = p["head"].get<std::vector<double>>();
    for (size_t k = 0; k < head.size(); ++k) EXPECT_EQ(vals[k], static_cast<float>(head[k]));
  }
  return py;
}

// A little-endian byte builder for hand-made GGUF files.
struct Bytes {
  std::string b;
  template <typename T>
  Bytes& put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof(v));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
};

// Knobs for one small GGUF: 2 kv pairs and one 2x3 tensor, valid with the defaults.
struct GgufSpec {
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  uint64_t n_tensors = 1;
  uint64_t n_kv = 2;
  uint64_t key_len = 0;  // 0: the real length
  uint64_t arr_len = 2;
  uint32_t arr_elem = 8;  // string
  uint32_t n_dims = 2;
  uint32_t ggml_type = 0;
  uint64_t offset = 0;
  uint32_t data_floats = 6;
};

std::string small_gguf(const GgufSpec& s) {
  Bytes g;
  g.put(s.magic).put(s.version).put(s.n_tensors).put(s.n_kv);
  std::string key = "general.architecture";
  g.put<uint64_t>(s.key_len ? s.key_len : key.size());
  g.b += key;
  g.put<uint32_t>(8).str("llama");
  g.str("test.arr").put<uint32_t>(9).put(s.arr_elem).put(s.arr_len);
  if (s.arr_elem == 8)
    g.str("a").str("bc");
  else if (s.arr_elem == 9)
    g.put<uint32_t>(4).put<uint64_t>(0);
  g.str("t").put(s.n_dims);
  for (uint32_t d = 0; d < s.n_dims; ++d) g.put<int64_t>(d == 0 ? 3 : d == 1 ? 2 : 1);
  g.put(s.ggml_type).put(s.offset);
  g.b.append((32 - g.b.size() % 32) % 32, '\0');
  for (uint32_t i = 0; i < s.data_floats; ++i) g.put<float>(float(i));
  return g.b;
}

}  // namespace

TEST(Gguf, Stories260kHyperParametersAndTensors) {
  fs::path path = drafteu::test::stories260k_gguf();
  GgufFile g(path);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(g.get_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(g.get_int("llama.block_count"), 5);
  EXPECT_EQ(g.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(g.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(g.get_int("llama.context_length"), 2048);
  EXPECT_NEAR(g.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-10);
  EXPECT_EQ(g.find_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(g.find_int("no.such.key"), std::nullopt);
  auto tokens = g.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 512u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(g.get_float_array("tokenizer.ggml.scores").size(), 512u);
  auto types = g.get_int_array("tokenizer.ggml.token_type");
  ASSERT_EQ(types.size(), 512u);
  EXPECT_EQ(types[0], 2);  // unknown
  EXPECT_EQ(types[1], 3);  // control

  const int64_t dim = 64, ffn = 172, kv_dim = 64 / 8 * 4, vocab = 512;
  auto shape = [&](const std::string& n) {
    const GgufTensor* t = g.find_tensor(n);
    EXPECT_NE(t, nullptr) << n;
    return t ? t->shape : std::vector<int64_t>{};
  };
  EXPECT_EQ(shape("token_embd.weight"), (std::vector<int64_t>{vocab, dim}));
  EXPECT_EQ(g.find_tensor("token_embd.weight")->ne, (std::vector<int64_t>{dim, vocab}));
  EXPECT_EQ(shape("output_norm.weight"), (std::vector<int64_t>{dim}));
  EXPECT_EQ(shape("output.weight"), (std::vector<int64_t>{vocab, dim}));
  for (int l = 0; l < 5; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    EXPECT_EQ(shape(p + "attn_q.weight"), (std::vector<int64_t>{dim, dim}));
    EXPECT_EQ(shape(p + "attn_k.weight"), (std::vector<int64_t>{kv_dim, dim}));
    EXPECT_EQ(shape(p + "attn_v.weight"), (std::vector<int64_t>{kv_dim, dim}));
    EXPECT_EQ(shape(p + "attn_output.weight"), (std::vector<int64_t>{dim, dim}));
    EXPECT_EQ(shape(p + "attn_norm.weight"), (std::vector<int64_t>{dim}));
    EXPECT_EQ(shape(p + "ffn_gate.weight"), (std::vector<int64_t>{ffn, dim}));
    EXPECT_EQ(shape(p + "ffn_up.weight"), (std::vector<int64_t>{ffn, dim}));
    EXPECT_EQ(shape(p + "ffn_down.weight"), (std::vector<int64_t>{dim, ffn}));
    EXPECT_EQ(shape(p + "ffn_norm.weight"), (std::vector<int64_t>{dim}));
  }
  EXPECT_EQ(g.tensors().size(), 3u + 5 * 9);
  for (const auto& t : g.tensors()) {
    EXPECT_EQ(t.type, GgmlType::F32) << t.name;
    EXPECT_EQ(t.dtype, DType::F32);
  }
  expect_error([&] { g.get_int("general.architecture"); },
               {"stories260K.gguf", "general.architecture", "string"});
  expect_error([&] { g.get_string("no.such.key"); },
               {"stories260K.gguf", "no.such.key", "not found"});
  expect_error([&] { g.get_bool("llama.block_count"); }, {"llama.block_count"});
  expect_error([&] { g.get_string_array("tokenizer.ggml.scores"); },
               {"tokenizer.ggml.scores", "array of f32"});

  // Every key, tensor info and tensor sum against the independent Python parse.
  auto dir = drafteu::test::scratch_dir("io_gguf_stories");
  json py = compare_with_python(dir, path);
  EXPECT_TRUE(py["llamacpp_layout_ok"].get<bool>());
}

TEST(Gguf, WriteReadRoundTrip) {
  auto dir = drafteu::test::scratch_dir("io_gguf_roundtrip");
  std::map<std::string, GgufValue> md;
  auto scalar = [&](const std::string& k, GgufType t, GgufScalar v) {
    md[k] = GgufValue{t, std::move(v), {}, {}};
  };
  auto array = [&](const std::string& k, GgufType et, std::vector<GgufScalar> v) {
    md[k] = GgufValue{GgufType::ARRAY, {}, et, std::move(v)};
  };
  scalar("general.architecture", GgufType::STRING, std::string("llama"));
  scalar("t.u8", GgufType::U8, uint64_t{255});
  scalar("t.i8", GgufType::I8, int64_t{-128});
  scalar("t.u16", GgufType::U16, uint64_t{65535});
  scalar("t.i16", GgufType::I16, int64_t{-32768});
  scalar("t.u32", GgufType::U32, uint64_t{4294967295u});
  scalar("t.i32", GgufType::I32, int64_t{-2147483647 - 1});
  scalar("t.f32", GgufType::F32, 0.1);
  scalar("t.bool", GgufType::BOOL, true);
  scalar("t.u64", GgufType::U64, uint64_t{18446744073709551615u});
  scalar("t.i64", GgufType::I64, int64_t{-9000000000000000000});
  scalar("t.f64", GgufType::F64, 0.1);
  scalar("t.empty_string", GgufType::STRING, std::string());
  array("t.strings", GgufType::STRING,
        {std::string("a"), std::string(""), std::string("\xc3\xa9t\xc3\xa9")});
  array("t.f32s", GgufType::F32, {1.5, -2.0});
  array("t.i32s", GgufType::I32, {int64_t{-1}, int64_t{2}});
  array("t.u8s", GgufType::U8, {uint64_t{0}, uint64_t{200}});
  array("t.bools", GgufType::BOOL, {true, false});
  array("t.empty", GgufType::U32, {});

  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<float> h_src = {0.5f, -1.0f, 65504.0f, 0.1f, 3.0f};
  std::vector<uint16_t> h(5), b(6);
  convert_f32_to_f16(h_src.data(), h.data(), 5);
  convert_f32_to_bf16(a.data(), b.data(), 6);
  std::vector<GgufTensorToWrite> tensors = {
      {"a.weight", GgmlType::F32, {2, 3}, a.data(), 24},
      {"h.weight", GgmlType::F16, {5}, h.data(), 10},
      {"b.weight", GgmlType::BF16, {3, 1, 2}, b.data(), 12},
  };
  for (uint32_t alignment : {32u, 64u}) {
    SCOPED_TRACE(alignment);
    fs::path file = dir / ("rt" + std::to_string(alignment) + ".gguf");
    write_gguf(file, md, tensors, alignment);
    GgufFile g(file);
    EXPECT_EQ(g.version(), 3u);
    EXPECT_EQ(g.alignment(), alignment);
    EXPECT_EQ(g.metadata().size(), md.size() + (alignment != 32));
    EXPECT_EQ(g.get_int("t.u8"), 255);
    EXPECT_EQ(g.get_int("t.i8"), -128);
    EXPECT_EQ(g.get_int("t.u16"), 65535);
    EXPECT_EQ(g.get_int("t.i16"), -32768);
    EXPECT_EQ(g.get_int("t.u32"), 4294967295);
    EXPECT_EQ(g.get_int("t.i32"), -2147483648);
    EXPECT_EQ(g.get_float("t.f32"), double(0.1f));
    EXPECT_EQ(g.get_float("t.f64"), 0.1);
    EXPECT_TRUE(g.get_bool("t.bool"));
    EXPECT_EQ(std::get<uint64_t>(g.metadata().at("t.u64").scalar), 18446744073709551615u);
    expect_error([&] { g.get_int("t.u64"); }, {"t.u64", "int64"});
    EXPECT_EQ(g.get_int("t.i64"), -9000000000000000000);
    EXPECT_EQ(g.get_string("t.empty_string"), "");
    EXPECT_EQ(g.get_string_array("t.strings"),
              (std::vector<std::string>{"a", "", "\xc3\xa9t\xc3\xa9"}));
    EXPECT_EQ(g.get_float_array("t.f32s"), (std::vector<double>{1.5, -2.0}));
    EXPECT_EQ(g.get_int_array("t.i32s"), (std::vector<int64_t>{-1, 2}));
    EXPECT_EQ(g.get_int_array("t.u8s"), (std::vector<int64_t>{0, 200}));
    EXPECT_EQ(g.metadata().at("t.bools").array, (std::vector<GgufScalar>{true, false}));
    EXPECT_EQ(g.metadata().at("t.empty").elem_type, GgufType::U32);
    EXPECT_TRUE(g.get_int_array("t.empty").empty());
    for (const auto& [k, v] : md) {
      EXPECT_EQ(g.metadata().at(k).type, v.type) << k;
      if (v.type != GgufType::F32) {  // f32 0.1 reads back as double(0.1f)
        EXPECT_EQ(value_to_json(g.metadata().at(k)), value_to_json(v)) << k;
      }
    }

    ASSERT_EQ(g.tensors().size(), 3u);
    const GgufTensor* ta = g.find_tensor("a.weight");
    ASSERT_NE(ta, nullptr);
    EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(ta->ne, (std::vector<int64_t>{3, 2}));
    EXPECT_EQ(std::memcmp(ta->data, a.data(), 24), 0);
    const GgufTensor* th = g.find_tensor("h.weight");
    EXPECT_EQ(th->type, GgmlType::F16);
    std::vector<float> hv(5);
    convert_to_f32(th->dtype, th->data, hv.data(), 5);
    EXPECT_EQ(hv, (std::vector<float>{0.5f, -1.0f, 65504.0f, 0.0999755859375f, 3.0f}));
    const GgufTensor* tb = g.find_tensor("b.weight");
    EXPECT_EQ(tb->shape, (std::vector<int64_t>{3, 1, 2}));
    EXPECT_EQ(tb->dtype, DType::BF16);
    EXPECT_EQ(std::memcmp(tb->data, b.data(), 12), 0);
    for (const auto& t : g.tensors())
      EXPECT_EQ((t.data - g.tensors()[0].data) % alignment, 0) << t.name;

    // An independent parser reads the same values and finds llama.cpp's packed layout.
    json py = compare_with_python(dir, file);
    EXPECT_TRUE(py["llamacpp_layout_ok"].get<bool>());
    EXPECT_EQ(fs::file_size(file) % alignment, 0u);
  }

  expect_error(
      [&] {
        write_gguf(dir / "x.gguf", {{"k", GgufValue{GgufType::U8, uint64_t{256}, {}, {}}}}, {});
      },
      {"'k'", "fit"});
  expect_error(
      [&] {
        write_gguf(dir / "x.gguf", {{"k", GgufValue{GgufType::STRING, int64_t{1}, {}, {}}}}, {});
      },
      {"'k'", "string"});
  expect_error(
      [&] {
        write_gguf(dir / "x.gguf", {}, {{"t", GgmlType::F32, {2}, a.data(), 4}});
      },
      {"'t'", "nbytes"});
  expect_error(
      [&] {
        write_gguf(dir / "x.gguf", {}, {{"t", GgmlType::F32, {1, 1, 1, 1, 1}, a.data(), 4}});
      },
      {"'t'", "dimensions"});
  expect_error([&] { write_gguf(dir / "x.gguf", {}, {}, 48); }, {"alignment"});
  EXPECT_FALSE(fs::exists(dir / "x.gguf"));
}

TEST(Gguf, RejectsMalformedFiles) {
  auto dir = drafteu::test::scratch_dir("io_gguf_bad");
  {  // the baseline is valid
    fs::path p = dir / "ok.gguf";
    write_bytes(p, small_gguf({}));
    GgufFile g(p);
    EXPECT_EQ(g.get_string_array("test.arr"), (std::vector<std::string>{"a", "bc"}));
    EXPECT_EQ(g.find_tensor("t")->shape, (std::vector<int64_t>{2, 3}));
    GgufSpec v2;
    v2.version = 2;  // same layout as v3 for little-endian files
    write_bytes(p, small_gguf(v2));
    EXPECT_EQ(GgufFile(p).version(), 2u);
  }
  auto check = [&](const std::string& name, const std::string& bytes,
                   std::initializer_list<std::string> parts) {
    SCOPED_TRACE(name);
    fs::path p = dir / (name + ".gguf");
    write_bytes(p, bytes);
    try {
      GgufFile g(p);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(p.filename().string()), std::string::npos) << msg;
      for (const auto& s : parts)
        EXPECT_NE(msg.find(s), std::string::npos) << s << " not in " << msg;
    }
  };
  auto spec = [](auto&& edit) {
    GgufSpec s;
    edit(s);
    return small_gguf(s);
  };
  check("empty", "", {"truncated", "magic"});
  check("bad_magic", spec([](GgufSpec& s) { s.magic = 0x46554746; }), {"magic"});
  check("version1", spec([](GgufSpec& s) { s.version = 1; }), {"version 1"});
  check("lying_tensor_count", spec([](GgufSpec& s) { s.n_tensors = uint64_t{1} << 60; }),
        {"tensor count"});
  check("lying_kv_count", spec([](GgufSpec& s) { s.n_kv = ~uint64_t{0}; }), {"metadata count"});
  check("lying_string_length", spec([](GgufSpec& s) { s.key_len = uint64_t{1} << 62; }),
        {"string length"});
  check("lying_array_length", spec([](GgufSpec& s) { s.arr_len = uint64_t{1} << 40; }),
        {"test.arr", "array length"});
  check("nested_array", spec([](GgufSpec& s) {
          s.arr_elem = 9;
          s.arr_len = 1;
        }),
        {"test.arr", "arrays of arrays"});
  check("bad_elem_type", spec([](GgufSpec& s) { s.arr_elem = 13; }), {"test.arr", "13"});
  check("too_many_dims", spec([](GgufSpec& s) { s.n_dims = 5; }), {"'t'", "5 dimensions"});
  check("quantized", spec([](GgufSpec& s) { s.ggml_type = 2; }), {"'t'", "type 2", "Q4_0"});
  check("q8_0", spec([](GgufSpec& s) { s.ggml_type = 8; }), {"'t'", "type 8", "Q8_0", "quantized"});
  check("unknown_type", spec([](GgufSpec& s) { s.ggml_type = 1000; }), {"'t'", "type 1000"});
  check("offset_out_of_range", spec([](GgufSpec& s) { s.offset = 4096; }), {"'t'", "past"});
  check("offset_huge", spec([](GgufSpec& s) { s.offset = ~uint64_t{0} - 31; }), {"'t'"});
  check("offset_misaligned", spec([](GgufSpec& s) { s.offset = 4; }), {"'t'", "alignment"});
  check("data_short", spec([](GgufSpec& s) { s.data_floats = 5; }), {"'t'", "past"});
  {
    Bytes d;
    d.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(2);
    d.str("k").put<uint32_t>(4).put<uint32_t>(1).str("k").put<uint32_t>(4).put<uint32_t>(2);
    check("duplicate_key", d.b, {"'k'", "twice"});
    Bytes a;
    a.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
    a.str("general.alignment").put<uint32_t>(4).put<uint32_t>(48);
    check("bad_alignment", a.b, {"general.alignment", "power of two"});
    Bytes t;
    t.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
    t.str("k").put<uint32_t>(77).put<uint32_t>(0);
    check("bad_value_type", t.b, {"'k'", "77"});
  }

  // Every truncation of a valid file fails cleanly.
  const std::string ok = small_gguf({});
  fs::path p = dir / "cut.gguf";
  for (size_t n = 0; n < ok.size(); ++n) {
    write_bytes(p, ok.substr(0, n));
    EXPECT_THROW(GgufFile g(p), Error) << "prefix of " << n << " bytes";
  }
  // Corrupting any single byte either still parses or throws drafteu::Error: never a crash,
  // a huge allocation or another exception type.
  for (size_t i = 0; i < ok.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80, 0xFF}) {
      std::string bad = ok;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      write_bytes(p, bad);
      try {
        GgufFile g(p);
      } catch (const Error&) {
      }
    }
  }
}
