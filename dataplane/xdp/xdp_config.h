// Settings of the XDP fast path (issue #3), in the data plane's terms. The YAML config maps onto this
// struct; validate() checks it before anything touches the kernel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/xdp/status.h"

namespace mxedge::xdp {

inline constexpr const char* kDefaultPinDir = "/sys/fs/bpf/mxedge";

enum class AttachMode {
  kNativeOrGeneric,  // driver mode; generic (SKB) mode, logged, when the driver cannot
  kNative,           // driver mode or fail
  kGeneric,          // SKB mode only (testing, or drivers whose native XDP misbehaves)
};

struct XdpConfig {
  std::vector<std::string> interfaces;  // where the XDP program is attached
  AttachMode attach_mode = AttachMode::kNativeOrGeneric;
  // Maps are pinned here (a bpf filesystem) so a restart keeps lists, buckets and counters.
  // Empty: no pinning (tests).
  std::string pin_dir = kDefaultPinDir;

  std::vector<uint16_t> smtp_ports{25, 465, 587};  // at most MXEDGE_MAX_SMTP_PORTS
  // Destination prefixes that are ours; empty means any destination. Replaced on apply.
  std::vector<std::string> local_addresses;
  // Source prefixes. Entries here are added on apply; entries added later through the API stay in
  // the pinned maps until removed through the API, across restarts.
  std::vector<std::string> allowlist;
  std::vector<std::string> blocklist;

  uint32_t syn_rate = 20;   // new connections (SYNs) per second per source /32 or /64; 0 = no limit
  uint32_t syn_burst = 40;  // SYNs a source may send at once; >= 1 when syn_rate > 0
  // The new-source budget (mxedge_config.new_source_interval_ns): SYNs from sources without a
  // bucket, per second and at once, per CPU; 0 = off (the config file's default is 1000/2000).
  // Needs syn_rate > 0.
  uint32_t new_source_syn_rate = 0;
  uint32_t new_source_syn_burst = 0;

  bool steering = true;                  // off: SMTP packets get plain XDP_PASS (NIC RSS does the job)
  std::vector<unsigned> worker_cpus;     // worker index -> CPU id; at most MXEDGE_MAX_WORKERS
  uint32_t cpumap_qsize = 2048;          // per-CPU redirect queue, in frames
  uint32_t flow_hash_seed = 0x6d786467;  // load-time; changing it moves flows between workers
};

// Everything a bad config can get wrong: ports (1..65535, at most 8, no duplicates), prefixes,
// rate/burst, worker CPUs (possible CPUs below MXEDGE_MAX_CPUS, no duplicates), qsize, interfaces.
// The status context names the offending field.
Status validate(const XdpConfig& config);

}  // namespace mxedge::xdp
