#include "distill/manifest.h"

#include <openssl/evp.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>

#include "util/build_info.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::distill {

namespace {

// OpenSSL's streaming SHA-256; `feed` is called with an update(const void*, size_t) function.
template <typename Feed>
std::string sha256_of(Feed&& feed) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    fail("SHA-256: OpenSSL could not start a digest");
  feed([&](const void* p, size_t n) { EVP_DigestUpdate(ctx.get(), p, n); });
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  std::string out;
  char tmp[3];
  for (unsigned int i = 0; i < len; ++i)
    std::snprintf(tmp, sizeof tmp, "%02x", digest[i]), out += tmp;
  return out;
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  return sha256_of([&](auto update) { update(data.data(), data.size()); });
}

std::string sha256_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), ": cannot open");
  return sha256_of([&](auto update) {
    std::array<char, 1 << 16> buf;
    while (in) {
      in.read(buf.data(), buf.size());
      update(buf.data(), static_cast<size_t>(in.gcount()));
    }
  });
}

void write_manifest(const std::filesystem::path& dir, nlohmann::json fields) {
  fields["git_commit"] = build_commit();
  fields["created"] = static_cast<int64_t>(std::time(nullptr));
  fields["drafteu"] = "drafteu distill";
  std::filesystem::create_directories(dir);
  write_file_atomic(dir / "manifest.json", fields.dump(2) + "\n");
}

}  // namespace drafteu::distill
