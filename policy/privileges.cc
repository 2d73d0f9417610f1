#include "policy/privileges.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
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

}  // namespace

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
