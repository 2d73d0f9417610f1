// The data-plane API of a fast path, whatever runs it: the XDP program (XdpProgram, xdp_program.h) or
// the DPDK poll loop (DpdkFastPath, dataplane/dpdk/). Blocklist/allowlist, rate limit, SMTP ports,
// local addresses, worker set, steering switch and counters behave the same on both, because the
// logic is implemented once, here:
//
//   FastPath      the API, its validation and error texts, the derived flags of the source lists, the
//                 local-address mode (inline or LPM), the worker-set ordering, and the copy of the
//                 config entry (mxedge_config, bpf/mxedge_abi.h) and of the source lists it edits;
//   XdpProgram    the storage: the bpf maps of bpf/xdp_smtp.bpf.c (config array, LPM tries, cpumap,
//                 per-CPU counters), plus open/load/attach, which only XDP has;
//   DpdkFastPath  the storage in the DPDK process's own tables (dataplane/dpdk/).
//
// A backend implements the protected hooks (write the config entry, write or delete one table entry,
// list the local addresses, prepare and retire worker queues) and the counter and attachment calls;
// it never edits config_ or sources_ around the API, so the copies stay what the tables hold.
//
//   std::unique_ptr<FastPath> fp = ...;            // an XdpProgram after start(), or a DpdkFastPath
//   if (auto s = fp->add_prefix(PrefixList::kBlock, "192.0.2.0/24"); !s.ok()) ...
//
// Source lists: the allowlist and blocklist of a family live in one LPM table whose entries carry
// derived flags (MXEDGE_PREFIX_ALLOWED/BLOCKED: the entry or a listed prefix containing it is on the
// list); sources_ keeps the lists and the flags last written, so changing one prefix rewrites exactly
// the entries whose flags change, containing prefixes before contained ones.
//
// Errors: a hook returns a Status whose errno the API keeps. The source and local-address hooks get
// the API's own context ("blocklist: remove 192.0.2.0/24", "source lists: write ...", "local
// addresses: list"), the same for every backend; the Status of require_loaded, write_config and the
// worker hooks is returned as the hook made it.
//
// Threads: one owner thread (the data plane serialises callers with its fast-path mutex). Readers of
// the tables may see the config entry half rewritten; every mix of old and new is safe (see
// xdp_program.h).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bpf/mxedge_abi.h"
#include "dataplane/xdp/ip_prefix.h"
#include "dataplane/xdp/status.h"
#include "dataplane/xdp/xdp_config.h"

namespace mxedge::xdp {

enum class PrefixList { kAllow, kBlock, kLocal };

// One prefix of the source lists as the API keeps it.
struct SourceEntry {
  uint32_t lists = 0;    // MXEDGE_PREFIX_IN_ALLOW / IN_BLOCK
  uint32_t written = 0;  // the flags in the table
};
inline constexpr uint32_t kUnwritten = ~0u;  // SourceEntry::written of an entry not yet in the table

struct CounterValue {
  uint64_t packets = 0;
  uint64_t bytes = 0;
};
using CounterSet = std::array<CounterValue, MXEDGE_CTR_COUNT>;  // indexed by mxedge_counter_index

struct XdpCounters {
  CounterSet total{};               // summed over CPUs (XDP) or poll cores (DPDK)
  std::vector<CounterSet> per_cpu;  // indexed by (possible) CPU id

  uint64_t packets(unsigned index) const { return total[index].packets; }
  uint64_t steered(unsigned worker) const { return total[MXEDGE_CTR_STEERED_WORKER0 + worker].packets; }
  uint64_t steered_total() const;
  uint64_t all_packets() const;  // sum of the exclusive counters: every packet the fast path saw
};

// "pass_not_smtp", "pass_fragment", "malformed", "pass_smtp", "pass_no_worker", "drop_blocklist",
// "drop_rate_limit", "allowlisted", "drop_new_source", "steered_worker_<i>".
std::string counter_name(unsigned index);

// Where a fast path takes packets from: an interface with the XDP program attached, or a DPDK port.
struct Attachment {
  std::string ifname;
  unsigned ifindex = 0;  // XDP: the interface index; DPDK: the port id
  bool native = false;   // XDP: false for generic (SKB) mode
};

class FastPath {
 public:
  virtual ~FastPath();
  FastPath(const FastPath&) = delete;
  FastPath& operator=(const FastPath&) = delete;

