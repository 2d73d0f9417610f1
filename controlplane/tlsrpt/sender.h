// TLS-RPT (RFC 8460) daily aggregate reports: after each UTC day ends, the outcomes the data plane
// recorded for that day (dataplane/trace/tls_outcomes, fetched over the management API) become one
// report per policy domain; each is sent to the rua targets of `_smtp._tls.<policy domain>` — mailto:
// through the gateway's own outbound path (a submit to the data plane, flagged so that the report's
// own sessions are not reported on), https: as a POST of application/tlsrpt+gzip.
//
// Scheduling (RFC 8460 §4.1 asks senders to spread reports): a report for day D is due at
// D+1 00:00Z plus a fixed per-domain offset within `spread` (a hash of the domain), so the receivers
// of many domains are not all hit at midnight and a restart does not move the time. Failed sends are
// retried with doubling back-off between retry_min and retry_max until give_up_after has passed.
//
// Durability: every report is written to state_dir (the gzipped JSON and a small job file with its
// targets and sending state, each replaced atomically) before anything is sent, and a cursor file
// records the last day whose reports were created. A restart neither loses a report nor sends one
// twice to a target that took it; a crash between a target taking a report and the job file being
// rewritten can repeat that one send (at-least-once, as for mail).
//
// Threading: one thread of its own. Everything it needs from elsewhere comes through SenderDeps, so
// the unit tests drive it with an injected clock and recorded deliveries; the daemon's deps talk to
// the data plane's management socket, resolve through a validating resolver owned by the thread, and
// POST with libcurl.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/tlsrpt/report.h"
#include "mxedge/config/v1/config.pb.h"
#include "mxedge/mgmt/v1/mgmt.pb.h"

namespace mxedge::tlsrpt {

// Who the reports say they come from.
struct ReportIdentity {
  std::string organization_name;
  std::string contact_info;
  std::string submitter;
};

// The reports for `day` (Unix seconds of its 00:00:00Z) from that day's outcome rows: one per policy
// domain, its policies grouped by type, id, policy strings and mx patterns, in a stable order. The
// report-id is "<start-datetime>_<policy-domain>" (RFC 8460 Appendix B's form), unique per
// submitter and the same if the day is ever reported again.
std::vector<Report> aggregate(int64_t day, const std::vector<mxedge::mgmt::v1::TlsOutcome>& outcomes,
                              const ReportIdentity& who);

// The rua targets of a domain's TLS-RPT record lookup.
struct RuaLookup {
  enum class Kind { kFound, kNone, kTemporaryFailure } kind = Kind::kTemporaryFailure;
  std::vector<std::string> rua;
  std::string detail;  // why none / what failed
};

// Picks the targets out of the TXT records at _smtp._tls.<domain>: exactly one v=TLSRPTv1 record
// that parses (none, or more than one, means no reports — RFC 8460 §3).
RuaLookup rua_from_txt(const std::vector<std::string>& txt);

// The address of a mailto: URI ("mailto:tls%2Drpt@example.org?subject=x" -> "tls-rpt@example.org":
// percent-decoded, hfields dropped); empty when it is not one or is unfit to be an SMTP envelope
// recipient (white space, controls, quotes, brackets, several addresses).
std::string mailto_address(const std::string& uri);

struct SenderDeps {
  std::function<int64_t()> now;  // Unix seconds
  // The outcome rows of one UTC day; nullopt with *error when the data plane cannot be asked.
  std::function<std::optional<std::vector<mxedge::mgmt::v1::TlsOutcome>>(int64_t day, std::string* error)> outcomes;
  std::function<RuaLookup(const std::string& domain)> lookup_rua;
  // Queues a report mail through the outbound path; the queue id, or nullopt with *error.
  std::function<std::optional<std::string>(const std::string& from, const std::string& to, const std::string& message,
                                           std::string* error)>
      submit_mail;
  // POSTs the gzipped report; true on a 2xx answer.
  std::function<bool(const std::string& url, const std::string& body, std::string* error)> post_https;
  // The max_age of the MTA-STS policy `id` of `domain` when the control plane still knows it (the
  // data plane does not record it), for the report's policy-string.
  std::function<std::optional<uint32_t>(const std::string& domain, const std::string& id)> sts_max_age;
};

// The daemon's dependencies: the data plane at `dataplane_socket`, a resolver from `config`'s
// resolver section (created on the sender's thread), libcurl for https:.
SenderDeps daemon_deps(const mxedge::config::v1::Config& config, std::function<int64_t()> now);

// One report waiting in state_dir.
struct PendingReport {
  int64_t day = 0;
  std::string domain;
  std::string report_id;
  int64_t due = 0;
  int64_t next_attempt = 0;
  uint32_t attempts = 0;
  bool looked_up = false;  // the rua targets are known
  struct Target {
    std::string uri;
    bool done = false;
    std::string result;  // the queue id or HTTP answer when done, the last error otherwise
  };
  std::vector<Target> targets;
  std::string last_error;
  uint64_t successes = 0, failures = 0;
};

class ReportSender {
 public:
  // Opens (creating) state_dir; nullptr with *error when it cannot. Does not start the thread.
  static std::unique_ptr<ReportSender> open(const mxedge::config::v1::Config& config, SenderDeps deps, std::string* error);
  ~ReportSender();
  ReportSender(const ReportSender&) = delete;
  ReportSender& operator=(const ReportSender&) = delete;

  void start();  // the sending thread: tick() now and whenever something may be due
  void stop();
  void set_config(const mxedge::config::v1::Config& config);  // reload (identity, timings)

  // One pass: creates the reports of every finished day not yet done, then sends what is due. Returns
  // the number of send attempts made. Thread-compatible: the thread or a test calls it, not both.
  size_t tick();

  std::vector<PendingReport> pending() const;

 private:
  ReportSender(std::string dir, SenderDeps deps) : dir_(std::move(dir)), deps_(std::move(deps)) {}
  void create_reports(int64_t now);
  size_t send_due(int64_t now);
  bool save(const PendingReport& p) const;
  void remove(const PendingReport& p) const;
  std::string base_name(const PendingReport& p) const;
  int64_t offset_for(const std::string& domain) const;
  void run();

  std::string dir_;
  SenderDeps deps_;
  mutable std::mutex mu_;  // guards config_
  mxedge::config::v1::TlsRptReports config_;
  std::condition_variable cv_;
  std::mutex wait_mu_;
  bool stop_ = false;
  std::thread thread_;
  std::string last_outcomes_error_;
};

// Reads the job files of state_dir (for tests and `mxedgectl`): nullopt when a file is unreadable.
std::optional<PendingReport> parse_job(const std::string& text);
std::string format_job(const PendingReport& p);

}  // namespace mxedge::tlsrpt
