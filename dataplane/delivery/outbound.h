// Outbound delivery, per worker: mail received on an outbound intake listener leaves by MX, and only
// over a connection that satisfies its destination's policy (policy/delivery_policy.h, compiled by
// the control plane and held in the PolicyStore).
//
// A spooled message is split into jobs, one per recipient domain (its Destination). A Destination
// reads its policy from the store's snapshot; when there is none (or it expired) it asks the control
// plane through the PolicyClient and parks its jobs — the worker never waits — until the policy
// arrives (the store is polled every 100 ms while anything waits) or `policy_wait` passes (then the
// jobs are deferred: never delivered without a policy, never downgraded). Per verdict:
//   deliver  the MX hosts in order (equal preferences shuffled, RFC 5321 §5.1), each address in turn,
//            one probing RelayConnection per host attempt, then up to
//            outbound.connections_per_destination once it carries mail: STARTTLS as the host's requirement
//            demands (kMay: when offered; otherwise required), the TLS session judged by
//            tls::OutboundTls::check (DANE / WebPKI / none); a host that fails (connect, greeting,
//            no STARTTLS, TLS policy) is logged and the next one is tried; when every host failed the
//            jobs are deferred with the reasons of all of them.
//   defer    jobs deferred with the policy's reason (bogus DNSSEC, DANE or MTA-STS mandatory unmet).
//   bounce   recipients failed with the policy's status (null MX 5.1.10, NXDOMAIN 5.1.2).
// Deferred jobs come back after exponential back-off with jitter (outbound.retry_min..retry_max) and
// re-read the policy, so a policy change applies to queued mail.
//
// Logs (the message trace until the trace store exists): event=delivery.attempt_failed (domain, host,
// address, requirement, reason, result_type), event=message.delivered (qid, domain, host, address,
// TLS version and cipher, verification method, DANE usage and match depth, policy modes, reply),
// event=message.deferred, event=message.failed.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/policy/policy_client.h"
#include "dataplane/policy/policy_store.h"
#include "dataplane/relay/connection_owner.h"
#include "dataplane/relay/relay_connection.h"
#include "dataplane/spool/spool.h"
#include "dataplane/stats/counters.h"
#include "dataplane/tls/client_verify.h"
#include "dataplane/trace/tls_outcomes.h"
#include "dataplane/trace/trace_store.h"
#include "dataplane/worker/event_loop.h"
#include "dataplane/worker/runtime_config.h"

namespace mxedge::delivery {

class Outbound;

// One recipient domain's queue on one worker.
class Destination final : public relay::ConnectionOwner {
 public:
  Destination(Outbound& outbound, std::string domain);
  ~Destination() override;

  void add(relay::Job job);
  // Acts on the queue: looks the policy up, opens connections, defers or bounces.
  void kick();
  bool waiting_for_policy() const { return waiting_since_ms_ >= 0; }
  bool idle() const { return connections_.empty() && ready_.empty() && deferred_.empty(); }
  bool connected() const { return !connections_.empty(); }
  void stop();
  void abort_all();
  void reap() { graveyard_.clear(); }
  void release_deferred(int64_t now_ms);
  size_t retry(const std::function<bool(const spool::SpoolEntry&)>& match);  // see Outbound::retry
  void take(const spool::SpoolEntry* entry, std::vector<relay::Job>* out);    // see Outbound::take
  int64_t next_deferred_ms() const { return deferred_.empty() ? INT64_MAX : deferred_.begin()->first; }

  // relay::ConnectionOwner
  worker::EventLoop& loop() override;
  spool::Spool& spool() override;
  unsigned worker_index() const override;
  stats::WorkerCounters& counters() override;
  const std::string& helo_name() const override;
  bool stopping() const override;
  relay::ConnectTarget target(relay::RelayConnection* c) override;
  relay::TlsNeed tls_need(relay::RelayConnection* c) const override;
  SSL* new_ssl(relay::RelayConnection* c, std::string* error) override;
  std::string accept_tls(relay::RelayConnection* c, SSL* ssl) override;
  std::string requiretls_refusal(relay::RelayConnection* c, SSL* ssl) override;
  bool requiretls_refused(relay::RelayConnection* c, const relay::Job& job, const std::string& reason) override;
  bool next_job(relay::RelayConnection* c, relay::Job* job) override;
  void defer(relay::RelayConnection* c, const relay::Job& job, const std::string& reason) override;
  void report(relay::RelayConnection* c, const relay::Job& job, const std::vector<mxedge::spool::v1::RecipientResult>& settled,
              const std::string& peer, SSL* ssl, const std::string& reply) override;
  void hop_ok(relay::RelayConnection* c) override;
  void hop_failed(relay::RelayConnection* c, const std::string& reason) override;
  void connection_closed(relay::RelayConnection* c) override;

