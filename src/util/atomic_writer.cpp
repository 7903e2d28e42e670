#include "util/atomic_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "util/error.h"

namespace drafteu {

AtomicWriter::AtomicWriter(const std::filesystem::path& path) : path_(path) {
  std::random_device rd;
  tmp_ = path;
  tmp_ += cat(".tmp.", ::getpid(), ".", rd());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(path_.string(), ": cannot create ", tmp_.string(), ": ", std::strerror(errno));
}

AtomicWriter::~AtomicWriter() {
  abort();
}

void AtomicWriter::abort() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
    fd_ = -1;
  }
}

void AtomicWriter::write(const void* data, size_t n) {
  if (fd_ < 0) fail(path_.string(), ": write after commit");
  const auto* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    // Linux caps one write() at ~2 GiB; chunk so huge tensors need no special casing.
    size_t chunk = std::min<size_t>(n - done, size_t{1} << 30);
    ssize_t k = ::write(fd_, p + done, chunk);
    if (k < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      abort();
      fail(path_.string(), ": write failed: ", std::strerror(e));
    }
    done += static_cast<size_t>(k);
  }
  written_ += n;
}

void AtomicWriter::write_zeros(size_t n) {
  static const char zeros[64] = {};
  while (n > 0) {
    size_t k = std::min(n, sizeof(zeros));
    write(zeros, k);
    n -= k;
  }
}

void AtomicWriter::commit() {
  if (fd_ < 0) fail(path_.string(), ": commit after commit");
  int fd = fd_;
  fd_ = -1;
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp_.c_str());
    fail(path_.string(), ": fsync failed: ", std::strerror(e));
  }
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp_.c_str());
    fail(path_.string(), ": close failed: ", std::strerror(e));
  }
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) {
    ::unlink(tmp_.c_str());
    fail(path_.string(), ": rename failed: ", ec.message());
  }
  // Make the rename itself durable; failure here is not worth failing the write for.
  auto dir = path_.parent_path();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace drafteu
