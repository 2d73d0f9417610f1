// One data-plane worker: a thread pinned to one CPU that owns an event loop, one listening socket per
// listener (all workers' sockets form one SO_REUSEPORT group per listener), the inbound sessions it
// accepts, its own spool directory and its own relay connections. Workers share nothing but the
// connection-limit counters (atomics) and the read-only config snapshot.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dataplane/delivery/outbound.h"
#include "dataplane/relay/relay.h"
#include "dataplane/spool/spool.h"
#include "dataplane/stats/counters.h"
#include "dataplane/trace/tlsrpt_inbound.h"
#include "dataplane/worker/event_loop.h"
#include "dataplane/worker/runtime_config.h"

namespace mxedge::worker {

class InboundConnection;

// Connection counters shared by all workers. Per-source counts live in a fixed table indexed by a
// hash of the address (IPv6 by its /64): two sources that collide share a budget, which errs on the
// side of refusing, and the table never grows under a flood of distinct sources.
class ConnectionLimits {
 public:
  enum class Verdict { kOk, kTooManyFromSource, kTooManyTotal };
  Verdict acquire(const SocketAddress& peer, uint32_t per_source, uint32_t total);
  void release(const SocketAddress& peer);
  uint32_t total() const { return total_.load(std::memory_order_relaxed); }

 private:
  static size_t slot(const SocketAddress& peer);
  std::atomic<uint32_t> total_{0};
  std::array<std::atomic<uint32_t>, 1 << 16> per_source_{};
};

class Worker final : public smtp::SessionHost {
 public:
  // `policies` / `policy_client`: the outbound policy link (null when outbound delivery is off).
  Worker(unsigned index, unsigned cpu, std::vector<int> listen_fds, std::shared_ptr<const RuntimeConfig> runtime,
         std::unique_ptr<spool::Spool> spool, ConnectionLimits& limits, dataplane::PolicyStore* policies = nullptr,
         dataplane::PolicyClient* policy_client = nullptr);
  ~Worker() override;

  void start();  // spawns the pinned thread
  void join();
  // Thread-safe requests from the main thread.
  void reload(std::shared_ptr<const RuntimeConfig> runtime);
  void stop(int64_t grace_ms);
  // The policy store changed (any thread).
  void policies_changed();

  // SessionHost
  std::string new_queue_id() override { return spool_->new_queue_id(); }
  std::unique_ptr<smtp::BodySink> open_body(const std::string& queue_id) override { return spool_->open_body(queue_id); }
  bool spool_has_room() override { return spool_->has_room(); }
  std::string rfc5322_date() override;

  // For connections.
  EventLoop& loop() { return loop_; }
  spool::Spool& spool() { return *spool_; }
  unsigned index() const { return index_; }
  unsigned cpu() const { return cpu_; }
  char* scratch() { return scratch_.data(); }
  size_t scratch_size() const { return scratch_.size(); }
  void retire(InboundConnection* c);
  ConnectionLimits& limits() { return limits_; }
  // The management API runs its queue views and actions on the worker's own thread (loop().post).
  relay::Relay* relay() { return relay_.get(); }
  // Hands a spooled message to the relay (inbound) or outbound delivery, unless it is held.
  void route(spool::SpoolEntry* e);
  delivery::Outbound* outbound() { return outbound_.get(); }
  stats::WorkerCounters& counters() { return counters_; }
  // A received message is durable and its 250 is on its way: mail to tlsrpt.inbound.mailboxes is
  // parsed as a TLS-RPT report at the end of this turn (tlsrpt_intake), never before the reply.
  void message_committed(const std::string& queue_id);
  const stats::WorkerCounters& counters() const { return counters_; }

 private:
  class Acceptor;
  void run();
  void accept_ready(size_t listener_index);
  bool refuse_without_descriptors(size_t listener_index);
  void refuse_connection(int fd, const ListenerRuntime& listener, const std::string& reply);
  std::string busy_reply() const;  // 421 4.3.2 ... Service busy
  void end_of_turn();
  void begin_stop(int64_t grace_ms);
  void tlsrpt_intake();
  bool open_tlsrpt_store();

  unsigned index_;
  unsigned cpu_;
  std::vector<int> listen_fds_;
  std::shared_ptr<const RuntimeConfig> runtime_;
  std::unique_ptr<spool::Spool> spool_;
  ConnectionLimits& limits_;
  stats::WorkerCounters counters_;
  EventLoop loop_;
  std::unique_ptr<relay::Relay> relay_;
  std::unique_ptr<delivery::Outbound> outbound_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::unordered_map<InboundConnection*, std::unique_ptr<InboundConnection>> connections_;
  std::vector<std::unique_ptr<InboundConnection>> graveyard_;
  std::vector<char> scratch_;
  std::thread thread_;
  bool stopping_ = false;
  int64_t stop_deadline_ms_ = 0;
  int64_t last_flush_ms_ = 0;
  std::unique_ptr<FunctionTimer> stop_timer_;
  // Out of descriptors: a spare one to accept-and-refuse with, and a pause when even that fails.
  int spare_fd_ = -1;
  bool accept_paused_ = false;
  uint64_t fd_refused_ = 0;
  int64_t fd_exhausted_logged_ms_ = -1'000'000;
  std::unique_ptr<FunctionTimer> accept_resume_timer_;
  // Inbound TLS-RPT reports: queue ids committed this turn, and the store (opened on first use).
  std::vector<std::string> tlsrpt_pending_;
  std::unique_ptr<trace::TlsRptInboundStore> tlsrpt_inbound_;
  int64_t tlsrpt_expired_ms_ = 0;
  bool tlsrpt_store_failed_ = false;
};

}  // namespace mxedge::worker
