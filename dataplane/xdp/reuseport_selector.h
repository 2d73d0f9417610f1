// The owner of one instance of the SK_REUSEPORT program (bpf/sk_reuseport.bpf.c) for one listener's
// SO_REUSEPORT group: it fills the group's sockarray with the workers' listening sockets (by worker
// index) and the cpu->worker map, and attaches the program to the group with SO_ATTACH_REUSEPORT_EBPF.
// A data plane with several listeners (25, 465, 587; IPv4 and IPv6) owns one selector per listener,
// because a sockarray can only select within its own group.
//
//   ReuseportSelector selector;
//   if (auto s = selector.attach(fds_by_worker, worker_cpus); !s.ok()) ...
//
// Lifetime: the kernel keeps the program attached for as long as the group exists; destroying the
// selector only drops this process's references (it cannot safely detach: the sockets are not its
// own, and their fds may already be closed and reused). Call detach() while a socket of the group is
// still open to go back to the kernel's hash selection.
//
// SECURITY: needs CAP_BPF (or CAP_SYS_ADMIN) to load; the sockets must be bound and listening.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "bpf/mxedge_abi.h"
#include "dataplane/xdp/status.h"

struct mxedge_sk_reuseport;  // the bpftool-generated skeleton

namespace mxedge::xdp {

class ReuseportSelector {
 public:
  ReuseportSelector();
  ~ReuseportSelector();
  ReuseportSelector(const ReuseportSelector&) = delete;
  ReuseportSelector& operator=(const ReuseportSelector&) = delete;

  // listen_fds[i] is worker i's listening socket of the group; worker_cpus[i] the CPU worker i is
  // pinned to. Both spans have one entry per worker.
  Status attach(std::span<const int> listen_fds, std::span<const unsigned> worker_cpus);
  // Replaces worker's socket (a worker restarted and listens again).
  Status set_socket(unsigned worker, int listen_fd);
  // SO_DETACH_REUSEPORT_BPF through listen_fd, a socket of the group that is still open.
  Status detach(int listen_fd);

  // Selections per outcome (enum mxedge_reuseport_counter_index), summed over CPUs.
  Status read_counters(std::array<uint64_t, MXEDGE_RP_COUNT>* out) const;
  int prog_fd() const;

 private:
  mxedge_sk_reuseport* skel_ = nullptr;
};

}  // namespace mxedge::xdp
