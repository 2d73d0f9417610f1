#include "policy/privileges.h"

#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstddef>
#include <cstring>

namespace mxedge::privileges {

namespace {

struct Sets {
  __user_cap_header_struct header{};
  __user_cap_data_struct data[2]{};
};

bool get(Sets& s) {
  s.header.version = _LINUX_CAPABILITY_VERSION_3;
  s.header.pid = 0;
  return syscall(SYS_capget, &s.header, s.data) == 0;
}

bool has(const __user_cap_data_struct* d, int cap, bool effective) {
  const uint32_t bit = 1u << (cap % 32);
  return ((effective ? d[cap / 32].effective : d[cap / 32].permitted) & bit) != 0;
}

const char* name_of(int cap) {
  switch (cap) {
    case CAP_CHOWN: return "cap_chown";
    case CAP_DAC_OVERRIDE: return "cap_dac_override";
    case CAP_DAC_READ_SEARCH: return "cap_dac_read_search";
    case CAP_FOWNER: return "cap_fowner";
    case CAP_KILL: return "cap_kill";
    case CAP_SETGID: return "cap_setgid";
    case CAP_SETUID: return "cap_setuid";
    case CAP_SETPCAP: return "cap_setpcap";
    case CAP_NET_BIND_SERVICE: return "cap_net_bind_service";
    case CAP_NET_RAW: return "cap_net_raw";
    case CAP_NET_ADMIN: return "cap_net_admin";
    case CAP_IPC_LOCK: return "cap_ipc_lock";
    case CAP_SYS_ADMIN: return "cap_sys_admin";
    case CAP_SYS_RESOURCE: return "cap_sys_resource";
    case CAP_SYS_NICE: return "cap_sys_nice";
    case CAP_SYS_PTRACE: return "cap_sys_ptrace";
    case CAP_PERFMON: return "cap_perfmon";
    case CAP_BPF: return "cap_bpf";
    default: return nullptr;
  }
}

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
#error "restrict_thread_syscalls: add this architecture's AUDIT_ARCH"
#endif

// What a worker never does (privileges.h). clone and clone3 are handled apart.
const std::vector<long>& denied() {
  static const std::vector<long> list = {
      __NR_execve, __NR_execveat,
#ifdef __NR_fork
      __NR_fork, __NR_vfork,
#endif
      __NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev, __NR_pidfd_getfd,
      __NR_kcmp, __NR_bpf, __NR_perf_event_open, __NR_userfaultfd,
      __NR_mount, __NR_umount2, __NR_pivot_root, __NR_chroot, __NR_setns,
      __NR_unshare, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick,
      __NR_move_mount, __NR_open_tree, __NR_mount_setattr, __NR_init_module,
      __NR_finit_module, __NR_delete_module, __NR_kexec_load, __NR_kexec_file_load,
      __NR_reboot, __NR_swapon, __NR_swapoff, __NR_acct, __NR_quotactl,
      __NR_add_key, __NR_request_key, __NR_keyctl, __NR_io_uring_setup,
      __NR_io_uring_enter, __NR_io_uring_register, __NR_open_by_handle_at,
      __NR_name_to_handle_at, __NR_settimeofday, __NR_clock_settime,
      __NR_clock_adjtime, __NR_adjtimex, __NR_sethostname, __NR_setdomainname,
      __NR_personality, __NR_syslog, __NR_vhangup,
#ifdef __NR_iopl
      __NR_iopl, __NR_ioperm, __NR_uselib,
#endif
  };
  return list;
}

constexpr uint32_t errno_action(int err) { return SECCOMP_RET_ERRNO | (static_cast<uint32_t>(err) & SECCOMP_RET_DATA); }

sock_filter statement(uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; }
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return sock_filter{code, jt, jf, k}; }

std::vector<sock_filter> thread_filter() {
  constexpr uint32_t kArch = offsetof(seccomp_data, arch);
  constexpr uint32_t kNr = offsetof(seccomp_data, nr);
  constexpr uint32_t kArg0Low = offsetof(seccomp_data, args);  // little endian: the low 32 bits
  std::vector<sock_filter> f;
  // Another ABI (i386 through int 0x80): its numbers mean other calls, so nothing is allowed there.
  f.push_back(statement(BPF_LD | BPF_W | BPF_ABS, kArch));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0));
  f.push_back(statement(BPF_RET | BPF_K, errno_action(EPERM)));
  f.push_back(statement(BPF_LD | BPF_W | BPF_ABS, kNr));
