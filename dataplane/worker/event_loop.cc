// epoll event loop with lazily re-armed timers; see event_loop.h.
#include "dataplane/worker/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>

#include "policy/log.h"

namespace mxedge::worker {

Timer::Timer(EventLoop* loop) : loop_(loop), slot_(loop->register_timer(this)) {}

Timer::~Timer() { loop_->unregister_timer(slot_); }

void Timer::arm_at(int64_t deadline_ms) {
  deadline_ = deadline_ms;
  if (deadline_ms < scheduled_) loop_->schedule(this, deadline_ms);
}

void Timer::cancel() { deadline_ = INT64_MAX; }

EventLoop::EventLoop() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || wakefd_ < 0) log::fatal("cannot create epoll or eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake-up fd
  epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev);
  update_clock();
}

EventLoop::~EventLoop() {
  if (epfd_ >= 0) ::close(epfd_);
  if (wakefd_ >= 0) ::close(wakefd_);
}

void EventLoop::update_clock() {
  now_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool EventLoop::add(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

bool EventLoop::modify(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  return epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) == 0;
}

void EventLoop::remove(int fd) { epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }

uint32_t EventLoop::register_timer(Timer* t) {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  slots_[slot].timer = t;
  return slot;
}

void EventLoop::unregister_timer(uint32_t slot) {
  slots_[slot].timer = nullptr;
  ++slots_[slot].generation;  // heap entries for the old owner become stale
  free_slots_.push_back(slot);
}

void EventLoop::schedule(Timer* t, int64_t when) {
  t->scheduled_ = when;
  heap_.push(HeapEntry{when, t->slot_, slots_[t->slot_].generation});
}

void EventLoop::fire_timers() {
  while (!heap_.empty() && heap_.top().when <= now_ms_) {
    HeapEntry e = heap_.top();
    heap_.pop();
    Slot& s = slots_[e.slot];
    if (s.timer == nullptr || s.generation != e.generation || s.timer->scheduled_ != e.when) continue;
    Timer* t = s.timer;
    t->scheduled_ = INT64_MAX;
    if (t->deadline_ == INT64_MAX) continue;
    if (t->deadline_ > now_ms_) {
      schedule(t, t->deadline_);
      continue;
    }
    t->deadline_ = INT64_MAX;
    t->on_timer();
  }
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  ssize_t n = ::write(wakefd_, &one, sizeof one);
  (void)n;  // a full eventfd counter still wakes the loop
}

void EventLoop::drain_posted() {
  uint64_t v;
  while (::read(wakefd_, &v, sizeof v) > 0) {
  }
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    fns.swap(posted_);
  }
  for (auto& f : fns) f();
}

void EventLoop::run() {
  running_ = true;
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  while (running_) {
    int timeout = -1;
    if (!heap_.empty()) {
      int64_t d = heap_.top().when - now_ms_;
      timeout = d <= 0 ? 0 : static_cast<int>(std::min<int64_t>(d, INT_MAX));
    }
    int n = epoll_wait(epfd_, events, kMaxEvents, timeout);
    if (n < 0 && errno != EINTR) log::fatal("epoll_wait failed");
    update_clock();
    for (int i = 0; i < n; ++i) {
      auto* h = static_cast<IoHandler*>(events[i].data.ptr);
      if (h == nullptr) {
        drain_posted();
      } else {
        h->on_io(events[i].events);
      }
    }
    fire_timers();
    if (end_of_turn_) end_of_turn_();
  }
}

}  // namespace mxedge::worker
