// TLS-RPT (RFC 8460) reports received from other MTAs: what the data plane found in mail to
// tlsrpt.inbound.mailboxes (controlplane/tlsrpt/intake), for `mxedgectl tlsrpt list|show`.
//
// Durable like the message trace: one SQLite database per worker (<spool>/tlsrpt-inbound-w<k>.db,
// WAL), the worker its only writer; a report is written when it is parsed (reports are rare, a row
// each). A rejected report is stored too, with its error, so the operator sees that a sender's reports
// are broken. query() reads every worker's database (any process, read-only). Rows older than the
// retention are deleted by expire().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace mxedge::trace {

struct InboundReport {
  std::string id;          // the queue id of the mail that carried it
  int64_t received = 0;    // Unix seconds
  unsigned worker = 0;
  uint64_t size = 0;       // the message's size
  // The mail's header fields.
  std::string from, subject, report_domain, submitter;
  // The report (empty when rejected).
  std::string organization, report_id, contact_info, start_datetime, end_datetime;
  std::vector<std::string> policy_domains;
  uint64_t successes = 0, failures = 0;
  std::string report_json;  // canonical RFC 8460 JSON (tlsrpt::to_json); only filled by query(with_json)
  std::string error;        // why the report was rejected; empty when parsed
};

struct InboundQuery {
  std::string id;      // exact; empty: any
  std::string domain;  // a policy domain of the report, or its TLS-Report-Domain (case-insensitive); empty: any
  int64_t since = 0;   // received at or after (Unix seconds)
  size_t limit = 100;  // newest first
  bool with_json = false;
};

class TlsRptInboundStore {
 public:
  static std::unique_ptr<TlsRptInboundStore> open(const std::string& path, int64_t retention_s, std::string* error);
  ~TlsRptInboundStore();
  TlsRptInboundStore(const TlsRptInboundStore&) = delete;
  TlsRptInboundStore& operator=(const TlsRptInboundStore&) = delete;

  // Writes (or replaces: the same queue id seen again) one report. False with *error when the write
  // failed.
  bool add(const InboundReport& r, std::string* error);
  size_t expire(int64_t now_s);

  // The reports matching `q` in every database of `paths`, newest first, at most q.limit; *total is
  // how many matched before the limit.
  static std::vector<InboundReport> query(const std::vector<std::string>& paths, const InboundQuery& q, size_t* total,
                                          std::string* error);
  static std::vector<std::string> databases(const std::string& spool_dir);
  static std::string path_for(const std::string& spool_dir, unsigned worker);

 private:
  TlsRptInboundStore() = default;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  int64_t retention_s_ = 0;
};

}  // namespace mxedge::trace
