// load_worker.h - one event-loop thread of mxedge-loadgen.
//
// DESCRIPTION
//   A LoadWorker owns an epoll instance, its share of the run's sessions and
//   its own RunStats. Nothing is shared between workers except the read-only
//   configuration, message template and SSL_CTX, and RunControl, through which
//   the main thread asks them to stop and through which they agree on when an
//   --idle hold ends. A worker starts sessions according to the run's shape:
//
//   closed loop (default)  keep `concurrency` sessions in flight until
//                          `sessions` have been started or --duration is up;
//   open loop (--rate)     start sessions on a fixed schedule regardless of
//                          completions, never more than `concurrency` at once;
//                          a session started more than 10 ms after its slot is
//                          counted late, one never started before the end is
//                          counted missed;
//   idle (--idle)          open `idle_sessions`, at most `concurrency` of them
//                          handshaking at a time, keep them idle until the hold
//                          ends, then QUIT them all.
//
// STANDARDS
//   None here; see smtp_client_session.h.
//
// SECURITY
//   Sessions are destroyed only after the epoll batch that may still name them
//   has been handled (the graveyard), so a stale event never reaches freed
//   memory.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "loadgen_config.h"
#include "message_template.h"
#include "run_stats.h"
#include "smtp_client_session.h"

namespace mxedge::loadgen {

// What the main thread and the workers share while running.
struct RunControl {
  std::int64_t start_ns = 0;
  unsigned workers = 1;
  // Incremented by SIGINT/SIGTERM: 1 = stop starting sessions, finish those in
  // flight; 2 = abort.
  std::atomic<int> interrupts{0};
  // Set by a worker on the first failure under --exit-on-error.
  std::atomic<bool> abort{false};
  // Idle mode: workers whose sessions all reached idle (or failed), and the end
  // of the hold, set by the last of them.
  std::atomic<unsigned> workers_settled{0};
  std::atomic<std::int64_t> hold_deadline_ns{0};
};

struct WorkerShare {
  bool limited = false;  // sessions is a limit (else --duration decides)
  std::uint64_t sessions = 0;
  unsigned concurrency = 1;
  double rate = 0;  // sessions per second for this worker; 0: closed loop
  std::int64_t rate_offset_ns = 0;
  std::uint64_t idle_sessions = 0;
};

class LoadWorker {
 public:
  LoadWorker(const LoadgenConfig& config, SSL_CTX* ssl_ctx, const MessageTemplate& message, RunControl& control,
             unsigned index, const WorkerShare& share, std::uint64_t run_id);
  ~LoadWorker();
  LoadWorker(const LoadWorker&) = delete;
  LoadWorker& operator=(const LoadWorker&) = delete;

  // Creates the epoll instance. False (errno set) if the system refuses.
  bool init();
  // The thread body: returns when the worker's share is done or aborted.
  void run();

  [[nodiscard]] const RunStats& stats() const { return stats_; }
  [[nodiscard]] const LiveCounters& live() const { return live_; }
  // When run() returned (monotonic_ns()).
  [[nodiscard]] std::int64_t finished_ns() const { return finished_ns_; }

 private:
  // True when the run must stop now (--exit-on-error after a failure, a
  // second interrupt); raises the shared abort flag for the other workers.
  bool abort_wanted();
  void start_closed_loop(bool stopping);
  void start_open_loop(std::int64_t now, bool interrupted);
  void manage_idle(std::int64_t now, bool interrupted);
  void begin_quit_idle();
  void start_one();
  void retire(SmtpClientSession& session);
  void scan_timeouts(std::int64_t now);
  void abort_all();
  [[nodiscard]] std::uint64_t due_by(std::int64_t when) const;
  [[nodiscard]] std::int64_t scheduled_at(std::uint64_t index) const;
  [[nodiscard]] int wait_ms(std::int64_t now) const;

  const LoadgenConfig& config_;
  RunControl& control_;
  WorkerShare share_;
  RunStats stats_;
  LiveCounters live_;
  std::vector<char> read_buffer_;
  WorkerContext ctx_;
  int epoll_fd_ = -1;
  std::int64_t finished_ns_ = 0;

  std::vector<std::unique_ptr<SmtpClientSession>> active_;
  std::vector<std::unique_ptr<SmtpClientSession>> graveyard_;
  std::uint64_t started_ = 0;
  bool finished_starting_ = false;
  std::int64_t duration_end_ = 0;  // 0: no --duration
  bool settled_ = false;           // idle mode
  bool quitting_ = false;          // idle mode
};

}  // namespace mxedge::loadgen
