#include "dataplane/trace/trace_store.h"

#include <dirent.h>
#include <sqlite3.h>

#include <algorithm>
#include <cctype>

#include "policy/log.h"

namespace mxedge::trace {
namespace {

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS events ("
    " ts_us INTEGER NOT NULL, qid TEXT NOT NULL, event TEXT NOT NULL, domain TEXT, rcpts INTEGER,"
    " host TEXT, address TEXT, requirement TEXT, dane_mode TEXT, sts_mode TEXT, dnssec TEXT, mta_sts TEXT,"
    " tls_version TEXT, cipher TEXT, verification TEXT, dane_usage INTEGER, dane_depth INTEGER,"
    " result_type TEXT, detail TEXT, worker INTEGER, recipients TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS events_qid ON events(qid);"
    "CREATE INDEX IF NOT EXISTS events_domain_ts ON events(domain, ts_us);"
    "CREATE INDEX IF NOT EXISTS events_ts ON events(ts_us);";


}  // namespace

std::string TraceStore::path_for(const std::string& spool_dir, unsigned worker) {
  return spool_dir + "/trace-w" + std::to_string(worker) + ".db";
}

sqlite3* TraceStore::open_database(const std::string& path, const char* schema, const std::string& what, std::string* error) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    *error = "cannot open " + what + " " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return nullptr;
  }
  char* err = nullptr;
  if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr, &err) != SQLITE_OK ||
      sqlite3_exec(db, schema, nullptr, nullptr, &err) != SQLITE_OK) {
    *error = what + " " + path + ": " + (err ? err : "schema failed");
    sqlite3_free(err);
    sqlite3_close(db);
    return nullptr;
  }
  return db;
}

std::string TraceStore::column_text(sqlite3_stmt* st, int col) {
  const unsigned char* p = sqlite3_column_text(st, col);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p));
}

std::vector<std::string> TraceStore::worker_databases(const std::string& spool_dir, const std::string& prefix) {
  std::vector<std::string> out;
  DIR* d = ::opendir(spool_dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.starts_with(prefix) && n.ends_with(".db")) out.push_back(spool_dir + "/" + n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> TraceStore::databases(const std::string& spool_dir) { return worker_databases(spool_dir, "trace-w"); }

std::unique_ptr<TraceStore> TraceStore::open(const std::string& path, int64_t retention_s, unsigned worker, std::string* error) {
  std::unique_ptr<TraceStore> t(new TraceStore());
  t->retention_us_ = retention_s * 1000000;
  t->worker_ = worker;
  t->db_ = open_database(path, kSchema, "trace store", error);
  if (t->db_ == nullptr) return nullptr;
  // Stores made before the recipients column existed get it (an error here means it is there).
  sqlite3_exec(t->db_, "ALTER TABLE events ADD COLUMN recipients TEXT NOT NULL DEFAULT ''", nullptr, nullptr, nullptr);
  if (sqlite3_prepare_v2(t->db_,
                         "INSERT INTO events (ts_us, qid, event, domain, rcpts, host, address, requirement, dane_mode, sts_mode,"
                         " dnssec, mta_sts, tls_version, cipher, verification, dane_usage, dane_depth, result_type, detail,"
                         " worker, recipients) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &t->insert_, nullptr) != SQLITE_OK) {
    *error = "trace store " + path + ": " + sqlite3_errmsg(t->db_);
    return nullptr;
  }
  return t;
}

TraceStore::~TraceStore() {
  flush();
  if (insert_ != nullptr) sqlite3_finalize(insert_);
  if (db_ != nullptr) sqlite3_close(db_);
}

void TraceStore::add(TraceEvent e) {
  e.worker = worker_;
  buffer_.push_back(std::move(e));
}

void TraceStore::flush() {
  if (buffer_.empty() || db_ == nullptr) return;
  bool ok = sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK;
  for (const TraceEvent& e : buffer_) {
    if (!ok) break;
    int i = 1;
    auto bind = [&](const std::string& s) { sqlite3_bind_text(insert_, i++, s.c_str(), -1, SQLITE_TRANSIENT); };
    sqlite3_bind_int64(insert_, i++, e.ts_us);
    bind(e.qid);
    bind(e.event);
    bind(e.domain);
    sqlite3_bind_int64(insert_, i++, e.rcpts);
    bind(e.host);
    bind(e.address);
    bind(e.requirement);
    bind(e.dane_mode);
    bind(e.sts_mode);
    bind(e.dnssec);
    bind(e.mta_sts);
    bind(e.tls_version);
    bind(e.cipher);
    bind(e.verification);
    sqlite3_bind_int(insert_, i++, e.dane_usage);
    sqlite3_bind_int(insert_, i++, e.dane_depth);
    bind(e.result_type);
    bind(e.detail);
    sqlite3_bind_int(insert_, i++, static_cast<int>(e.worker));
    std::string rcpts;
    for (const std::string& r : e.recipients) rcpts += "," + r;
    if (!rcpts.empty()) rcpts += ",";
    bind(rcpts);
    ok = sqlite3_step(insert_) == SQLITE_DONE;
    sqlite3_reset(insert_);
  }
  ok = ok && sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
  if (!ok) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    if (!reported_failure_) {
      log::error("trace.write_failed").kv("worker", worker_).kv("reason", sqlite3_errmsg(db_)).kv("events", static_cast<uint64_t>(buffer_.size()));
      reported_failure_ = true;
    }
  } else {
    reported_failure_ = false;
  }
  buffer_.clear();
}

size_t TraceStore::expire(int64_t now_us) {
  if (db_ == nullptr || retention_us_ <= 0) return 0;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "DELETE FROM events WHERE ts_us < ?", -1, &st, nullptr) != SQLITE_OK) return 0;
  sqlite3_bind_int64(st, 1, now_us - retention_us_);
  sqlite3_step(st);
  sqlite3_finalize(st);
  return static_cast<size_t>(sqlite3_changes(db_));
}

