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

// Whole file into a string (for small text/JSON files). Throws Error naming the file.
std::string read_file(const std::string& path);
// Atomic replace: write to path.tmp.<pid>, fsync, rename.
void write_file_atomic(const std::string& path, const void* data, size_t n);
inline void write_file_atomic(const std::string& path, const std::string& s) {
  write_file_atomic(path, s.data(), s.size());
}

}  // namespace lowbit
