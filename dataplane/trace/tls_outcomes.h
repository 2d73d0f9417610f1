// TLS-RPT (RFC 8460) outcome recording: every outbound TLS session's outcome, per UTC day, policy
// domain and policy type (sts, tlsa, no-policy-found), counted — successes per policy, failures per
// result type with the fields a report's failure-details need (sending MTA IP, receiving MX host
// name and IP, failure reason code). Also the failures that stopped a session before it began
// (dnssec-invalid, sts-policy-fetch-error, ...), with no receiving host.
//
// Durable like the message trace: one SQLite database per worker (<spool>/tlsrpt-w<k>.db, WAL), the
// worker its only writer; counts are buffered during an event-loop turn and added in one
// transaction at its end (flush()). query() sums every worker's database (any process, read-only),
// for the daily reports (#8) and tests. Rows older than the retention are deleted by expire().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace mxedge::trace {

struct TlsOutcome {
  int64_t day = 0;            // the UTC day (Unix seconds of its 00:00:00Z)
  std::string policy_type;    // "sts" | "tlsa" | "no-policy-found"
  std::string policy_domain;
  std::string policy_id;      // sts: the policy's TXT id; tlsa: empty (policy_strings identify it)
  std::string policy_strings; // tlsa: the TLSA records ("3 1 1 ..."), one per line; sts: empty
  std::string mx_hosts;       // sts: the policy's mx patterns, one per line
  std::string result_type;    // empty: a successful session
  std::string sending_mta_ip, receiving_mx_hostname, receiving_ip, failure_reason_code;  // failures only
  uint64_t sessions = 0;

  // What identifies a row (everything but the count and the policy's text).
  std::string key() const;
};

class TlsOutcomeStore {
 public:
  static std::unique_ptr<TlsOutcomeStore> open(const std::string& path, int64_t retention_s, std::string* error);
  ~TlsOutcomeStore();
  TlsOutcomeStore(const TlsOutcomeStore&) = delete;
  TlsOutcomeStore& operator=(const TlsOutcomeStore&) = delete;

  // One session (o.sessions is ignored: each call counts one).
  void record(const TlsOutcome& o);
  void flush();
  size_t pending() const { return buffer_.size(); }
  size_t expire(int64_t now_s);

  // Every outcome of days in [day_from, day_to] in every database of `paths`, summed over workers.
  static std::vector<TlsOutcome> query(const std::vector<std::string>& paths, int64_t day_from, int64_t day_to, std::string* error);
  static std::vector<std::string> databases(const std::string& spool_dir);
  static std::string path_for(const std::string& spool_dir, unsigned worker);
  static int64_t utc_day(int64_t unix_s) { return unix_s - ((unix_s % 86400) + 86400) % 86400; }

 private:
  TlsOutcomeStore() = default;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* upsert_ = nullptr;
  int64_t retention_s_ = 0;
  std::map<std::string, TlsOutcome> buffer_;
  bool reported_failure_ = false;
};

}  // namespace mxedge::trace