  virtual const char* kind() const = 0;  // "xdp" or "dpdk", for logs, status and errors

  // Writes the config's settings into the tables: ports, local addresses (replaced), allow/block
  // entries (added), rate limit, worker set, steering. Needs a loaded fast path.
  Status apply(const XdpConfig& config);

  // Each needs a loaded fast path; each is safe while packets flow. Adding a prefix that is already
  // listed is not an error; removing one that is not listed is (ENOENT).
  Status add_prefix(PrefixList list, std::string_view prefix);
  Status remove_prefix(PrefixList list, std::string_view prefix);
  Status list_prefixes(PrefixList list, std::vector<IpPrefix>* out) const;
  Status set_rate_limit(uint32_t syn_per_second, uint32_t burst);  // 0 per second: no limit
  // The new-source budget, per CPU (see XdpConfig::new_source_syn_rate); 0 per second: off.
  Status set_new_source_limit(uint32_t per_second, uint32_t burst);
  Status set_smtp_ports(std::span<const uint16_t> ports);
  Status set_local_addresses(std::span<const std::string> prefixes);  // replaces; empty = any
  // Worker i runs on worker_cpus[i]; every worker CPU gets a queue of qsize frames (XDP: a cpumap
  // entry), and CPUs no longer listed lose theirs once no packet is steered to them.
  Status set_workers(std::span<const unsigned> worker_cpus, uint32_t qsize);
  Status set_steering(bool on);
  virtual Status read_counters(XdpCounters* out) const = 0;
  virtual Status reset_counters() = 0;

  const mxedge_config& config() const { return config_; }  // as last written
  // What the fast path takes packets from (XDP: interfaces; DPDK: ports), for status.
  virtual std::vector<Attachment> attachments() const = 0;

 protected:
  FastPath() = default;

  // --- backend hooks ---
  // EINVAL "<what>: ... not loaded" until the tables exist; every API call checks it first.
  virtual Status require_loaded(const char* what) const = 0;
  virtual Status write_config(const mxedge_config& config) = 0;        // publish the whole config entry
  virtual Status write_source(const IpPrefix& p, uint32_t flags) = 0;  // add or overwrite a source entry
  virtual Status delete_source(const IpPrefix& p) = 0;                 // ENOENT: was not there (tolerated)
  virtual Status write_local(const IpPrefix& p) = 0;                   // add a local-address entry
  virtual Status delete_local(const IpPrefix& p) = 0;
  virtual Status list_local(std::vector<IpPrefix>* out) const = 0;     // every local-address entry
  // set_workers calls prepare_workers before the config naming the new set is written (XDP: create
  // or resize the cpumap entries of `cpus`), and retire_workers after it (XDP: delete the entries of
  // CPUs not in `cpus`). `cpus` is validated: existing CPUs, no duplicates, at most
  // MXEDGE_MAX_WORKERS; qsize is in 1..16384 unless `cpus` is empty.
  virtual Status prepare_workers(std::span<const unsigned> cpus, uint32_t qsize) = 0;
  virtual Status retire_workers(std::span<const unsigned> cpus) = 0;

  // The kernel's possible CPUs (at least 1): set_workers accepts CPU ids below this (and below
  // MXEDGE_MAX_CPUS).
  static unsigned possible_cpus();

  // Replaces sources_ with the entries already in the source tables (prefix, flags as stored), e.g.
  // from pinned maps when a backend loads.
  Status load_sources(const std::vector<std::pair<IpPrefix, uint32_t>>& entries);

  mxedge_config config_{};
  std::map<IpPrefix, SourceEntry> sources_;

 private:
  Status publish_config() { return write_config(config_); }
  Status change_source(PrefixList list, std::string_view text, bool add);
  Status refresh_sources_under(const IpPrefix& prefix);
  Status refresh_local_mode();
};

}  // namespace mxedge::xdp
