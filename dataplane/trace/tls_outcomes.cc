#include "dataplane/trace/tls_outcomes.h"

#include <sqlite3.h>

#include <algorithm>

#include "dataplane/trace/trace_store.h"
#include "policy/log.h"

namespace mxedge::trace {
namespace {

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS outcomes ("
    " day INTEGER NOT NULL, policy_type TEXT NOT NULL, policy_domain TEXT NOT NULL, policy_id TEXT NOT NULL,"
    " policy_strings TEXT NOT NULL, mx_hosts TEXT NOT NULL, result_type TEXT NOT NULL, sending_mta_ip TEXT NOT NULL,"
    " receiving_mx_hostname TEXT NOT NULL, receiving_ip TEXT NOT NULL, failure_reason_code TEXT NOT NULL,"
    " sessions INTEGER NOT NULL,"
    " PRIMARY KEY (day, policy_type, policy_domain, policy_id, result_type, sending_mta_ip, receiving_mx_hostname,"
    "  receiving_ip, failure_reason_code));";

constexpr const char* kUpsert =
    "INSERT INTO outcomes VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (day, policy_type, policy_domain, policy_id, result_type, sending_mta_ip, receiving_mx_hostname,"
    "  receiving_ip, failure_reason_code)"
    " DO UPDATE SET sessions = sessions + excluded.sessions, policy_strings = excluded.policy_strings,"
    "  mx_hosts = excluded.mx_hosts";


}  // namespace

std::string TlsOutcome::key() const {
  std::string k = std::to_string(day);
  for (const std::string* f : {&policy_type, &policy_domain, &policy_id, &result_type, &sending_mta_ip, &receiving_mx_hostname,
                               &receiving_ip, &failure_reason_code}) {
    k += '\x1f';
    k += *f;
  }
  return k;
}

std::string TlsOutcomeStore::path_for(const std::string& spool_dir, unsigned worker) {
  return spool_dir + "/tlsrpt-w" + std::to_string(worker) + ".db";
}

std::vector<std::string> TlsOutcomeStore::databases(const std::string& spool_dir) {
  return TraceStore::worker_databases(spool_dir, "tlsrpt-w");
}

std::unique_ptr<TlsOutcomeStore> TlsOutcomeStore::open(const std::string& path, int64_t retention_s, std::string* error) {
  std::unique_ptr<TlsOutcomeStore> t(new TlsOutcomeStore());
  t->retention_s_ = retention_s;
  t->db_ = TraceStore::open_database(path, kSchema, "TLS-RPT outcome store", error);
  if (t->db_ == nullptr) return nullptr;
  if (sqlite3_prepare_v2(t->db_, kUpsert, -1, &t->upsert_, nullptr) != SQLITE_OK) {
    *error = "TLS-RPT outcome store " + path + ": " + sqlite3_errmsg(t->db_);
    return nullptr;
  }
  return t;
}

TlsOutcomeStore::~TlsOutcomeStore() {
  flush();
  if (upsert_ != nullptr) sqlite3_finalize(upsert_);
  if (db_ != nullptr) sqlite3_close(db_);
}

void TlsOutcomeStore::record(const TlsOutcome& o) {
  auto [it, fresh] = buffer_.try_emplace(o.key(), o);
  if (fresh) it->second.sessions = 1;
  else ++it->second.sessions;
}

void TlsOutcomeStore::flush() {
  if (buffer_.empty() || db_ == nullptr) return;
  bool ok = sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK;
  for (const auto& [key, o] : buffer_) {
    if (!ok) break;
    int i = 1;
    auto bind = [&](const std::string& s) { sqlite3_bind_text(upsert_, i++, s.c_str(), -1, SQLITE_TRANSIENT); };
    sqlite3_bind_int64(upsert_, i++, o.day);
    bind(o.policy_type);
    bind(o.policy_domain);
    bind(o.policy_id);
    bind(o.policy_strings);
    bind(o.mx_hosts);
    bind(o.result_type);
    bind(o.sending_mta_ip);
    bind(o.receiving_mx_hostname);
    bind(o.receiving_ip);
    bind(o.failure_reason_code);
    sqlite3_bind_int64(upsert_, i++, static_cast<int64_t>(o.sessions));
    ok = sqlite3_step(upsert_) == SQLITE_DONE;
    sqlite3_reset(upsert_);
  }
  ok = ok && sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
  if (!ok) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    if (!reported_failure_) {
      log::error("tlsrpt.write_failed").kv("reason", sqlite3_errmsg(db_)).kv("rows", static_cast<uint64_t>(buffer_.size()));
      reported_failure_ = true;
    }
  } else {
    reported_failure_ = false;
  }
  buffer_.clear();  // counts never hold mail back; a failed write loses them (logged once)
}

size_t TlsOutcomeStore::expire(int64_t now_s) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "DELETE FROM outcomes WHERE day < ?", -1, &st, nullptr) != SQLITE_OK) return 0;
  sqlite3_bind_int64(st, 1, utc_day(now_s - retention_s_));
  sqlite3_step(st);
  sqlite3_finalize(st);
  return static_cast<size_t>(sqlite3_changes(db_));
}

std::vector<TlsOutcome> TlsOutcomeStore::query(const std::vector<std::string>& paths, int64_t day_from, int64_t day_to, std::string* error) {
  std::map<std::string, TlsOutcome> sum;
  for (const std::string& path : paths) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      *error = "cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
      sqlite3_close(db);
      return {};
    }
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db,
                           "SELECT day, policy_type, policy_domain, policy_id, policy_strings, mx_hosts, result_type, sending_mta_ip,"
                           " receiving_mx_hostname, receiving_ip, failure_reason_code, sessions FROM outcomes"
                           " WHERE day >= ?1 AND day <= ?2",
                           -1, &st, nullptr) != SQLITE_OK) {
      *error = path + ": " + sqlite3_errmsg(db);
      sqlite3_close(db);
      return {};
    }
    sqlite3_bind_int64(st, 1, day_from);
    sqlite3_bind_int64(st, 2, day_to);
    while (sqlite3_step(st) == SQLITE_ROW) {
      TlsOutcome o;
      int c = 0;
      o.day = sqlite3_column_int64(st, c++);
      o.policy_type = TraceStore::column_text(st, c++);
      o.policy_domain = TraceStore::column_text(st, c++);
      o.policy_id = TraceStore::column_text(st, c++);
      o.policy_strings = TraceStore::column_text(st, c++);
      o.mx_hosts = TraceStore::column_text(st, c++);
      o.result_type = TraceStore::column_text(st, c++);
      o.sending_mta_ip = TraceStore::column_text(st, c++);
      o.receiving_mx_hostname = TraceStore::column_text(st, c++);
      o.receiving_ip = TraceStore::column_text(st, c++);
      o.failure_reason_code = TraceStore::column_text(st, c++);
      o.sessions = static_cast<uint64_t>(sqlite3_column_int64(st, c++));
      auto [it, fresh] = sum.try_emplace(o.key(), o);
      if (!fresh) it->second.sessions += o.sessions;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  std::vector<TlsOutcome> out;
  for (auto& [k, o] : sum) out.push_back(std::move(o));
  return out;
}

}  // namespace mxedge::trace
