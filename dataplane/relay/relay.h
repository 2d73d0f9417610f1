// Relay of spooled inbound mail to the configured next hop (the organisation's own mail server),
// per worker: a ready queue, a deferred queue with exponential back-off and jitter, and up to
// next_hop.connections_per_worker SMTP client connections that each deliver one message after another.
//
// A recipient leaves the spool only after the next hop's 250 for the message (or a permanent 5xx for
// that recipient); everything else is retried. While the next hop is unreachable, the relay backs off
// as a whole instead of hammering it message by message.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "dataplane/relay/connection_owner.h"
#include "dataplane/spool/spool.h"
#include "dataplane/stats/counters.h"
#include "dataplane/worker/event_loop.h"
#include "dataplane/worker/runtime_config.h"

namespace mxedge::relay {

class RelayConnection;

class Relay final : public ConnectionOwner {
 public:
  Relay(worker::EventLoop& loop, spool::Spool& spool, unsigned worker_index, stats::WorkerCounters& counters);
  ~Relay() override;

  void set_runtime(std::shared_ptr<const worker::RuntimeConfig> runtime);
  void enqueue(spool::SpoolEntry* entry);

  // Graceful stop: no new transactions; idle connections quit.
  void stop();
  bool idle() const { return connections_.empty(); }
  void abort_all();
  void reap();
  // Moves deferred entries that `match` accepts to the ready queue and starts them (the management
  // API's "queue retry"); returns how many.
  size_t retry(const std::function<bool(const spool::SpoolEntry&)>& match);
  // Takes `entry` out of the ready and deferred queues (hold, delete); false when it is in neither
  // (in flight, or already held).
  bool take(const spool::SpoolEntry* entry);

  // ConnectionOwner, for its connections.
  worker::EventLoop& loop() override { return loop_; }
  spool::Spool& spool() override { return spool_; }
  unsigned worker_index() const override { return worker_; }
  stats::WorkerCounters& counters() override { return counters_; }
  const std::string& helo_name() const override { return runtime_->config.hostname(); }
  bool stopping() const override { return stopping_; }
  ConnectTarget target(RelayConnection*) override;
  TlsNeed tls_need(RelayConnection*) const override;
  SSL* new_ssl(RelayConnection*, std::string* error) override;
  std::string accept_tls(RelayConnection*, SSL*) override { return {}; }  // NEXT_HOP_TLS_VERIFY fails inside the handshake
  std::string requiretls_refusal(RelayConnection*, SSL* ssl) override;
  // The next hop is the only one: a refused REQUIRETLS message fails (5.7.30) on the connection.
  bool requiretls_refused(RelayConnection*, const Job&, const std::string&) override { return false; }
  bool next_job(RelayConnection*, Job* job) override;
  void defer(RelayConnection*, const Job& job, const std::string& reason) override;  // transient failure
  void report(RelayConnection*, const Job& job, const std::vector<mxedge::spool::v1::RecipientResult>& settled, const std::string& peer, SSL* ssl,
              const std::string& reply) override;
  void hop_ok(RelayConnection*) override;
  void hop_failed(RelayConnection*, const std::string& reason) override;
  void connection_closed(RelayConnection* c) override;

  const worker::RuntimeConfig& runtime() const { return *runtime_; }

 private:
  void kick();
  void release_deferred();
  int64_t backoff_ms(uint32_t failures);

  worker::EventLoop& loop_;
  spool::Spool& spool_;
  unsigned worker_;
  stats::WorkerCounters& counters_;
  std::shared_ptr<const worker::RuntimeConfig> runtime_;
  std::deque<spool::SpoolEntry*> ready_;
  std::multimap<int64_t, spool::SpoolEntry*> deferred_;
  std::vector<std::unique_ptr<RelayConnection>> connections_;
  std::vector<std::unique_ptr<RelayConnection>> graveyard_;
  worker::FunctionTimer deferred_timer_;
  worker::FunctionTimer hop_timer_;
  int64_t hop_retry_at_ = 0;
  uint32_t hop_failures_ = 0;
  bool stopping_ = false;
  std::mt19937_64 rng_;
  size_t next_address_ = 0;
};

}  // namespace mxedge::relay
