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

#include "dataplane/spool/spool.h"
#include "dataplane/stats/counters.h"
#include "dataplane/worker/event_loop.h"
#include "dataplane/worker/runtime_config.h"

namespace mxedge::relay {

class RelayConnection;

class Relay {
 public:
  Relay(worker::EventLoop& loop, spool::Spool& spool, unsigned worker_index, stats::WorkerCounters& counters);
  ~Relay();

  void set_runtime(std::shared_ptr<const worker::RuntimeConfig> runtime);
  void enqueue(spool::SpoolEntry* entry);

  // Graceful stop: no new transactions; idle connections quit.
  void stop();
  bool idle() const { return connections_.empty(); }
  void abort_all();
  void reap();

  // From connections.
  spool::SpoolEntry* next_message();
  void defer(spool::SpoolEntry* entry, const std::string& reason);  // transient failure
  void hop_ok();
  void hop_failed(const std::string& reason);
  void connection_closed(RelayConnection* c);

  worker::EventLoop& loop() { return loop_; }
  spool::Spool& spool() { return spool_; }
  const worker::RuntimeConfig& runtime() const { return *runtime_; }
  unsigned worker_index() const { return worker_; }
  stats::WorkerCounters& counters() { return counters_; }
  bool stopping() const { return stopping_; }

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
};

}  // namespace mxedge::relay
