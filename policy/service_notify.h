// The systemd service-manager notification protocol (sd_notify(3)), without libsystemd: a daemon
// started with Type=notify tells the manager when it is ready (READY=1), what it is doing (STATUS=),
// that it is reloading or stopping, and, when the unit sets WatchdogSec=, that it is still alive
// (WATCHDOG=1). Each message is one datagram on the Unix socket named by $NOTIFY_SOCKET (a path, or
// an abstract name starting with '@').
//
// ServiceNotifier::from_environment() reads $NOTIFY_SOCKET and $WATCHDOG_USEC/$WATCHDOG_PID and
// clears them, so that children never inherit them. Outside systemd (no $NOTIFY_SOCKET) every call is
// a no-op that returns true, so the daemons behave the same in a shell, in tests and under systemd.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

namespace mxedge::service {

class ServiceNotifier {
 public:
  // Reads (and unsets) NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID.
  static ServiceNotifier from_environment();
  // For tests: a notifier for the given socket and watchdog interval.
  ServiceNotifier(std::string socket_path, int64_t watchdog_usec);
  ServiceNotifier() = default;

  bool enabled() const { return !socket_.empty(); }
  // The interval the manager expects WATCHDOG=1 within, in microseconds; 0 when there is no watchdog
  // for this process. Send at half of it.
  int64_t watchdog_usec() const { return watchdog_usec_; }
  // How often to send WATCHDOG=1: half the interval (at least 10 ms); 0 without a watchdog.
  int64_t watchdog_ping_ms() const { return watchdog_usec_ > 0 ? std::max<int64_t>(watchdog_usec_ / 2000, 10) : 0; }

  // Sends `state` (newline-separated KEY=VALUE assignments) as one datagram. False with *error set
  // when the socket cannot be reached (the daemon logs it and goes on: the manager's timeouts decide).
  bool notify(std::string_view state, std::string* error = nullptr) const;
  bool ready(std::string_view status, std::string* error = nullptr) const;
  bool status(std::string_view status, std::string* error = nullptr) const;
  bool reloading(std::string* error = nullptr) const;
  bool stopping(std::string* error = nullptr) const;
  bool watchdog(std::string* error = nullptr) const;

 private:
  std::string socket_;
  int64_t watchdog_usec_ = 0;
};

// A STATUS= value: one line (newlines become spaces).
std::string one_line(std::string_view text);

}  // namespace mxedge::service
