// The XDP backend of the fast path (fast_path.h): the owner of the XDP program
// (bpf/xdp_smtp.bpf.c) and its maps (open, load, attach, detach), and the storage under the
// data-plane API. The API itself (blocklist/allowlist with their derived flags, rate limit, SMTP
// ports, local addresses, worker set, steering switch) is FastPath's, shared with the DPDK fast path
// (dataplane/dpdk/); this class implements its hooks with bpf map calls (the config array, the
// source and local-address LPM tries, the cpumap) and reads the per-CPU counters.
//
//   XdpProgram xdp;
//   XdpProgramOptions opts{.pin_dir = config.pin_dir, .flow_hash_seed = config.flow_hash_seed};
//   if (auto s = xdp.open(opts); !s.ok()) ...      // then load(), apply(config), attach(ifname)
//
// Or start(config), which does all four. The destructor detaches from every interface it attached
// to; the pinned maps stay, so the next start finds its blocklists, buckets and counters again.
//
// Source lists: the allowlist and blocklist of a family live in one LPM trie whose entries carry
// derived flags (bpf/mxedge_abi.h); FastPath keeps a copy of the lists (read back from the trie on
// load) to maintain them, so map updates go through the API, never around it.
//
// Pinning: every map except the program's internal .rodata/.bss is pinned as <pin_dir>/<map name>.
// On load, a pinned map with the same layout is reused (with the config and source lists in it); one
// whose layout changed (an upgrade changed bpf/mxedge_abi.h) is replaced, and that is logged
// (xdp.pin_replaced).
//
// Attaching: native (driver) mode first, generic mode as a logged fallback, through a BPF link
// (BPF_LINK_CREATE; not libxdp) pinned as <pin_dir>/link_xdp_<ifname>. The pin keeps the program
// attached across a crash; the next start replaces the program inside the pinned link
// (bpf_link_update: no moment without XDP), and a clean stop unpins and detaches it. A program
// attached the old way (netlink) is replaced only if it is an mxedge program (left by an older
// version); anyone else's is left alone and attach fails with EBUSY, as it does while another
// running data plane holds the interface's link.
//
// Threads: one owner thread. Map updates are bpf() calls on maps the program reads concurrently. The
// config entry is rewritten whole but not atomically for readers: a packet may see a mix of the old
// and the new entry for a moment, and every mix is safe (at worst a packet is passed instead of
// steered, or steered to a worker of the other set).
//
// SECURITY: loading needs CAP_BPF and CAP_PERFMON (the program compares packet pointers), pinning
// write access to the bpf filesystem, attaching CAP_NET_ADMIN. Detaching is closing the link (and
// unlinking its pin), which needs no capability. Map updates need the map fds this object holds and
// CAP_BPF (Debian sets kernel.unprivileged_bpf_disabled, and the 6.1 kernel then refuses every bpf(2)
// command without it), so a data plane that drops privileges after set-up keeps CAP_BPF alone.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/mxedge_abi.h"
#include "dataplane/xdp/fast_path.h"
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

class XdpProgram : public FastPath {
 public:
  XdpProgram();
  ~XdpProgram() override;

  const char* kind() const override { return "xdp"; }

  Status open(const XdpProgramOptions& options = {});
  Status load();  // needs open(); reuses or creates pinned maps
  Status attach(std::string_view ifname, AttachMode mode = AttachMode::kNativeOrGeneric);
  Status detach(std::string_view ifname);
  Status detach_all();  // also run by the destructor

  // validate, open, load, apply, attach to every interface (stops at the first error).
  Status start(const XdpConfig& config);

  // The data-plane API (apply, add_prefix, set_workers, ...) is FastPath's; each call needs load().
  Status read_counters(XdpCounters* out) const override;
  Status reset_counters() override;
  std::vector<Attachment> attachments() const override;

  int prog_fd() const;
  // A map by its name in bpf/maps.h, for tests, benchmarks and diagnostics; -1 when unknown.
  int map_fd(std::string_view name) const;
  bool loaded() const { return loaded_; }
  void set_test_clock(uint64_t ns);  // only with XdpProgramOptions::test_clock

 protected:
  Status require_loaded(const char* what) const override;
  Status write_config(const mxedge_config& config) override;
  Status write_source(const IpPrefix& p, uint32_t flags) override;
  Status delete_source(const IpPrefix& p) override;
  Status write_local(const IpPrefix& p) override;
  Status delete_local(const IpPrefix& p) override;
  Status list_local(std::vector<IpPrefix>* out) const override;
  Status prepare_workers(std::span<const unsigned> cpus, uint32_t qsize) override;
  Status retire_workers(std::span<const unsigned> cpus) override;

 private:
  Status prepare_pins();
  std::string link_pin_path(const std::string& ifname) const;  // "" without pinning
  Status adopt_pinned_link(const std::string& ifname, unsigned ifindex, AttachMode mode, bool* adopted);
  int local_fd(bool ipv4) const;
  int source_fd(bool ipv4) const;
  Status read_sources();

  mxedge_xdp_smtp* skel_ = nullptr;
  XdpProgramOptions options_;
  bool loaded_ = false;
  struct Link {
    Attachment attachment;
    int fd;  // the BPF link holding the program on attachment.ifname
  };
  std::vector<Link> links_;
};

}  // namespace mxedge::xdp
