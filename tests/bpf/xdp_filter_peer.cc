// Loading xdp-filter's objects for the benchmarks; see xdp_filter_peer.h.
#include "tests/bpf/xdp_filter_peer.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include "tests/bpf/bpf_test_env.h"

namespace mxedge::bpftest {
namespace {

constexpr uint64_t kXdpFilterSrc = 1;  // MAP_FLAG_SRC in xdp-tools' xdp-filter/common_kern_user.h

}  // namespace

std::string xdpfilt_path(const char* object) {
  for (const char* dir : {MXEDGE_XDPFILT_DIR, "/usr/lib/x86_64-linux-gnu/bpf", "/usr/lib/bpf", "/usr/lib64/bpf"}) {
    std::string path = std::string(dir) + "/" + object;
    if (access(path.c_str(), R_OK) == 0) return path;
  }
  return "";
}

bool load_xdp_filter(XdpFilter* f, const std::string& path, const std::vector<std::string>& sources) {
  f->path = path;
  if (path.empty()) return false;
  f->obj = bpf_object__open_file(path.c_str(), nullptr);
  if (!f->obj) return false;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, f->obj) bpf_map__set_pin_path(map, nullptr);
  if (bpf_object__load(f->obj) != 0) return false;
  bpf_program* prog = bpf_object__next_program(f->obj, nullptr);
  if (!prog) return false;
  f->prog_fd = bpf_program__fd(prog);
  f->stats_fd = bpf_object__find_map_fd_by_name(f->obj, "xdp_stats_map");
  std::vector<uint64_t> flags(possible_cpus(), kXdpFilterSrc);
  for (const auto& s : sources) {
    uint8_t addr[16];
    bool v6 = s.find(':') != std::string::npos;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, s.c_str(), addr) != 1) return false;
    int fd = bpf_object__find_map_fd_by_name(f->obj, v6 ? "filter_ipv6" : "filter_ipv4");
    if (fd < 0 || bpf_map_update_elem(fd, addr, flags.data(), BPF_ANY) != 0) return false;
  }
  return true;
}

uint64_t xdp_filter_drops(const XdpFilter& f) {
  std::vector<uint64_t> rec(2 * possible_cpus(), 0);
  uint32_t key = XDP_DROP;
  if (f.stats_fd < 0 || bpf_map_lookup_elem(f.stats_fd, &key, rec.data()) != 0) return 0;
  uint64_t n = 0;
  for (size_t cpu = 0; cpu < possible_cpus(); ++cpu) n += rec[2 * cpu];
  return n;
}

}  // namespace mxedge::bpftest