#if defined(__x86_64__)
  // x32 calls share the architecture with their own numbering (bit 30 set).
  f.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
  f.push_back(statement(BPF_RET | BPF_K, errno_action(EPERM)));
#endif
  for (long nr : denied()) {
    if (kSandboxLetsLeakCheckerRun && nr == __NR_ptrace) continue;
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
    f.push_back(statement(BPF_RET | BPF_K, errno_action(EPERM)));
  }
  // clone3 passes its flags in memory a filter cannot read: ENOSYS makes the C library use clone.
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1));
  f.push_back(statement(BPF_RET | BPF_K, errno_action(ENOSYS)));
  // clone: threads yes (CLONE_THREAD), processes no (but LeakSanitizer's tracer, see privileges.h).
  if (kSandboxLetsLeakCheckerRun) {
    f.push_back(statement(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    return f;
  }
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 3));
  f.push_back(statement(BPF_LD | BPF_W | BPF_ABS, kArg0Low));
  f.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 1, 0));
  f.push_back(statement(BPF_RET | BPF_K, errno_action(EPERM)));
  f.push_back(statement(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return f;
}

}  // namespace

bool restrict_thread_syscalls(std::string* error) {
  std::vector<sock_filter> filter = thread_filter();
  sock_fprog program{static_cast<unsigned short>(filter.size()), filter.data()};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    *error = std::string("prctl(PR_SET_NO_NEW_PRIVS): ") + std::strerror(errno);
    return false;
  }
  // Flags 0: this thread only (no SECCOMP_FILTER_FLAG_TSYNC); threads it creates inherit the filter.
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0) {
    *error = std::string("seccomp(SECCOMP_SET_MODE_FILTER): ") + std::strerror(errno);
    return false;
  }
  return true;
}

bool drop_capabilities_except(const std::vector<int>& keep, std::string* error) {
  Sets s;
  if (!get(s)) {
    *error = std::string("capget: ") + std::strerror(errno);
    return false;
  }
  // Ambient capabilities would come back in any program executed later; none is.
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    *error = std::string("clearing ambient capabilities: ") + std::strerror(errno);
    return false;
  }
  __user_cap_data_struct want[2]{};
  for (int cap : keep) {
    if (cap < 0 || cap >= 64 || !has(s.data, cap, false)) continue;
    want[cap / 32].permitted |= 1u << (cap % 32);
    want[cap / 32].effective |= 1u << (cap % 32);
  }
  Sets n;
  n.header.version = _LINUX_CAPABILITY_VERSION_3;
  n.header.pid = 0;
  n.data[0] = want[0];
  n.data[1] = want[1];
  if (syscall(SYS_capset, &n.header, n.data) != 0) {
    *error = std::string("capset: ") + std::strerror(errno);
    return false;
  }
  return true;
}

std::string effective_capabilities() {
  Sets s;
  if (!get(s)) return "unknown";
  std::string out;
  for (int cap = 0; cap < 64; ++cap) {
    if (!has(s.data, cap, true)) continue;
    const char* n = name_of(cap);
    out += (out.empty() ? "" : ",") + (n != nullptr ? std::string(n) : "cap_" + std::to_string(cap));
  }
  return out.empty() ? "none" : out;
}

}  // namespace mxedge::privileges
