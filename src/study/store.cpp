#include "study/store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/sha256.h"

namespace lowbit {

namespace {

constexpr int kSchemaVersion = 1;

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql, const std::string& path) : path_(path) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK)
      fail("{}: result store: {}", path, sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  bool step() {  // true while a row is available
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail("{}: result store: {}", path_, sqlite3_errmsg(sqlite3_db_handle(s_)));
  }
  std::string text(int col) const {
    const unsigned char* t = sqlite3_column_text(s_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), size_t(sqlite3_column_bytes(s_, col))) : "";
  }
  int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }
  double real(int col) const { return sqlite3_column_double(s_, col); }

 private:
  sqlite3_stmt* s_ = nullptr;
  std::string path_;
};

Json parse_column(const std::string& text, const std::string& path, const char* what) {
  try {
    return text.empty() ? Json() : Json::parse(text);
  } catch (const std::exception&) {
    fail("{}: result store: malformed {} JSON in a cell", path, what);
  }
}

}  // namespace

ResultStore::ResultStore(const std::string& path) : path_(path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    fail("{}: cannot open result store: {}", path, msg);
  }
  sqlite3_busy_timeout(db_, 120000);  // shards sharing one store wait for each other's short transactions
  try {
    // Rollback journal with full fsync: a commit is on disk before put() returns, and a kill mid-transaction
    // rolls back on the next open.
    exec("PRAGMA synchronous=FULL");
    exec(
        "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);"
        "CREATE TABLE IF NOT EXISTS cells(key TEXT PRIMARY KEY, seq INTEGER, model TEXT, model_hash TEXT,"
        " model_info TEXT, row TEXT, col TEXT, params TEXT, metrics TEXT, provenance TEXT, seconds REAL,"
        " peak_rss INTEGER, lowbit_version TEXT, created_at TEXT);"
        "CREATE TABLE IF NOT EXISTS file_hashes(path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
        " sha256 TEXT);");
    Stmt ins(db_, "INSERT OR IGNORE INTO meta(k, v) VALUES('schema', ?1)", path_);
    ins.bind(1, std::to_string(kSchemaVersion)).step();
    Stmt q(db_, "SELECT v FROM meta WHERE k = 'schema'", path_);
    if (!q.step() || q.text(0) != std::to_string(kSchemaVersion))
      fail("{}: result store schema version {} is not the supported {}", path_, q.text(0), kSchemaVersion);
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
}

ResultStore::~ResultStore() {
  sqlite3_close(db_);
}

void ResultStore::exec(const char* sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    fail("{}: result store: {} (is it a lowbit store?)", path_, msg);
  }
}

std::set<std::string> ResultStore::keys() const {
  std::set<std::string> out;
  Stmt q(db_, "SELECT key FROM cells", path_);
  while (q.step()) out.insert(q.text(0));
  return out;
}

bool ResultStore::has(const std::string& key) const {
  Stmt q(db_, "SELECT 1 FROM cells WHERE key = ?1", path_);
  return q.bind(1, key).step();
}

bool ResultStore::put(const CellRecord& c) {
  Stmt s(db_,
         "INSERT OR IGNORE INTO cells(key, seq, model, model_hash, model_info, row, col, params, metrics,"
         " provenance, seconds, peak_rss, lowbit_version, created_at)"
         " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
         path_);
  s.bind(1, c.key)
      .bind(2, c.seq)
      .bind(3, c.model)
      .bind(4, c.model_hash)
      .bind(5, c.model_info.dump())
      .bind(6, c.row.dump())
      .bind(7, c.column)
      .bind(8, c.params.dump())
      .bind(9, c.metrics.dump())
      .bind(10, c.provenance.dump())
      .bind(11, c.seconds)
      .bind(12, int64_t(c.peak_rss))
      .bind(13, c.lowbit_version)
      .bind(14, c.created_at);
  s.step();
  return sqlite3_changes(db_) == 1;
}

std::vector<CellRecord> ResultStore::cells() const {
  std::vector<CellRecord> out;
  Stmt q(db_,
         "SELECT key, seq, model, model_hash, model_info, row, col, params, metrics, provenance, seconds,"
         " peak_rss, lowbit_version, created_at FROM cells ORDER BY seq, key",
         path_);
  while (q.step()) {
    CellRecord c;
    c.key = q.text(0);
    c.seq = q.integer(1);
    c.model = q.text(2);
    c.model_hash = q.text(3);
    c.model_info = parse_column(q.text(4), path_, "model_info");
    c.row = parse_column(q.text(5), path_, "row");
    c.column = q.text(6);
    c.params = parse_column(q.text(7), path_, "params");
    c.metrics = parse_column(q.text(8), path_, "metrics");
    c.provenance = parse_column(q.text(9), path_, "provenance");
    c.seconds = q.real(10);
    c.peak_rss = uint64_t(q.integer(11));
    c.lowbit_version = q.text(12);
    c.created_at = q.text(13);
    out.push_back(std::move(c));
  }
  return out;
}

std::string ResultStore::file_sha256(const std::string& file) {
  struct stat st {};
  if (stat(file.c_str(), &st) != 0) fail("{}: cannot stat", file);
  const int64_t size = int64_t(st.st_size),
                mtime = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  {
    Stmt q(db_, "SELECT sha256 FROM file_hashes WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3", path_);
    if (q.bind(1, file).bind(2, size).bind(3, mtime).step()) return q.text(0);
  }
  std::string h = sha256_file(file);
  Stmt s(db_, "INSERT OR REPLACE INTO file_hashes(path, size, mtime_ns, sha256) VALUES(?1, ?2, ?3, ?4)",
         path_);
  s.bind(1, file).bind(2, size).bind(3, mtime).bind(4, h).step();
  return h;
}

}  // namespace lowbit
