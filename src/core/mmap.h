// Read-only memory map of a whole file. Readers validate every offset against size() before touching data().
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lowbit {

class MappedFile {
 public:
  // Throws Error("<path>: cannot open: <reason>") on failure. An empty file maps to size 0, data nullptr.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

using MappedFilePtr = std::shared_ptr<const MappedFile>;

// Drops the resident pages of [p, p + n) from this process (madvise MADV_DONTNEED on the whole pages inside
// it) when the range lies in a live MappedFile; otherwise does nothing and returns false. The mappings are
// read-only, so the data stay valid: a later read faults the pages back from the page cache or the file.
// For large checkpoints whose weights are read once (checked, then quantized): without it every page ever
// read counts in the RSS until exit.
bool release_mapped_pages(const void* p, size_t n);

// Tells the kernel that [p, p + n) of a live MappedFile will be read at scattered places (random = true,
// madvise MADV_RANDOM: no read-around) or back to the default. A page fault normally reads the pages
// around it too; gathering a few thousand embedding rows of a 128k-vocabulary model that way faults in
// nearly the whole 500 MiB table. Returns false, doing nothing, outside a mapping.
bool expect_random_reads(const void* p, size_t n, bool random);

// An unlinked temporary file for data that need not stay in RAM: it is gone with its last descriptor or
// mapping, also when the process is killed. Its pages live in the OS page cache, which is not this
// process's RSS and is written back or dropped under memory pressure (on a disk, not a tmpfs /tmp).
class ScratchFile {
 public:
  // dir: where to create it; empty = $TMPDIR or /tmp. bytes: its initial size, reading as zeros.
  // Throws Error("<dir>: cannot create a scratch file: <reason>").
  explicit ScratchFile(const std::string& dir, uint64_t bytes = 0);
  ~ScratchFile();
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  void write(uint64_t off, const void* p, size_t n) const;
  void read(uint64_t off, void* p, size_t n) const;
  // Writes n bytes at the end of the file (page-aligned) and maps them back read-only. The mapping is
  // registered like a MappedFile's (release_mapped_pages works on it) and outlives this object. None of
  // its pages are resident until read.
  std::shared_ptr<const uint8_t> append_mapped(const void* p, size_t n);

 private:
  int fd_ = -1;
  std::string dir_;
  uint64_t end_ = 0;
};

// Whole file into a string (for small text/JSON files). Throws Error naming the file.
std::string read_file(const std::string& path);
// Atomic replace: write to path.tmp.<pid>, fsync, rename.
void write_file_atomic(const std::string& path, const void* data, size_t n);
inline void write_file_atomic(const std::string& path, const std::string& s) {
  write_file_atomic(path, s.data(), s.size());
}

}  // namespace lowbit
