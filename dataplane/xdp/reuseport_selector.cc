// SK_REUSEPORT program owner; see reuseport_selector.h.
#include "dataplane/xdp/reuseport_selector.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/socket.h>

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "dataplane/xdp/libbpf_support.h"
#include "mxedge_sk_reuseport.skel.h"
#include "policy/log.h"

#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68  // Linux 5.8; older libc headers lack it
#endif

namespace mxedge::xdp {

ReuseportSelector::ReuseportSelector() = default;

ReuseportSelector::~ReuseportSelector() { mxedge_sk_reuseport__destroy(skel_); }

int ReuseportSelector::prog_fd() const { return skel_ ? bpf_program__fd(skel_->progs.mxedge_select_worker) : -1; }

Status ReuseportSelector::attach(std::span<const int> listen_fds, std::span<const unsigned> worker_cpus) {
  if (skel_) return Status::error(EALREADY, "reuseport: already attached");
  if (listen_fds.empty() || listen_fds.size() != worker_cpus.size()) {
    return Status::error(EINVAL, "reuseport: need one socket and one CPU per worker");
  }
  if (listen_fds.size() > MXEDGE_MAX_WORKERS) return Status::error(E2BIG, "reuseport: more than 64 workers");
  std::set<unsigned> cpus;
  for (unsigned cpu : worker_cpus) {
    if (cpu >= MXEDGE_MAX_CPUS || !cpus.insert(cpu).second) {
      return Status::error(EINVAL, "reuseport: CPU " + std::to_string(cpu) + " out of range or twice");
    }
  }

  route_libbpf_logs();
  skel_ = mxedge_sk_reuseport__open_and_load();
  if (!skel_) return Status::error(errno, "open and load sk_reuseport");

  for (uint32_t worker = 0; worker < listen_fds.size(); ++worker) {
    if (auto s = set_socket(worker, listen_fds[worker]); !s.ok()) return s;
    uint32_t cpu = worker_cpus[worker];
    mxedge_cpu_worker value{worker, MXEDGE_CPU_HAS_WORKER};
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.cpu_workers), &cpu, &value, BPF_ANY) != 0) {
      return Status::error(errno, "reuseport: map CPU " + std::to_string(cpu));
    }
  }
  int fd = prog_fd();
  if (setsockopt(listen_fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &fd, sizeof fd) != 0) {
    return Status::error(errno, "setsockopt(SO_ATTACH_REUSEPORT_EBPF)");
  }
  log::info("reuseport.attached").kv("workers", static_cast<uint64_t>(listen_fds.size()));
  return Status();
}

Status ReuseportSelector::set_socket(unsigned worker, int listen_fd) {
  if (!skel_) return Status::error(EINVAL, "reuseport: not loaded");
  uint32_t key = worker;
  uint64_t value = static_cast<uint64_t>(listen_fd);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.worker_socks), &key, &value, BPF_ANY) != 0) {
    // EINVAL: not bound/listening or not SO_REUSEPORT; EBUSY: the socket is in another sockarray.
    return Status::error(errno, "reuseport: add worker " + std::to_string(worker) + "'s socket");
  }
  return Status();
}

Status ReuseportSelector::detach(int listen_fd) {
  int unused = 0;
  if (setsockopt(listen_fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused, sizeof unused) != 0) {
    return Status::error(errno, "setsockopt(SO_DETACH_REUSEPORT_BPF)");
  }
  return Status();
}

Status ReuseportSelector::read_counters(std::array<uint64_t, MXEDGE_RP_COUNT>* out) const {
  if (!skel_) return Status::error(EINVAL, "reuseport: not loaded");
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return Status::error(ncpu, "libbpf_num_possible_cpus");
  std::vector<uint64_t> values(static_cast<size_t>(ncpu));
  out->fill(0);
  for (uint32_t i = 0; i < MXEDGE_RP_COUNT; ++i) {
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.rp_counters), &i, values.data()) != 0) {
      return Status::error(errno, "reuseport: read counters");
    }
    for (uint64_t v : values) (*out)[i] += v;
  }
  return Status();
}

}  // namespace mxedge::xdp
