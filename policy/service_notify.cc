#include "policy/service_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace mxedge::service {

namespace {

int64_t parse_positive(const char* s) {
  if (s == nullptr || *s == 0) return 0;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || *end != 0 || v <= 0) return 0;
  return v;
}

}  // namespace

ServiceNotifier ServiceNotifier::from_environment() {
  std::string socket;
  if (const char* s = std::getenv("NOTIFY_SOCKET"); s != nullptr) socket = s;
  int64_t usec = parse_positive(std::getenv("WATCHDOG_USEC"));
  // WATCHDOG_PID names the process the watchdog is meant for; another process (a child that kept
  // the environment) must not answer for it.
  if (const char* p = std::getenv("WATCHDOG_PID"); p != nullptr && parse_positive(p) != ::getpid()) usec = 0;
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  return ServiceNotifier(std::move(socket), usec);
}

ServiceNotifier::ServiceNotifier(std::string socket_path, int64_t watchdog_usec)
    : socket_(std::move(socket_path)), watchdog_usec_(watchdog_usec > 0 ? watchdog_usec : 0) {}

bool ServiceNotifier::notify(std::string_view state, std::string* error) const {
  if (socket_.empty()) return true;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_.size() >= sizeof(addr.sun_path) || (socket_[0] != '/' && socket_[0] != '@')) {
    if (error) *error = "NOTIFY_SOCKET is not a usable socket address: " + socket_;
    return false;
  }
  std::memcpy(addr.sun_path, socket_.data(), socket_.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size());
  if (socket_[0] == '@') addr.sun_path[0] = 0;  // abstract namespace: no terminating NUL counted
  else len += 1;
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (error) *error = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  ssize_t n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len);
  int saved = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(state.size())) {
    if (error) *error = "sendto " + socket_ + ": " + std::strerror(n < 0 ? saved : EMSGSIZE);
    return false;
  }
  return true;
}

std::string one_line(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

bool ServiceNotifier::ready(std::string_view status, std::string* error) const {
  return notify("READY=1\nSTATUS=" + one_line(status), error);
}
bool ServiceNotifier::status(std::string_view status, std::string* error) const { return notify("STATUS=" + one_line(status), error); }
bool ServiceNotifier::reloading(std::string* error) const { return notify("RELOADING=1", error); }
bool ServiceNotifier::stopping(std::string* error) const { return notify("STOPPING=1", error); }
bool ServiceNotifier::watchdog(std::string* error) const { return watchdog_usec_ > 0 ? notify("WATCHDOG=1", error) : true; }

}  // namespace mxedge::service
