// The per-worker event loop: epoll over non-blocking sockets, timers, a cross-thread wake-up, and an
// end-of-turn hook (the spool's group commit runs there). Single-threaded by design: everything a
// worker owns is touched only from its loop, so the message path takes no locks.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <vector>

namespace mxedge::worker {

class IoHandler {
 public:
  virtual ~IoHandler() = default;
  virtual void on_io(uint32_t events) = 0;
};

class EventLoop;

// A resettable deadline. Moving the deadline later costs nothing (the heap entry is re-checked when it
// fires); only an earlier deadline pushes a new entry. This keeps the heap at about one entry per
// connection although every command re-arms the idle timeout.
class Timer {
 public:
  explicit Timer(EventLoop* loop);
  virtual ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void arm_at(int64_t deadline_ms);
  void cancel();
  int64_t deadline() const { return deadline_; }

 protected:
  virtual void on_timer() = 0;

 private:
  friend class EventLoop;
  EventLoop* loop_;
  uint32_t slot_;
  int64_t deadline_ = INT64_MAX;
  int64_t scheduled_ = INT64_MAX;
};

// A Timer that runs a function.
class FunctionTimer final : public Timer {
 public:
  FunctionTimer(EventLoop* loop, std::function<void()> fn) : Timer(loop), fn_(std::move(fn)) {}

 protected:
  void on_timer() override { fn_(); }

 private:
  std::function<void()> fn_;
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  bool add(int fd, uint32_t events, IoHandler* handler);
  bool modify(int fd, uint32_t events, IoHandler* handler);
  void remove(int fd);

  // Runs until stop(); each turn: wait, dispatch I/O, fire due timers, run the end-of-turn hook.
  void run();
  void stop() { running_ = false; }
  bool running() const { return running_; }

  void set_end_of_turn(std::function<void()> hook) { end_of_turn_ = std::move(hook); }
  // Thread-safe: runs fn on the loop's thread at its next turn.
  void post(std::function<void()> fn);

  int64_t now_ms() const { return now_ms_; }
  void update_clock();

 private:
  friend class Timer;
  struct HeapEntry {
    int64_t when;
    uint32_t slot;
    uint32_t generation;
    bool operator>(const HeapEntry& o) const { return when > o.when; }
  };
  struct Slot {
    Timer* timer = nullptr;
    uint32_t generation = 0;
  };
  uint32_t register_timer(Timer* t);
  void unregister_timer(uint32_t slot);
  void schedule(Timer* t, int64_t when);
  void fire_timers();
  void drain_posted();

  int epfd_ = -1;
  int wakefd_ = -1;
  bool running_ = false;
  int64_t now_ms_ = 0;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<HeapEntry>> heap_;
  std::function<void()> end_of_turn_;
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
};

}  // namespace mxedge::worker
