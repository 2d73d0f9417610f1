// The message trace: per message and per delivery attempt, what happened and under which policy
// (destination, MX host and address, the requirement and the connector modes, DNSSEC and MTA-STS
// state, TLS version and cipher, how the certificate was verified — DANE usage and match depth, or
// WebPKI —, the outcome, the RFC 8460 result type of a failure, the remote reply or our reason).
//
// Embedded and durable: one SQLite database per worker (WAL; the worker is its only writer), so no
// lock is shared on the message path. Events are buffered during an event-loop turn and written in
// one transaction at its end (flush()); rows older than the retention are deleted by expire().
// query() reads every worker's database (any process, read-only): `mxedge-trace` and the management
// API use it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace mxedge::trace {

struct TraceEvent {
  int64_t ts_us = 0;
  std::string qid;
  std::string event;  // delivered | deferred | failed | expired | attempt_failed | policy_wait
  std::string domain;
  uint32_t rcpts = 0;
  std::string host, address;
  std::string requirement;  // dane | webpki | encrypt | may
  std::string dane_mode, sts_mode, dnssec, mta_sts;
  std::string tls_version, cipher;
  std::string verification;  // dane | webpki | none
  int dane_usage = -1, dane_depth = -1;
  std::string result_type;
  std::string detail;  // the remote reply, or our reason
  unsigned worker = 0;
  std::vector<std::string> recipients;  // the job's recipients (lower case), when the event concerns a job
};

struct TraceQuery {
  std::string qid;     // exact; empty: any
  std::string domain;  // exact; empty: any
  int64_t since_us = 0;
  size_t limit = 1000;
  std::string recipient;  // events whose job included this address (case-insensitive); empty: any
};

class TraceStore {
 public:
  // Opens (creating) `path`. Null with *error when it cannot.
  static std::unique_ptr<TraceStore> open(const std::string& path, int64_t retention_s, unsigned worker, std::string* error);
  ~TraceStore();
  TraceStore(const TraceStore&) = delete;
  TraceStore& operator=(const TraceStore&) = delete;

  void add(TraceEvent e);
  // Writes the buffered events in one transaction; failures are logged once and the events dropped
  // (the trace never holds mail back).
  void flush();
  size_t pending() const { return buffer_.size(); }
  // Deletes rows older than the retention; returns how many.
  size_t expire(int64_t now_us);

  // The events matching `q` in every database of `paths`, oldest first.
  static std::vector<TraceEvent> query(const std::vector<std::string>& paths, const TraceQuery& q, std::string* error);
  // The worker databases under a spool directory (trace-w<k>.db).
  static std::vector<std::string> databases(const std::string& spool_dir);
  // <spool_dir>/<prefix><k>.db for every worker k, sorted (trace-w, tlsrpt-w).
  static std::vector<std::string> worker_databases(const std::string& spool_dir, const std::string& prefix);
  // Opens (creating) a per-worker database in WAL mode with `schema`; null with *error naming `what`.
  static sqlite3* open_database(const std::string& path, const char* schema, const std::string& what, std::string* error);
  // A text column, "" for NULL.
  static std::string column_text(sqlite3_stmt* st, int col);
  static std::string path_for(const std::string& spool_dir, unsigned worker);

 private:
  TraceStore() = default;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  int64_t retention_us_ = 0;
  unsigned worker_ = 0;
  std::vector<TraceEvent> buffer_;
  bool reported_failure_ = false;
};

}  // namespace mxedge::trace
