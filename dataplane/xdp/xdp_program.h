// The owner of the XDP program (bpf/xdp_smtp.bpf.c) and its maps: open, load, attach, detach, and the
// data-plane API that updates the maps (blocklist/allowlist, rate limit, SMTP ports, local addresses,
// worker set and cpumap, steering switch) and reads the counters.
//
//   XdpProgram xdp;
//   XdpProgramOptions opts{.pin_dir = config.pin_dir, .flow_hash_seed = config.flow_hash_seed};
//   if (auto s = xdp.open(opts); !s.ok()) ...      // then load(), apply(config), attach(ifname)
//
// Or start(config), which does all four. The destructor detaches from every interface it attached
// to; the pinned maps stay, so the next start finds its blocklists, buckets and counters again.
//
// Source lists: the allowlist and blocklist of a family live in one LPM trie whose entries carry
// derived flags (bpf/mxedge_abi.h); this object keeps a copy of the lists (read back on load) to
// maintain them, so map updates go through it, never around it.
//
// Pinning: every map except the program's internal .rodata/.bss is pinned as <pin_dir>/<map name>.
// On load, a pinned map with the same layout is reused; one whose layout changed (an upgrade changed
// bpf/mxedge_abi.h) is replaced, and that is logged (xdp.pin_replaced).
//
// Attaching: native (driver) mode first, generic mode as a logged fallback, through bpf_xdp_attach
// (not libxdp). A program already attached to the interface is replaced only if it is an mxedge
// program (left by a previous run); anyone else's is left alone and attach fails with EBUSY.
//
// Threads: one owner thread. Map updates are bpf() calls on maps the program reads concurrently. The
// config entry is rewritten whole but not atomically for readers: a packet may see a mix of the old
// and the new entry for a moment, and every mix is safe (at worst a packet is passed instead of
// steered, or steered to a worker of the other set).
//
// SECURITY: loading needs CAP_BPF and CAP_PERFMON (the program compares packet pointers), pinning
// write access to the bpf filesystem, attaching and detaching CAP_NET_ADMIN. Map updates need the map
// fds this object holds and CAP_BPF (Debian sets kernel.unprivileged_bpf_disabled), so a data plane
// that drops privileges after set-up keeps CAP_BPF and CAP_NET_ADMIN for this API.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/mxedge_abi.h"
#include "dataplane/xdp/ip_prefix.h"
#include "dataplane/xdp/status.h"
#include "dataplane/xdp/xdp_config.h"

struct mxedge_xdp_smtp;  // the bpftool-generated skeleton

namespace mxedge::xdp {

struct XdpProgramOptions {
  std::string pin_dir = kDefaultPinDir;  // empty: no pinning
  uint32_t flow_hash_seed = 0x6d786467;
  bool test_clock = false;  // tests only: the rate limit reads set_test_clock() instead of the clock
};

enum class PrefixList { kAllow, kBlock, kLocal };

struct CounterValue {
  uint64_t packets = 0;
  uint64_t bytes = 0;
};
using CounterSet = std::array<CounterValue, MXEDGE_CTR_COUNT>;  // indexed by mxedge_counter_index

struct XdpCounters {
  CounterSet total{};               // summed over CPUs
  std::vector<CounterSet> per_cpu;  // indexed by (possible) CPU id

  uint64_t packets(unsigned index) const { return total[index].packets; }
  uint64_t steered(unsigned worker) const { return total[MXEDGE_CTR_STEERED_WORKER0 + worker].packets; }
  uint64_t steered_total() const;
  uint64_t all_packets() const;  // sum of the exclusive counters: every packet the program saw
};

// "pass_not_smtp", "pass_fragment", "malformed", "pass_smtp", "pass_no_worker", "drop_blocklist",
// "drop_rate_limit", "allowlisted", "steered_worker_<i>".
std::string counter_name(unsigned index);

struct Attachment {
  std::string ifname;
  unsigned ifindex = 0;
  bool native = false;  // false: generic (SKB) mode
};

class XdpProgram {
 public:
  XdpProgram();
  ~XdpProgram();
  XdpProgram(const XdpProgram&) = delete;
  XdpProgram& operator=(const XdpProgram&) = delete;

  Status open(const XdpProgramOptions& options = {});
  Status load();  // needs open(); reuses or creates pinned maps
  Status attach(std::string_view ifname, AttachMode mode = AttachMode::kNativeOrGeneric);
  Status detach(std::string_view ifname);
  Status detach_all();  // also run by the destructor

  // validate, open, load, apply, attach to every interface (stops at the first error).
  Status start(const XdpConfig& config);
  // Writes the config's settings into the maps: ports, local addresses (replaced), allow/block
  // entries (added), rate limit, worker set and cpumap, steering. Needs load().
  Status apply(const XdpConfig& config);

  // Data-plane API. Each needs load(); each is safe while the program runs. Adding a prefix that is
  // already listed is not an error; removing one that is not listed is (ENOENT).
  Status add_prefix(PrefixList list, std::string_view prefix);
  Status remove_prefix(PrefixList list, std::string_view prefix);
  Status list_prefixes(PrefixList list, std::vector<IpPrefix>* out) const;
  Status set_rate_limit(uint32_t syn_per_second, uint32_t burst);  // 0 per second: no limit
  Status set_smtp_ports(std::span<const uint16_t> ports);
  Status set_local_addresses(std::span<const std::string> prefixes);  // replaces; empty = any
  // Worker i runs on worker_cpus[i]; every worker CPU gets a cpumap entry with qsize frames, and
  // CPUs no longer listed lose theirs.
  Status set_workers(std::span<const unsigned> worker_cpus, uint32_t qsize);
  Status set_steering(bool on);
  Status read_counters(XdpCounters* out) const;
  Status reset_counters();

  const mxedge_config& config() const { return config_; }  // as last written
  const std::vector<Attachment>& attachments() const { return attachments_; }
  int prog_fd() const;
  // A map by its name in bpf/maps.h, for tests, benchmarks and diagnostics; -1 when unknown.
  int map_fd(std::string_view name) const;
  bool loaded() const { return loaded_; }
  void set_test_clock(uint64_t ns);  // only with XdpProgramOptions::test_clock

 private:
  struct SourceEntry {
    uint32_t lists = 0;    // MXEDGE_PREFIX_IN_ALLOW / IN_BLOCK
    uint32_t written = 0;  // the flags in the map
  };

  Status prepare_pins();
  Status write_config();
  Status require_loaded(const char* what) const;
  int local_fd(bool ipv4) const;
  int source_fd(bool ipv4) const;
  Status read_sources();
  Status change_source(PrefixList list, std::string_view text, bool add);
  Status refresh_sources_under(const IpPrefix& prefix);
  Status list_local(std::vector<IpPrefix>* out) const;
  Status refresh_local_mode();

  mxedge_xdp_smtp* skel_ = nullptr;
  XdpProgramOptions options_;
  bool loaded_ = false;
  mxedge_config config_{};
  std::map<IpPrefix, SourceEntry> sources_;
  std::vector<Attachment> attachments_;
};

}  // namespace mxedge::xdp
