// The peer the XDP benchmarks compare against: an xdp-filter BPF object from Debian's xdp-tools, loaded
// without its pinning (maps private to this process), with source addresses in its address filter as
// `xdp-filter ip -m src ADDR` would put them.
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mxedge::bpftest {

struct XdpFilter {
  std::string path;
  bpf_object* obj = nullptr;
  int prog_fd = -1;
  int stats_fd = -1;  // xdp_stats_map: per-CPU {packets, bytes} per XDP action
  XdpFilter() = default;
  XdpFilter(const XdpFilter&) = delete;
  XdpFilter& operator=(const XdpFilter&) = delete;
  ~XdpFilter() { bpf_object__close(obj); }
};

// The installed object file (e.g. "xdpfilt_alw_all.o"), or "" when xdp-tools is missing.
std::string xdpfilt_path(const char* object);

// Loads the object at path and lists every source address (IPv4 or IPv6 text) with the source flag.
bool load_xdp_filter(XdpFilter* f, const std::string& path, const std::vector<std::string>& sources);

// Frames the filter dropped so far (its XDP_DROP statistics, summed over CPUs).
uint64_t xdp_filter_drops(const XdpFilter& f);

}  // namespace mxedge::bpftest
