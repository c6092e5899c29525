// The result store: one SQLite file holding every finished cell (study/record.h), keyed by a hash of what
// determines its numbers. Each cell is one transaction, so a study killed at any moment loses at most the
// cell in flight and never leaves a partial one; several processes may share one store on a local disk
// (SQLite locking, with a busy timeout), and shards on other machines write their own stores that
// `lowbit study merge` combines.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "study/record.h"

struct sqlite3;

namespace lowbit {

class ResultStore {
 public:
  explicit ResultStore(const std::string& path);  // creates the file and schema when missing
  ~ResultStore();
  ResultStore(const ResultStore&) = delete;
  ResultStore& operator=(const ResultStore&) = delete;

  const std::string& path() const { return path_; }
  std::set<std::string> keys() const;
  bool has(const std::string& key) const;
  // Inserts the cell unless its key is already there (then returns false and changes nothing).
  bool put(const CellRecord& cell);
  std::vector<CellRecord> cells() const;  // ordered by (seq, key)

  // sha256 of a file, remembered by (path, size, mtime) so that a resumed study does not re-hash models.
  std::string file_sha256(const std::string& file);

 private:
  void exec(const char* sql) const;
  std::string path_;
  sqlite3* db_ = nullptr;
};

}  // namespace lowbit
