#include "dataplane/trace/tlsrpt_inbound.h"

#include <sqlite3.h>

#include <algorithm>

#include "dataplane/trace/trace_store.h"

namespace mxedge::trace {
namespace {

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS reports ("
    " id TEXT PRIMARY KEY, received INTEGER NOT NULL, worker INTEGER NOT NULL, size INTEGER NOT NULL,"
    " from_addr TEXT NOT NULL, subject TEXT NOT NULL, report_domain TEXT NOT NULL, submitter TEXT NOT NULL,"
    " organization TEXT NOT NULL, report_id TEXT NOT NULL, contact_info TEXT NOT NULL, start_datetime TEXT NOT NULL,"
    " end_datetime TEXT NOT NULL, policy_domains TEXT NOT NULL, successes INTEGER NOT NULL, failures INTEGER NOT NULL,"
    " report_json TEXT NOT NULL, error TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS reports_received ON reports (received);";

constexpr const char* kColumns =
    "id, received, worker, size, from_addr, subject, report_domain, submitter, organization, report_id, contact_info,"
    " start_datetime, end_datetime, policy_domains, successes, failures, error";

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : "\n") + s;
  return out;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    if (nl == std::string::npos) nl = s.size();
    out.push_back(s.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

}  // namespace

std::string TlsRptInboundStore::path_for(const std::string& spool_dir, unsigned worker) {
  return spool_dir + "/tlsrpt-inbound-w" + std::to_string(worker) + ".db";
}

std::vector<std::string> TlsRptInboundStore::databases(const std::string& spool_dir) {
  return TraceStore::worker_databases(spool_dir, "tlsrpt-inbound-w");
}

std::unique_ptr<TlsRptInboundStore> TlsRptInboundStore::open(const std::string& path, int64_t retention_s, std::string* error) {
  std::unique_ptr<TlsRptInboundStore> t(new TlsRptInboundStore());
  t->retention_s_ = retention_s;
  t->db_ = TraceStore::open_database(path, kSchema, "TLS-RPT inbound report store", error);
  if (t->db_ == nullptr) return nullptr;
  if (sqlite3_prepare_v2(t->db_, "INSERT OR REPLACE INTO reports VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &t->insert_,
                         nullptr) != SQLITE_OK) {
    *error = "TLS-RPT inbound report store " + path + ": " + sqlite3_errmsg(t->db_);
    return nullptr;
  }
  return t;
}

TlsRptInboundStore::~TlsRptInboundStore() {
  if (insert_ != nullptr) sqlite3_finalize(insert_);
  if (db_ != nullptr) sqlite3_close(db_);
}

bool TlsRptInboundStore::add(const InboundReport& r, std::string* error) {
  int i = 1;
  auto bind = [&](const std::string& s) { sqlite3_bind_text(insert_, i++, s.c_str(), static_cast<int>(s.size()), SQLITE_TRANSIENT); };
  bind(r.id);
  sqlite3_bind_int64(insert_, i++, r.received);
  sqlite3_bind_int64(insert_, i++, r.worker);
  sqlite3_bind_int64(insert_, i++, static_cast<int64_t>(r.size));
  bind(r.from);
  bind(r.subject);
  bind(r.report_domain);
  bind(r.submitter);
  bind(r.organization);
  bind(r.report_id);
  bind(r.contact_info);
  bind(r.start_datetime);
  bind(r.end_datetime);
  bind(join_lines(r.policy_domains));
  sqlite3_bind_int64(insert_, i++, static_cast<int64_t>(std::min<uint64_t>(r.successes, INT64_MAX)));
  sqlite3_bind_int64(insert_, i++, static_cast<int64_t>(std::min<uint64_t>(r.failures, INT64_MAX)));
  bind(r.report_json);
  bind(r.error);
  const bool ok = sqlite3_step(insert_) == SQLITE_DONE;
  if (!ok) *error = sqlite3_errmsg(db_);
  sqlite3_reset(insert_);
  sqlite3_clear_bindings(insert_);
  return ok;
}

size_t TlsRptInboundStore::expire(int64_t now_s) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "DELETE FROM reports WHERE received < ?", -1, &st, nullptr) != SQLITE_OK) return 0;
  sqlite3_bind_int64(st, 1, now_s - retention_s_);
  sqlite3_step(st);
  sqlite3_finalize(st);
  return static_cast<size_t>(sqlite3_changes(db_));
}

std::vector<InboundReport> TlsRptInboundStore::query(const std::vector<std::string>& paths, const InboundQuery& q, size_t* total,
                                                     std::string* error) {
  std::vector<InboundReport> out;
  const std::string domain = lower(q.domain);
  for (const std::string& path : paths) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      *error = "cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
      sqlite3_close(db);
      return {};
    }
    sqlite3_busy_timeout(db, 2000);
    const std::string sql = std::string("SELECT ") + kColumns + (q.with_json ? ", report_json" : ", ''") +
                            " FROM reports WHERE received >= ?1 AND (?2 = '' OR id = ?2)";
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      *error = path + ": " + sqlite3_errmsg(db);
      sqlite3_close(db);
      return {};
    }
    sqlite3_bind_int64(st, 1, q.since);
    sqlite3_bind_text(st, 2, q.id.c_str(), static_cast<int>(q.id.size()), SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      InboundReport r;
      int c = 0;
      r.id = TraceStore::column_text(st, c++);
      r.received = sqlite3_column_int64(st, c++);
      r.worker = static_cast<unsigned>(sqlite3_column_int64(st, c++));
      r.size = static_cast<uint64_t>(sqlite3_column_int64(st, c++));
      r.from = TraceStore::column_text(st, c++);
      r.subject = TraceStore::column_text(st, c++);
      r.report_domain = TraceStore::column_text(st, c++);
      r.submitter = TraceStore::column_text(st, c++);
      r.organization = TraceStore::column_text(st, c++);
      r.report_id = TraceStore::column_text(st, c++);
      r.contact_info = TraceStore::column_text(st, c++);
      r.start_datetime = TraceStore::column_text(st, c++);
      r.end_datetime = TraceStore::column_text(st, c++);
      r.policy_domains = split_lines(TraceStore::column_text(st, c++));
      r.successes = static_cast<uint64_t>(sqlite3_column_int64(st, c++));
      r.failures = static_cast<uint64_t>(sqlite3_column_int64(st, c++));
      r.error = TraceStore::column_text(st, c++);
      r.report_json = TraceStore::column_text(st, c++);
      if (!domain.empty()) {
        bool any = lower(r.report_domain) == domain;
        for (const auto& d : r.policy_domains) any = any || lower(d) == domain;
        if (!any) continue;
      }
      out.push_back(std::move(r));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  std::sort(out.begin(), out.end(), [](const InboundReport& a, const InboundReport& b) {
    return a.received != b.received ? a.received > b.received : a.id > b.id;
  });
  if (total != nullptr) *total = out.size();
  if (out.size() > q.limit) out.resize(q.limit);
  return out;
}

}  // namespace mxedge::trace
