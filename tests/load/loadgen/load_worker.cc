// load_worker.cc - one event-loop thread of mxedge-loadgen.
//
// DESCRIPTION
//   The loop: decide which sessions to start, wait for socket events (at most
//   100 ms, less when the open-loop schedule or the --duration end is nearer),
//   let each ready session do its I/O, and every 100 ms check the per-step
//   timeouts. A 100 ms check is precise enough for timeouts counted in seconds
//   and costs a pass over the active list, which is cheap even with 10,000
//   idle sessions.
//
//   Open-loop schedule: session k of worker w starts at
//   start + w / rate + k * workers / rate, so the workers' schedules interleave
//   into one evenly spaced schedule of `rate` sessions per second.
//
// STANDARDS
//   None.
//
// SECURITY
//   See load_worker.h (deferred destruction of sessions).
#include "load_worker.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>

namespace mxedge::loadgen {

namespace {

constexpr std::int64_t kTickNs = 100'000'000;
constexpr std::int64_t kLateNs = 10'000'000;
constexpr std::size_t kReadBufferSize = 16384;
constexpr int kMaxEvents = 256;

}  // namespace

LoadWorker::LoadWorker(const LoadgenConfig& config, SSL_CTX* ssl_ctx, const MessageTemplate& message,
                       RunControl& control, unsigned index, const WorkerShare& share, std::uint64_t run_id)
    : config_(config),
      control_(control),
      share_(share),
      read_buffer_(kReadBufferSize),
      ctx_(config, ssl_ctx, message, stats_, live_) {
  ctx_.worker_index = index;
  ctx_.run_id = run_id;
  ctx_.read_buffer = read_buffer_.data();
  ctx_.read_buffer_size = read_buffer_.size();
}

LoadWorker::~LoadWorker() {
  active_.clear();
  graveyard_.clear();
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

bool LoadWorker::init() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  ctx_.epoll_fd = epoll_fd_;
  return epoll_fd_ >= 0;
}

void LoadWorker::run() {
  ctx_.run_start_ns = control_.start_ns;
  stats_.timeline_enabled = config_.timeline;
  if (config_.duration_s > 0) {
    duration_end_ = control_.start_ns + static_cast<std::int64_t>(config_.duration_s * 1e9);
  }
  epoll_event events[kMaxEvents];
  std::int64_t last_scan = monotonic_ns();
  for (;;) {
    const std::int64_t now = monotonic_ns();
    if (abort_wanted()) {
      abort_all();
      break;
    }
    const bool interrupted = control_.interrupts.load(std::memory_order_relaxed) >= 1;
    if (config_.idle_mode()) {
      manage_idle(now, interrupted);
    } else if (config_.open_loop()) {
      start_open_loop(now, interrupted);
    } else {
      start_closed_loop(interrupted || (duration_end_ != 0 && now >= duration_end_));
    }
    if (finished_starting_ && active_.empty()) break;

    const int ready = epoll_wait(epoll_fd_, events, kMaxEvents, wait_ms(now));
    for (int i = 0; i < ready; ++i) {
      auto* session = static_cast<SmtpClientSession*>(events[i].data.ptr);
      if (session->done()) continue;
      session->on_io();
      if (session->done()) retire(*session);
    }
    const std::int64_t after = monotonic_ns();
    if (after - last_scan >= kTickNs) {
      scan_timeouts(after);
      last_scan = after;
    }
    graveyard_.clear();
  }
  graveyard_.clear();
  finished_ns_ = monotonic_ns();
}

bool LoadWorker::abort_wanted() {
  if (config_.exit_on_error && live_.errors.load(std::memory_order_relaxed) != 0) {
    control_.abort.store(true);
  }
  return control_.abort.load(std::memory_order_relaxed) || control_.interrupts.load(std::memory_order_relaxed) >= 2;
}

void LoadWorker::start_one() {
  auto owned = std::make_unique<SmtpClientSession>(ctx_);
  SmtpClientSession& session = *owned;
  session.slot = active_.size();
  active_.push_back(std::move(owned));
  ++started_;
  session.start();
  if (session.done()) retire(session);
}

void LoadWorker::start_closed_loop(bool stopping) {
  if (stopping || (share_.limited && started_ >= share_.sessions)) {
    finished_starting_ = true;
    return;
  }
  // Bounded per pass so that sessions failing at once (no such address, out
  // of descriptors) cannot keep the loop from noticing the clock or a stop.
  unsigned budget = share_.concurrency;
  while (budget-- > 0 && active_.size() < share_.concurrency && (!share_.limited || started_ < share_.sessions) &&
         !abort_wanted()) {
    start_one();
  }
}

std::int64_t LoadWorker::scheduled_at(std::uint64_t index) const {
  return control_.start_ns + share_.rate_offset_ns +
         static_cast<std::int64_t>(static_cast<double>(index) * 1e9 / share_.rate);
}

std::uint64_t LoadWorker::due_by(std::int64_t when) const {
  const std::int64_t first = control_.start_ns + share_.rate_offset_ns;
  if (share_.rate <= 0 || when < first) return 0;
  auto due = static_cast<std::uint64_t>(std::floor(static_cast<double>(when - first) * share_.rate / 1e9)) + 1;
  if (share_.limited) due = std::min(due, share_.sessions);
  return due;
}

void LoadWorker::start_open_loop(std::int64_t now, bool interrupted) {
  if (finished_starting_) return;
  if (interrupted) {
    finished_starting_ = true;
    return;
  }
  // Sessions scheduled before the end of --duration belong to the run even
  // when the loop wakes up after the end; the rest of the schedule does not.
  const bool ended = duration_end_ != 0 && now >= duration_end_;
  const std::uint64_t due = due_by(ended ? duration_end_ - 1 : now);
  while (started_ < due && active_.size() < share_.concurrency && !abort_wanted()) {
    const std::int64_t lag = now - scheduled_at(started_);
    if (lag > kLateNs) ++stats_.late_starts;
    stats_.max_start_lag_ns = std::max(stats_.max_start_lag_ns, lag);
    start_one();
  }
  if (ended) {
    if (due > started_) stats_.missed_starts += due - started_;
    finished_starting_ = true;
  } else if (share_.limited && started_ >= share_.sessions) {
    finished_starting_ = true;
  }
}

void LoadWorker::manage_idle(std::int64_t now, bool interrupted) {
  if (interrupted && !quitting_) begin_quit_idle();
  if (quitting_) {
    finished_starting_ = true;
    return;
  }
  const auto establishing = [this] { return active_.size() - ctx_.idle_now; };
  unsigned budget = share_.concurrency;
  while (budget-- > 0 && started_ < share_.idle_sessions && establishing() < share_.concurrency) {
    if (share_.rate > 0 && started_ >= due_by(now)) break;
    start_one();
  }
  if (!settled_ && started_ >= share_.idle_sessions && establishing() == 0) {
    settled_ = true;
    if (control_.workers_settled.fetch_add(1) + 1 == control_.workers) {
      const auto hold = static_cast<std::int64_t>(config_.hold_s * 1e9);
      control_.hold_deadline_ns.store(monotonic_ns() + hold);
    }
  }
  if (settled_) {
    const std::int64_t deadline = control_.hold_deadline_ns.load();
    if (deadline != 0 && now >= deadline) begin_quit_idle();
  }
}

void LoadWorker::begin_quit_idle() {
  quitting_ = true;
  ctx_.skip_idle = true;
  for (std::size_t i = 0; i < active_.size();) {
    SmtpClientSession& session = *active_[i];
    session.end_idle();
    if (session.done()) {
      retire(session);
    } else {
      ++i;
    }
  }
}

void LoadWorker::retire(SmtpClientSession& session) {
  const std::size_t index = session.slot;
  graveyard_.push_back(std::move(active_[index]));
  if (index + 1 != active_.size()) {
    active_[index] = std::move(active_.back());
    active_[index]->slot = index;
  }
  active_.pop_back();
}

void LoadWorker::scan_timeouts(std::int64_t now) {
  for (std::size_t i = 0; i < active_.size();) {
    SmtpClientSession& session = *active_[i];
    session.on_tick(now);
    if (session.done()) {
      retire(session);
    } else {
      ++i;
    }
  }
}

void LoadWorker::abort_all() {
  for (auto& session : active_) session->abort();
  for (auto& session : active_) graveyard_.push_back(std::move(session));
  active_.clear();
  finished_starting_ = true;
}

int LoadWorker::wait_ms(std::int64_t now) const {
  std::int64_t wait = kTickNs;
  if (!finished_starting_ && config_.open_loop() && active_.size() < share_.concurrency) {
    wait = std::min(wait, scheduled_at(started_) - now);
  }
  if (!finished_starting_ && duration_end_ != 0) wait = std::min(wait, duration_end_ - now);
  if (wait <= 0) return 0;
  // Round up: waking before the scheduled time would only spin.
  return static_cast<int>((wait + 999'999) / 1'000'000);
}

}  // namespace mxedge::loadgen
