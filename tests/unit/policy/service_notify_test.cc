// ServiceNotifier against a real Unix datagram socket, as systemd's manager listens on one.
#include "policy/service_notify.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace mxedge::service {
namespace {

class Receiver {
 public:
  explicit Receiver(bool abstract) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string name = "mxedge-notify-test-" + std::to_string(::getpid()) + (abstract ? "-abs" : "");
    socklen_t len;
    if (abstract) {
      name_ = "@" + name;
      std::memcpy(a.sun_path + 1, name.data(), name.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    } else {
      name_ = testing::TempDir() + name;
      ::unlink(name_.c_str());
      std::memcpy(a.sun_path, name_.data(), name_.size());
      len = static_cast<socklen_t>(sizeof(a));
    }
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), len), 0) << std::strerror(errno);
    timeval tv{2, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Receiver() {
    ::close(fd_);
    if (name_[0] == '/') ::unlink(name_.c_str());
  }
  const std::string& name() const { return name_; }
  std::string next() {
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    return n < 0 ? std::string("<nothing>") : std::string(buf, static_cast<size_t>(n));
  }

 private:
  int fd_ = -1;
  std::string name_;
};

TEST(ServiceNotifier, SendsEachStateAsOneDatagramToAPathSocket) {
  Receiver r(false);
  ServiceNotifier n(r.name(), 30'000'000);
  ASSERT_TRUE(n.enabled());
  EXPECT_TRUE(n.ready("2 workers\nlistening"));
  EXPECT_EQ(r.next(), "READY=1\nSTATUS=2 workers listening");
  EXPECT_TRUE(n.watchdog());
  EXPECT_EQ(r.next(), "WATCHDOG=1");
  EXPECT_TRUE(n.reloading());
  EXPECT_EQ(r.next(), "RELOADING=1");
  EXPECT_TRUE(n.stopping());
  EXPECT_EQ(r.next(), "STOPPING=1");
}

TEST(ServiceNotifier, ReachesAnAbstractSocket) {
  Receiver r(true);
  ServiceNotifier n(r.name(), 0);
  EXPECT_TRUE(n.status("draining"));
  EXPECT_EQ(r.next(), "STATUS=draining");
}

TEST(ServiceNotifier, WithoutAWatchdogIntervalSendsNoWatchdogPing) {
  Receiver r(false);
  ServiceNotifier n(r.name(), 0);
  EXPECT_TRUE(n.watchdog());
  EXPECT_TRUE(n.status("after"));
  EXPECT_EQ(r.next(), "STATUS=after");  // the first datagram is the status: no WATCHDOG=1 was sent
}

TEST(ServiceNotifier, AnAbsentManagerIsAnError) {
  ServiceNotifier n(testing::TempDir() + "no-such-notify-socket", 0);
  std::string error;
  EXPECT_FALSE(n.notify("READY=1", &error));
  EXPECT_NE(error.find("no-such-notify-socket"), std::string::npos) << error;
  ServiceNotifier relative("relative/path", 0);
  EXPECT_FALSE(relative.notify("READY=1", &error));
  EXPECT_NE(error.find("not a usable socket address"), std::string::npos) << error;
}

TEST(ServiceNotifier, FromEnvironmentReadsAndClearsTheVariables) {
  Receiver r(false);
  ::setenv("NOTIFY_SOCKET", r.name().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "20000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  ServiceNotifier n = ServiceNotifier::from_environment();
  EXPECT_EQ(n.watchdog_usec(), 20'000'000);
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);  // children never inherit it
  EXPECT_EQ(std::getenv("WATCHDOG_USEC"), nullptr);
  EXPECT_TRUE(n.ready("up"));
  EXPECT_EQ(r.next(), "READY=1\nSTATUS=up");

  // A watchdog meant for another process is not ours to answer.
  ::setenv("NOTIFY_SOCKET", r.name().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "20000000", 1);
  ::setenv("WATCHDOG_PID", "1", 1);
  EXPECT_EQ(ServiceNotifier::from_environment().watchdog_usec(), 0);
  ::setenv("WATCHDOG_USEC", "garbage", 1);
  EXPECT_EQ(ServiceNotifier::from_environment().watchdog_usec(), 0);
}

TEST(ServiceNotifier, OutsideAServiceManagerEverythingIsANoOp) {
  ::unsetenv("NOTIFY_SOCKET");
  ServiceNotifier n = ServiceNotifier::from_environment();
  EXPECT_FALSE(n.enabled());
  EXPECT_TRUE(n.ready("x"));
  EXPECT_TRUE(n.watchdog());
}

TEST(ServiceNotifier, PingsAtHalfTheWatchdogIntervalAndNeverMoreOftenThanEvery10Ms) {
  EXPECT_EQ(ServiceNotifier("/run/x", 30'000'000).watchdog_ping_ms(), 15'000);  // WatchdogSec=30s
  EXPECT_EQ(ServiceNotifier("/run/x", 5'000).watchdog_ping_ms(), 10);
  EXPECT_EQ(ServiceNotifier("/run/x", 0).watchdog_ping_ms(), 0);
}

}  // namespace
}  // namespace mxedge::service
