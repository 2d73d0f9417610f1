// Capabilities a daemon keeps after start-up. Each daemon needs its privileges to bind ports below
// 1024, load and attach BPF programs and pin maps; once that is done it keeps only what its running
// work still needs (the data plane with an XDP fast path: CAP_BPF for the map reads and writes behind
// its counters and lists, CAP_NET_ADMIN to detach the program at shutdown; otherwise nothing).
//
// drop_capabilities_except() clears the ambient set and reduces the permitted and effective sets of
// the calling thread to `keep`; threads started afterwards inherit that. Call it before any other
// thread exists. It does not touch the bounding set (systemd's CapabilityBoundingSet= and
// NoNewPrivileges= already bound it). Works the same for root (uid 0 without capabilities can still
// open its own files) and for a service user.
#pragma once

#include <string>
#include <vector>

namespace mxedge::privileges {

// The worker sandbox: a seccomp filter on the calling thread only (the threads that parse what the
// Internet sends: SMTP, TLS, message bodies). Inside the unit's process-wide filter it refuses, with
// EPERM, what a worker never does and an attacker who took one over would want: starting programs
// (execve, execveat, fork, vfork, clone without CLONE_THREAD), reading or writing other processes
// (ptrace, process_vm_*, pidfd_getfd, kcmp), the BPF syscall, mounts and namespaces, modules, kexec,
// reboot, swap, keyrings, perf, userfaultfd, io_uring, handle-based opens, the clock and the host
// name. clone3 fails with ENOSYS, so the C library falls back to clone, whose flags a filter can
// read. A system call of another ABI (i386's int 0x80, x32) fails with EPERM too: the numbers above
// would not match there. It sets no_new_privs on the thread (required without CAP_SYS_ADMIN).
// Not touched: the setuid family (glibc broadcasts those to every thread; without CAP_SETUID they
// change nothing anyway) and everything the workers use. The filter is a deny list on purpose: a
// system call a library starts using one day must not take the gateway down.
//
// Call it on the thread itself, before it touches the network; threads it creates inherit it.
//
// Sanitizer builds (ASan, LSan) leave two doors open: clone without CLONE_THREAD and ptrace.
// LeakSanitizer checks at exit from a tracer process it clones off the exiting thread, which ptraces
// the others, and the control plane exits from a sandboxed thread. Release builds close both.
bool restrict_thread_syscalls(std::string* error);

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSandboxLetsLeakCheckerRun = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
inline constexpr bool kSandboxLetsLeakCheckerRun = true;
#else
inline constexpr bool kSandboxLetsLeakCheckerRun = false;
#endif
#else
inline constexpr bool kSandboxLetsLeakCheckerRun = false;
#endif

// `keep`: capability numbers (CAP_BPF, ...) to keep if the process has them. False with *error set
// when the kernel refuses (the daemon then stops: it would run with more than it should).
bool drop_capabilities_except(const std::vector<int>& keep, std::string* error);

// The effective set of the calling thread as names ("cap_bpf,cap_net_admin"), "none" when empty.
std::string effective_capabilities();

}  // namespace mxedge::privileges
