#include "core/mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "core/error.h"

namespace lowbit {

namespace {

// Live mappings, begin -> end, so release_mapped_pages never touches anonymous memory (where DONTNEED would
// zero it).
std::mutex g_maps_mu;
std::map<uintptr_t, uintptr_t>& live_maps() {
  static std::map<uintptr_t, uintptr_t> m;
  return m;
}

// A mapping of n bytes at p enters (a MappedFile's, a ScratchFile's) or leaves the registry.
void register_map(const void* p, size_t n) {
  std::lock_guard<std::mutex> lock(g_maps_mu);
  live_maps()[reinterpret_cast<uintptr_t>(p)] = reinterpret_cast<uintptr_t>(p) + n;
}
void unregister_map(const void* p) {
  std::lock_guard<std::mutex> lock(g_maps_mu);
  live_maps().erase(reinterpret_cast<uintptr_t>(p));
}

// madvise(advice) on the whole pages inside [p, p + n) when the range lies in a live MappedFile.
bool advise_mapped(const void* p, size_t n, int advice) {
  const uintptr_t b = reinterpret_cast<uintptr_t>(p), e = b + n;
  {
    std::lock_guard<std::mutex> lock(g_maps_mu);
    auto it = live_maps().upper_bound(b);
    if (it == live_maps().begin()) return false;
    --it;
    if (b < it->first || e > it->second) return false;
  }
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (b + page - 1) / page * page, hi = e / page * page;
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, advice);
  return true;
}

}  // namespace

bool release_mapped_pages(const void* p, size_t n) {
  return advise_mapped(p, n, MADV_DONTNEED);
}

bool expect_random_reads(const void* p, size_t n, bool random) {
  return advise_mapped(p, n, random ? MADV_RANDOM : MADV_NORMAL);
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("{}: cannot mmap: {}", path, std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
    register_map(p, size_);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) {
    unregister_map(data_);
    ::munmap(const_cast<uint8_t*>(data_), size_);
  }
}

ScratchFile::ScratchFile(const std::string& dir, uint64_t bytes) : dir_(dir) {
  if (dir_.empty()) {
    const char* t = std::getenv("TMPDIR");
    dir_ = t && *t ? t : "/tmp";
  }
  std::string tmpl = dir_ + "/lowbit-scratch-XXXXXX";
  fd_ = ::mkstemp(tmpl.data());
  if (fd_ < 0) fail("{}: cannot create a scratch file: {}", dir_, std::strerror(errno));
  ::unlink(tmpl.c_str());
  if (bytes > 0 && ::ftruncate(fd_, off_t(bytes)) != 0) {
    const int e = errno;
    ::close(fd_);
    fail("{}: cannot size a scratch file to {} bytes: {}", dir_, bytes, std::strerror(e));
  }
  end_ = bytes;
}

ScratchFile::~ScratchFile() {
  ::close(fd_);
}

void ScratchFile::write(uint64_t off, const void* p, size_t n) const {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, c, n, off_t(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      fail("{}: writing a scratch file failed: {}", dir_, w < 0 ? std::strerror(errno) : "no space");
    c += w, off += uint64_t(w), n -= size_t(w);
  }
}

void ScratchFile::read(uint64_t off, void* p, size_t n) const {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::pread(fd_, c, n, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      fail("{}: reading a scratch file failed: {}", dir_, r < 0 ? std::strerror(errno) : "short file");
    c += r, off += uint64_t(r), n -= size_t(r);
  }
}

std::shared_ptr<const uint8_t> ScratchFile::append_mapped(const void* p, size_t n) {
  LOWBIT_ASSERT(n > 0);
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t off = (end_ + page - 1) / page * page;
  write(off, p, n);
  end_ = off + n;
  void* m = ::mmap(nullptr, n, PROT_READ, MAP_SHARED, fd_, off_t(off));
  if (m == MAP_FAILED) fail("{}: cannot map a scratch file: {}", dir_, std::strerror(errno));
  register_map(m, n);
  return std::shared_ptr<const uint8_t>(static_cast<const uint8_t*>(m), [n](const uint8_t* q) {
    unregister_map(q);
    ::munmap(const_cast<uint8_t*>(q), n);
  });
}

std::string read_file(const std::string& path) {
  MappedFile f(path);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

void write_file_atomic(const std::string& path, const void* data, size_t n) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  const auto* p = static_cast<const uint8_t*>(data);
  size_t left = n;
  while (left > 0) {
    ssize_t w = ::write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("{}: write failed: {}", tmp, std::strerror(e));
    }
    p += w;
    left -= size_t(w);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename into place: {}", path, std::strerror(e));
  }
}

}  // namespace lowbit