 private:
  struct Attempt {
    size_t host = 0;  // index into policy_->hosts
    SocketAddress address;
  };
  // What one connection is: which attempt (host and address) it serves, and how far it got.
  struct Conn {
    size_t attempt = 0;
    bool ok = false;      // reached the point of sending mail
    bool failed = false;  // failed as a host failure
    tls::VerifyOutcome tls;
    // RFC 8689 5 ("TLS-Required: No"): a connection whose host failed its DANE / MTA-STS requirement
    // (or offered no STARTTLS) but stays open for messages with that header only (`relaxed`, and
    // why); `tls_optional`: started while such messages waited, so STARTTLS is opportunistic.
    bool relaxed = false;
    bool tls_optional = false;
    bool tls_up = false;
    std::string relaxed_reason;
  };
  // May a connection in state `st` (its host; relaxed or not) carry `job`? REQUIRETLS jobs only to a
  // host that has not refused them and may qualify; a relaxed connection only "TLS-Required: No" jobs.
  bool carries(const Conn& st, const relay::Job& job) const;
  // Moves attempt_ past hosts that no waiting job may use (REQUIRETLS jobs refused everywhere else).
  void skip_useless_attempts();
  // Fails (5.7.30) the waiting REQUIRETLS jobs no host of the policy may carry any more.
  void fail_unroutable_requiretls();
  void fail_job(relay::Job job, const std::string& reply);
  void relax(relay::RelayConnection* c, const std::string& reason);
  trace::TraceEvent event(const char* what, const relay::Job* job, const Conn* c) const;
  // A TLS-RPT outcome under host `h`'s policy (null: a policy failure before any session); a failure
  // on connection `c` also names the addresses and the verifier's reason.
  trace::TlsOutcome outcome(const policy::HostPolicy* h, const std::string& result_type, relay::RelayConnection* c = nullptr);
  void plan_attempts();
  void start_connection(size_t attempt);
  void defer_all(const std::string& reason, const std::string& status);
  void fail_all(const std::string& reply);
  void backoff(relay::Job job, const std::string& reason);
  const policy::HostPolicy& host_of(const Conn& c) const { return policy_->hosts[attempts_[c.attempt].host]; }
  Conn& conn(relay::RelayConnection* c) { return conns_[c]; }

  Outbound& out_;
  std::string domain_;
  std::deque<relay::Job> ready_;
  bool last_job_exempt_ = false;  // the last job a connection took was a TLS-RPT report
  bool tlsrpt_exempt() const;
  void record_outcome(const trace::TlsOutcome& o);
  std::multimap<int64_t, relay::Job> deferred_;
  std::shared_ptr<const policy::DestinationPolicy> policy_;  // the policy of the current round
  std::vector<Attempt> attempts_;
  size_t attempt_ = 0;                 // the attempt new connections of this round go to
  std::vector<std::string> failures_;  // this round's host failures
  std::string last_result_type_;       // of this round's last host failure
  int64_t waiting_since_ms_ = -1;
  std::unordered_map<relay::RelayConnection*, Conn> conns_;
  std::vector<std::unique_ptr<relay::RelayConnection>> connections_;
  std::vector<std::unique_ptr<relay::RelayConnection>> graveyard_;
};

class Outbound {
 public:
  Outbound(worker::EventLoop& loop, spool::Spool& spool, unsigned worker_index, stats::WorkerCounters& counters,
           dataplane::PolicyStore& store, dataplane::PolicyClient* client);
  ~Outbound();

  // Null when the TLS client context cannot be made (error logged).
  bool set_runtime(std::shared_ptr<const worker::RuntimeConfig> runtime);
  void enqueue(spool::SpoolEntry* entry);
  // Moves deferred jobs whose message `match` accepts back to their destination's ready queue and
  // starts them (the management API's "queue retry"); returns how many jobs.
  size_t retry(const std::function<bool(const spool::SpoolEntry&)>& match);
  // Takes every queued (ready or deferred, not in flight) job of `entry` out of its destination
  // (hold, delete); put_back() returns them (ready) when the operation cannot go ahead.
  std::vector<relay::Job> take(const spool::SpoolEntry* entry);
  void put_back(std::vector<relay::Job> jobs);
  void stop();
  bool idle() const;
  void abort_all();
  // Frees closed connections and forgets idle destinations. Called at the end of every loop turn,
  // it scans the destinations at most once a second (the scan is O(destinations)); `now` forces it.
  void reap(bool now = false);

  // For destinations.
  worker::EventLoop& loop() { return loop_; }
  spool::Spool& spool() { return spool_; }
  unsigned worker_index() const { return worker_; }
  stats::WorkerCounters& counters() { return counters_; }
  const worker::RuntimeConfig& runtime() const { return *runtime_; }
  dataplane::PolicyStore& store() { return store_; }
  dataplane::PolicyClient* client() { return client_; }
  tls::OutboundTls& tls() { return *tls_; }
  bool stopping() const { return stopping_; }
  const std::vector<std::string>& accepted_domains() const { return accepted_domains_; }
  std::mt19937_64& rng() { return rng_; }
  int64_t backoff_ms(uint32_t attempts);
  void wake_for_policy() { poll_timer_.arm_at(loop_.now_ms() + 100); }
  // New policies arrived: destinations waiting for one look now.
  void policies_changed() { poll(); }
  // The message trace (null when it could not be opened: logged, delivery goes on).
  void trace(trace::TraceEvent e) {
    if (trace_) trace_->add(std::move(e));
  }
  void flush_trace() {
    if (trace_) trace_->flush();
    if (outcomes_) outcomes_->flush();
  }
  // TLS-RPT: one session's outcome (dataplane/trace/tls_outcomes.h).
  void record_outcome(const trace::TlsOutcome& o) {
    if (outcomes_) outcomes_->record(o);
  }
  void wake_at(int64_t when_ms);

 private:
  void poll();

  worker::EventLoop& loop_;
  spool::Spool& spool_;
  unsigned worker_;
  stats::WorkerCounters& counters_;
  dataplane::PolicyStore& store_;
  dataplane::PolicyClient* client_;
  std::shared_ptr<const worker::RuntimeConfig> runtime_;
  std::vector<std::string> accepted_domains_;
  std::unique_ptr<tls::OutboundTls> tls_;
  std::unordered_map<std::string, std::unique_ptr<Destination>> destinations_;
  std::unique_ptr<trace::TraceStore> trace_;
  std::unique_ptr<trace::TlsOutcomeStore> outcomes_;
  worker::FunctionTimer poll_timer_;
  worker::FunctionTimer deferred_timer_;
  worker::FunctionTimer trace_expiry_timer_;
  bool stopping_ = false;
  int64_t last_reap_ms_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace mxedge::delivery
