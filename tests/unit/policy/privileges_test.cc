// The worker sandbox and the capability drop, on real threads of this process: each case restricts
// or drops on a thread of its own (both are per thread), so the test's main thread and the cases
// after it keep what they had.
#include "policy/privileges.h"

#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

extern char** environ;

namespace mxedge::privileges {
namespace {

// Runs fn on a new thread and waits for it.
void on_thread(const std::function<void()>& fn) {
  std::thread t(fn);
  t.join();
}

// A field of /proc/thread-self/status ("Seccomp", "NoNewPrivs", ...).
std::string status_field(const std::string& field) {
  std::ifstream in("/proc/thread-self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      std::string v = line.substr(field.size() + 1);
      return v.substr(v.find_first_not_of(" \t"));
    }
  }
  return "";
}

// errno of a call that must fail, 0 when it succeeded.
int failure(long rc) { return rc == -1 ? errno : 0; }

TEST(RestrictThreadSyscalls, ARestrictedThreadCannotStartProgramsOrTouchOtherProcesses) {
  on_thread([] {
    std::string error;
    ASSERT_TRUE(restrict_thread_syscalls(&error)) << error;
    EXPECT_EQ(status_field("Seccomp"), "2");
    EXPECT_EQ(status_field("NoNewPrivs"), "1");

    char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
    EXPECT_EQ(failure(::execve("/bin/true", argv, environ)), EPERM);
    if (!kSandboxLetsLeakCheckerRun) {  // a sanitizer build leaves clone and ptrace to LeakSanitizer
      errno = 0;
      pid_t child = ::fork();
      if (child == 0) ::_exit(0);  // only if the filter failed
      EXPECT_EQ(child, -1);
      EXPECT_EQ(errno, EPERM);
      pid_t spawned = 0;
      EXPECT_NE(::posix_spawn(&spawned, "/bin/true", nullptr, nullptr, argv, environ), 0);
      EXPECT_EQ(failure(::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr)), EPERM);
    }
    bpf_attr attr{};
    EXPECT_EQ(failure(::syscall(SYS_bpf, BPF_MAP_GET_NEXT_ID, &attr, sizeof attr)), EPERM);
    EXPECT_EQ(failure(::unshare(0)), EPERM);
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);  // reading the clock is allowed, setting it is not
    EXPECT_EQ(failure(::clock_settime(CLOCK_REALTIME, &now)), EPERM);
    // An x32 call (bit 30 of the number) would get past a list of x86-64 numbers: refused whole.
    EXPECT_EQ(failure(::syscall(0x40000000L | SYS_getpid)), EPERM);

    // What a worker does every day still works.
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    EXPECT_EQ(::write(fds[1], "x", 1), 1);
    char c = 0;
    EXPECT_EQ(::read(fds[0], &c, 1), 1);
    ::close(fds[0]);
    ::close(fds[1]);
    EXPECT_EQ(::syscall(SYS_getpid), ::getpid());
  });
}

TEST(RestrictThreadSyscalls, ARestrictedThreadStartsThreadsThatInheritTheFilter) {
  on_thread([] {
    std::string error;
    ASSERT_TRUE(restrict_thread_syscalls(&error)) << error;
    std::string inner_seccomp;
    int inner_exec_errno = 0;
    std::thread inner([&] {  // clone3 is refused with ENOSYS, so the C library falls back to clone
      inner_seccomp = status_field("Seccomp");
      char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
      inner_exec_errno = failure(::execve("/bin/true", argv, environ));
    });
    inner.join();
    EXPECT_EQ(inner_seccomp, "2");
    EXPECT_EQ(inner_exec_errno, EPERM);
  });
}

TEST(RestrictThreadSyscalls, OtherThreadsAreNotRestricted) {
  const std::string before = status_field("Seccomp");
  on_thread([] {
    std::string error;
    ASSERT_TRUE(restrict_thread_syscalls(&error)) << error;
  });
  EXPECT_EQ(status_field("Seccomp"), before);
  pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) ::_exit(7);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 7);
}

TEST(DropCapabilities, KeepsOnlyWhatItIsAskedToKeepOnItsOwnThread) {
  const std::string main_before = effective_capabilities();
  if (main_before.find("cap_net_bind_service") == std::string::npos || main_before.find("cap_bpf") == std::string::npos) {
    GTEST_SKIP() << "needs CAP_NET_BIND_SERVICE and CAP_BPF (run as root); has " << main_before;
  }
  on_thread([] {
    std::string error;
    ASSERT_TRUE(drop_capabilities_except({CAP_NET_BIND_SERVICE, CAP_BPF}, &error)) << error;
    EXPECT_EQ(effective_capabilities(), "cap_net_bind_service,cap_bpf");
    ASSERT_TRUE(drop_capabilities_except({}, &error)) << error;
    EXPECT_EQ(effective_capabilities(), "none");
    // Once permitted is empty nothing comes back: asking to keep a dropped capability keeps nothing.
    ASSERT_TRUE(drop_capabilities_except({CAP_BPF}, &error)) << error;
    EXPECT_EQ(effective_capabilities(), "none");
    EXPECT_EQ(status_field("CapPrm"), "0000000000000000");
  });
  EXPECT_EQ(effective_capabilities(), main_before);
}

}  // namespace
}  // namespace mxedge::privileges