std::vector<TraceEvent> TraceStore::query(const std::vector<std::string>& paths, const TraceQuery& q, std::string* error) {
  std::vector<TraceEvent> out;
  for (const std::string& path : paths) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      *error = "cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
      sqlite3_close(db);
      return {};
    }
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* st = nullptr;
    const char* sql =
        "SELECT ts_us, qid, event, domain, rcpts, host, address, requirement, dane_mode, sts_mode, dnssec, mta_sts,"
         " tls_version, cipher, verification, dane_usage, dane_depth, result_type, detail, worker, recipients FROM events"
        " WHERE (?1 = '' OR qid = ?1) AND (?2 = '' OR domain = ?2) AND ts_us >= ?3"
        " AND (?5 = '' OR instr(recipients, ',' || ?5 || ',') > 0) ORDER BY ts_us LIMIT ?4";
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) {
      *error = path + ": " + sqlite3_errmsg(db);
      sqlite3_close(db);
      return {};
    }
    sqlite3_bind_text(st, 1, q.qid.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, q.domain.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, q.since_us);
    sqlite3_bind_int64(st, 4, static_cast<int64_t>(q.limit));
    std::string rcpt = q.recipient;
    for (char& ch : rcpt) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    sqlite3_bind_text(st, 5, rcpt.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      TraceEvent e;
      int c = 0;
      e.ts_us = sqlite3_column_int64(st, c++);
      e.qid = column_text(st, c++);
      e.event = column_text(st, c++);
      e.domain = column_text(st, c++);
      e.rcpts = static_cast<uint32_t>(sqlite3_column_int64(st, c++));
      e.host = column_text(st, c++);
      e.address = column_text(st, c++);
      e.requirement = column_text(st, c++);
      e.dane_mode = column_text(st, c++);
      e.sts_mode = column_text(st, c++);
      e.dnssec = column_text(st, c++);
      e.mta_sts = column_text(st, c++);
      e.tls_version = column_text(st, c++);
      e.cipher = column_text(st, c++);
      e.verification = column_text(st, c++);
      e.dane_usage = sqlite3_column_int(st, c++);
      e.dane_depth = sqlite3_column_int(st, c++);
      e.result_type = column_text(st, c++);
      e.detail = column_text(st, c++);
      e.worker = static_cast<unsigned>(sqlite3_column_int(st, c++));
      const std::string rcpts = column_text(st, c++);
      for (size_t pos = 0; pos < rcpts.size();) {
        const size_t next = rcpts.find(',', pos);
        if (next == std::string::npos) break;
        if (next > pos) e.recipients.push_back(rcpts.substr(pos, next - pos));
        pos = next + 1;
      }
      out.push_back(std::move(e));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  std::stable_sort(out.begin(), out.end(), [](const TraceEvent& a, const TraceEvent& b) { return a.ts_us < b.ts_us; });
  if (out.size() > q.limit) out.resize(q.limit);
  return out;
}

}  // namespace mxedge::trace
