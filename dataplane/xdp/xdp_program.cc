// The XDP program's owner and map API; see xdp_program.h.
#include "dataplane/xdp/xdp_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "dataplane/xdp/libbpf_support.h"
#include "mxedge_xdp_smtp.skel.h"
#include "policy/log.h"

namespace mxedge::xdp {
namespace {

constexpr std::string_view kProgramName = "mxedge_xdp_smtp";  // as the kernel reports it (<= 15 chars)

static_assert(sizeof(mxedge_counters) % 8 == 0, "per-CPU values are laid out at 8-byte strides");
static_assert(sizeof(mxedge_config) == 4 + 4 + 2 * MXEDGE_MAX_SMTP_PORTS + 8 + 8 + 4 + 4 +
                                           4 * MXEDGE_MAX_INLINE_LOCAL_V4 + 16 * MXEDGE_MAX_INLINE_LOCAL_V6 +
                                           4 * MXEDGE_MAX_WORKERS,
              "mxedge_config must have no implicit padding");

std::string errno_text(int err) {
  char buf[128];
  return strerror_r(err < 0 ? -err : err, buf, sizeof buf);
}

int possible_cpus() {
  int n = libbpf_num_possible_cpus();
  return n > 0 ? n : 1;
}

// The name of the program with this id, or "" when it cannot be read.
std::string program_name(uint32_t id) {
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return "";
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  std::string name;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) name = info.name;
  close(fd);
  return name;
}

const char* list_name(PrefixList list) {
  switch (list) {
    case PrefixList::kAllow:
      return "allowlist";
    case PrefixList::kBlock:
      return "blocklist";
    case PrefixList::kLocal:
      return "local addresses";
  }
  return "?";
}

}  // namespace

uint64_t XdpCounters::steered_total() const {
  uint64_t n = 0;
  for (unsigned w = 0; w < MXEDGE_MAX_WORKERS; ++w) n += steered(w);
  return n;
}

uint64_t XdpCounters::all_packets() const {
  uint64_t n = steered_total();
  for (unsigned i = MXEDGE_CTR_PASS_NOT_SMTP; i <= MXEDGE_CTR_DROP_RATE_LIMIT; ++i) n += packets(i);
  return n;
}

std::string counter_name(unsigned index) {
  switch (index) {
    case MXEDGE_CTR_PASS_NOT_SMTP:
      return "pass_not_smtp";
    case MXEDGE_CTR_PASS_FRAGMENT:
      return "pass_fragment";
    case MXEDGE_CTR_MALFORMED:
      return "malformed";
    case MXEDGE_CTR_PASS_SMTP:
      return "pass_smtp";
    case MXEDGE_CTR_PASS_NO_WORKER:
      return "pass_no_worker";
    case MXEDGE_CTR_DROP_BLOCKLIST:
      return "drop_blocklist";
    case MXEDGE_CTR_DROP_RATE_LIMIT:
      return "drop_rate_limit";
    case MXEDGE_CTR_ALLOWLISTED:
      return "allowlisted";
    default:
      break;
  }
  if (index >= MXEDGE_CTR_STEERED_WORKER0 && index < MXEDGE_CTR_COUNT) {
    return "steered_worker_" + std::to_string(index - MXEDGE_CTR_STEERED_WORKER0);
  }
  return "unused_" + std::to_string(index);
}

XdpProgram::XdpProgram() = default;

XdpProgram::~XdpProgram() {
  if (auto s = detach_all(); !s.ok()) log::warning("xdp.detach_failed").kv("error", s.to_string());
  mxedge_xdp_smtp__destroy(skel_);
}

Status XdpProgram::open(const XdpProgramOptions& options) {
  if (skel_) return Status::error(EALREADY, "open xdp_smtp: already open");
  route_libbpf_logs();
  skel_ = mxedge_xdp_smtp__open();
  if (!skel_) return Status::error(errno, "open xdp_smtp skeleton");
  options_ = options;
  skel_->rodata->flow_hash_seed = options.flow_hash_seed;
  skel_->rodata->use_test_clock = options.test_clock ? 1 : 0;
  return Status();
}

Status XdpProgram::prepare_pins() {
  const std::string& dir = options_.pin_dir;
  if (auto s = make_pin_dir(dir); !s.ok()) return s;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, skel_->obj) {
    if (bpf_map__is_internal(map)) continue;  // .rodata/.bss belong to this load only
    std::string path = dir + "/" + bpf_map__name(map);
    int fd = bpf_obj_get(path.c_str());
    if (fd >= 0) {
      bpf_map_info info{};
      uint32_t len = sizeof(info);
      int err = bpf_obj_get_info_by_fd(fd, &info, &len);
      close(fd);
      if (err) return Status::error(err, "read info of pinned map " + path);
      bool same = info.type == static_cast<uint32_t>(bpf_map__type(map)) && info.key_size == bpf_map__key_size(map) &&
                  info.value_size == bpf_map__value_size(map) && info.max_entries == bpf_map__max_entries(map) &&
                  info.map_flags == bpf_map__map_flags(map);
      if (!same) {
        log::warning("xdp.pin_replaced").kv("path", path).kv("reason", "layout changed");
        if (unlink(path.c_str()) != 0) return Status::error(errno, "unlink stale pinned map " + path);
      }
    } else if (errno != ENOENT) {
      return Status::error(errno, "open pinned map " + path);
    }
    if (int err = bpf_map__set_pin_path(map, path.c_str())) return Status::error(err, "set pin path " + path);
  }
  return Status();
}

Status XdpProgram::load() {
  if (!skel_) return Status::error(EINVAL, "load xdp_smtp: not open");
  if (loaded_) return Status::error(EALREADY, "load xdp_smtp: already loaded");
  if (!options_.pin_dir.empty()) {
    if (auto s = prepare_pins(); !s.ok()) return s;
  }
  if (int err = mxedge_xdp_smtp__load(skel_)) {
    return Status::error(err, "load xdp_smtp (libbpf's warning lines carry the verifier log)");
  }
  loaded_ = true;
  // A reused pinned config carries the previous run's settings; the API edits them from there.
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.config), &zero, &config_) != 0) {
    return Status::error(errno, "read config map");
  }
  if (auto s = read_sources(); !s.ok()) return s;
  log::info("xdp.loaded").kv("pin_dir", options_.pin_dir.empty() ? "-" : options_.pin_dir);
  return Status();
}

int XdpProgram::prog_fd() const { return skel_ ? bpf_program__fd(skel_->progs.mxedge_xdp_smtp) : -1; }

int XdpProgram::map_fd(std::string_view name) const {
  if (!skel_) return -1;
  const bpf_map* map = bpf_object__find_map_by_name(skel_->obj, std::string(name).c_str());
  return map ? bpf_map__fd(map) : -1;
}

Status XdpProgram::require_loaded(const char* what) const {
  if (!loaded_) return Status::error(EINVAL, std::string(what) + ": xdp_smtp not loaded");
  return Status();
}

Status XdpProgram::attach(std::string_view ifname_view, AttachMode mode) {
  std::string ifname(ifname_view);
  if (auto s = require_loaded("attach"); !s.ok()) return s;
  for (const auto& a : attachments_) {
    if (a.ifname == ifname) return Status();
  }
  unsigned ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0) return Status::error(errno, "if_nametoindex(" + ifname + ")");

  // Leave other people's programs alone; replace one left by an earlier mxedge run.
  bpf_xdp_query_opts query{};  // LIBBPF_OPTS is a GNU C statement expression; set .sz by hand
  query.sz = sizeof(query);
  if (int err = bpf_xdp_query(static_cast<int>(ifindex), 0, &query)) {
    return Status::error(err, "bpf_xdp_query(" + ifname + ")");
  }
  for (uint32_t id : {query.drv_prog_id, query.skb_prog_id, query.hw_prog_id}) {
    if (id == 0) continue;
    std::string name = program_name(id);
    if (name != kProgramName || id == query.hw_prog_id) {
      return Status::error(EBUSY, ifname + " already runs XDP program \"" + name + "\" (id " + std::to_string(id) +
                                      "); detach it first");
    }
  }
  // A stale program in the other mode would make the kernel refuse this one (EEXIST).
  if (query.skb_prog_id != 0 && mode != AttachMode::kGeneric) {
    if (int err = bpf_xdp_detach(static_cast<int>(ifindex), XDP_FLAGS_SKB_MODE, nullptr)) {
      return Status::error(err, "detach stale generic-mode program from " + ifname);
    }
  }
  if (query.drv_prog_id != 0 && mode == AttachMode::kGeneric) {
    if (int err = bpf_xdp_detach(static_cast<int>(ifindex), XDP_FLAGS_DRV_MODE, nullptr)) {
      return Status::error(err, "detach stale native-mode program from " + ifname);
    }
  }

  std::string native_error;
  if (mode != AttachMode::kGeneric) {
    int err = bpf_xdp_attach(static_cast<int>(ifindex), prog_fd(), XDP_FLAGS_DRV_MODE, nullptr);
    if (err == 0) {
      attachments_.push_back({ifname, ifindex, true});
      log::info("xdp.attached").kv("ifname", ifname).kv("mode", "native");
      return Status();
    }
    if (mode == AttachMode::kNative) return Status::error(err, "bpf_xdp_attach(" + ifname + ", native)");
    native_error = errno_text(err);
  }
  if (int err = bpf_xdp_attach(static_cast<int>(ifindex), prog_fd(), XDP_FLAGS_SKB_MODE, nullptr)) {
    return Status::error(err, "bpf_xdp_attach(" + ifname + ", generic)");
  }
  attachments_.push_back({ifname, ifindex, false});
  auto line = log::info("xdp.attached");
  line.kv("ifname", ifname).kv("mode", "generic");
  if (!native_error.empty()) line.kv("native_error", native_error);
  return Status();
}

Status XdpProgram::detach(std::string_view ifname) {
  auto it =
      std::find_if(attachments_.begin(), attachments_.end(), [&](const Attachment& a) { return a.ifname == ifname; });
  if (it == attachments_.end()) return Status::error(ENOENT, "detach: not attached to " + std::string(ifname));
  Attachment a = *it;
  attachments_.erase(it);
  // Only if our program is still the one attached (XDP_FLAGS_REPLACE with the expected program).
  bpf_xdp_attach_opts opts{};
  opts.sz = sizeof(opts);
  opts.old_prog_fd = prog_fd();
  int err = bpf_xdp_detach(static_cast<int>(a.ifindex), a.native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE, &opts);
  if (err == -ENODEV) return Status();  // the interface is gone, and our program with it
  if (err) return Status::error(err, "bpf_xdp_detach(" + a.ifname + ")");
  log::info("xdp.detached").kv("ifname", a.ifname).kv("mode", a.native ? "native" : "generic");
  return Status();
}

Status XdpProgram::detach_all() {
  Status first;
  while (!attachments_.empty()) {
    Status s = detach(attachments_.back().ifname);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

Status XdpProgram::start(const XdpConfig& config) {
  if (auto s = validate(config); !s.ok()) return s;
  XdpProgramOptions options;
  options.pin_dir = config.pin_dir;
  options.flow_hash_seed = config.flow_hash_seed;
  if (auto s = open(options); !s.ok()) return s;
  if (auto s = load(); !s.ok()) return s;
  if (auto s = apply(config); !s.ok()) return s;
  for (const auto& ifname : config.interfaces) {
    if (auto s = attach(ifname, config.attach_mode); !s.ok()) return s;
  }
  return Status();
}

Status XdpProgram::apply(const XdpConfig& config) {
  if (auto s = require_loaded("apply"); !s.ok()) return s;
  if (auto s = validate(config); !s.ok()) return s;
  if (auto s = set_smtp_ports(config.smtp_ports); !s.ok()) return s;
  if (auto s = set_local_addresses(config.local_addresses); !s.ok()) return s;
  for (const auto& p : config.allowlist) {
    if (auto s = add_prefix(PrefixList::kAllow, p); !s.ok()) return s;
  }
  for (const auto& p : config.blocklist) {
    if (auto s = add_prefix(PrefixList::kBlock, p); !s.ok()) return s;
  }
  if (auto s = set_rate_limit(config.syn_rate, config.syn_burst); !s.ok()) return s;
  if (auto s = set_workers(config.worker_cpus, config.cpumap_qsize); !s.ok()) return s;
  return set_steering(config.steering);
}

int XdpProgram::local_fd(bool ipv4) const { return bpf_map__fd(ipv4 ? skel_->maps.local_v4 : skel_->maps.local_v6); }

int XdpProgram::source_fd(bool ipv4) const {
  return bpf_map__fd(ipv4 ? skel_->maps.source_lists_v4 : skel_->maps.source_lists_v6);
}

namespace {

// One LPM trie entry as key bytes for the prefix's family.
struct LpmKey {
  explicit LpmKey(const IpPrefix& p) {
    v4.prefixlen = v6.prefixlen = p.length;
    std::memcpy(v4.addr, p.addr.data(), sizeof v4.addr);
    std::memcpy(v6.addr, p.addr.data(), sizeof v6.addr);
    ptr = p.is_ipv4() ? static_cast<const void*>(&v4) : static_cast<const void*>(&v6);
  }
  mxedge_lpm_v4_key v4{};
  mxedge_lpm_v6_key v6{};
  const void* ptr;
};

// Every key of an LPM trie of the given family.
Status read_trie(int fd, bool ipv4, const char* what, std::vector<std::pair<IpPrefix, mxedge_prefix_value>>* out) {
  mxedge_lpm_v6_key key{}, next{};  // large enough for either family
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    IpPrefix p;
    p.family = ipv4 ? IpPrefix::Family::kIpv4 : IpPrefix::Family::kIpv6;
    p.length = static_cast<uint8_t>(next.prefixlen);
    std::memcpy(p.addr.data(), next.addr, ipv4 ? 4 : 16);
    mxedge_prefix_value value{};
    if (bpf_map_lookup_elem(fd, &next, &value) != 0) value.flags = 0;  // raced with a delete
    out->emplace_back(p, value);
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return Status::error(errno, std::string(what) + ": list");
  return Status();
}

constexpr uint32_t kUnwritten = ~0u;  // SourceEntry::written of an entry not yet in the trie

uint32_t list_bit(PrefixList list) {
  return list == PrefixList::kAllow ? MXEDGE_PREFIX_IN_ALLOW : MXEDGE_PREFIX_IN_BLOCK;
}

}  // namespace

Status XdpProgram::read_sources() {
  sources_.clear();
  for (bool ipv4 : {true, false}) {
    std::vector<std::pair<IpPrefix, mxedge_prefix_value>> entries;
    if (auto s = read_trie(source_fd(ipv4), ipv4, "source lists", &entries); !s.ok()) return s;
    for (const auto& [prefix, value] : entries) {
      sources_[prefix] = {value.flags & (MXEDGE_PREFIX_IN_ALLOW | MXEDGE_PREFIX_IN_BLOCK), value.flags};
    }
  }
  return Status();
}

// Recomputes ALLOWED/BLOCKED for `prefix` and every listed prefix inside it, and writes the entries
// whose flags changed. An entry is allowed (blocked) when it or a listed prefix containing it is on
// the allowlist (blocklist).
Status XdpProgram::refresh_sources_under(const IpPrefix& prefix) {
  IpPrefix first = prefix;
  first.length = 0;
  for (auto it = sources_.lower_bound(first); it != sources_.end(); ++it) {
    const IpPrefix& p = it->first;
    if (p.family != prefix.family || p.truncated(prefix.length).addr != prefix.addr) break;
    if (p.length < prefix.length) continue;  // contains `prefix` (same address, shorter)
    uint32_t flags = it->second.lists;
    for (unsigned bits = 0; bits <= p.length; ++bits) {
      auto outer = sources_.find(p.truncated(bits));
      if (outer == sources_.end()) continue;
      if (outer->second.lists & MXEDGE_PREFIX_IN_ALLOW) flags |= MXEDGE_PREFIX_ALLOWED;
      if (outer->second.lists & MXEDGE_PREFIX_IN_BLOCK) flags |= MXEDGE_PREFIX_BLOCKED;
    }
    if (flags == it->second.written) continue;
    LpmKey key(p);
    mxedge_prefix_value value{flags};
    if (bpf_map_update_elem(source_fd(p.is_ipv4()), key.ptr, &value, BPF_ANY) != 0) {
      return Status::error(errno, "source lists: write " + p.to_string());
    }
    it->second.written = flags;
  }
  return Status();
}

Status XdpProgram::change_source(PrefixList list, std::string_view text, bool add) {
  auto prefix = IpPrefix::parse(text);
  if (!prefix) {
    return Status::error(EINVAL, std::string(list_name(list)) + ": bad prefix \"" + std::string(text) + "\"");
  }
  const uint32_t bit = list_bit(list);
  auto it = sources_.find(*prefix);
  if (add) {
    if (it == sources_.end()) {
      // A new entry enters the trie with its final flags (refresh writes it first, then the
      // entries inside it); if the trie is full it was never written and is forgotten again.
      it = sources_.emplace(*prefix, SourceEntry{bit, kUnwritten}).first;
      Status s = refresh_sources_under(*prefix);
      if (!s.ok() && it->second.written == kUnwritten) sources_.erase(it);
      return s;
    }
    it->second.lists |= bit;
    return refresh_sources_under(*prefix);
  }
  if (it == sources_.end() || !(it->second.lists & bit)) {
    return Status::error(ENOENT, std::string(list_name(list)) + ": remove " + prefix->to_string());
  }
  it->second.lists &= ~bit;
  if (it->second.lists == 0) {
    LpmKey key(*prefix);
    if (bpf_map_delete_elem(source_fd(prefix->is_ipv4()), key.ptr) != 0 && errno != ENOENT) {
      return Status::error(errno, std::string(list_name(list)) + ": remove " + prefix->to_string());
    }
    sources_.erase(it);
  }
  return refresh_sources_under(*prefix);
}

Status XdpProgram::add_prefix(PrefixList list, std::string_view text) {
  if (auto s = require_loaded("add_prefix"); !s.ok()) return s;
  if (list != PrefixList::kLocal) return change_source(list, text, true);
  auto prefix = IpPrefix::parse(text);
  if (!prefix) return Status::error(EINVAL, "local addresses: bad prefix \"" + std::string(text) + "\"");
  LpmKey key(*prefix);
  mxedge_prefix_value value{};
  if (bpf_map_update_elem(local_fd(prefix->is_ipv4()), key.ptr, &value, BPF_ANY) != 0) {
    return Status::error(errno, "local addresses: add " + prefix->to_string());
  }
  return refresh_local_mode();
}

Status XdpProgram::remove_prefix(PrefixList list, std::string_view text) {
  if (auto s = require_loaded("remove_prefix"); !s.ok()) return s;
  if (list != PrefixList::kLocal) return change_source(list, text, false);
  auto prefix = IpPrefix::parse(text);
  if (!prefix) return Status::error(EINVAL, "local addresses: bad prefix \"" + std::string(text) + "\"");
  LpmKey key(*prefix);
  if (bpf_map_delete_elem(local_fd(prefix->is_ipv4()), key.ptr) != 0) {
    return Status::error(errno, "local addresses: remove " + prefix->to_string());
  }
  return refresh_local_mode();
}

Status XdpProgram::list_local(std::vector<IpPrefix>* out) const {
  out->clear();
  for (bool ipv4 : {true, false}) {
    std::vector<std::pair<IpPrefix, mxedge_prefix_value>> entries;
    if (auto s = read_trie(local_fd(ipv4), ipv4, "local addresses", &entries); !s.ok()) return s;
    for (const auto& e : entries) out->push_back(e.first);
  }
  return Status();
}

Status XdpProgram::list_prefixes(PrefixList list, std::vector<IpPrefix>* out) const {
  if (auto s = require_loaded("list_prefixes"); !s.ok()) return s;
  if (list == PrefixList::kLocal) return list_local(out);
  out->clear();
  for (const auto& [prefix, entry] : sources_) {
    if (entry.lists & list_bit(list)) out->push_back(prefix);
  }
  return Status();
}

// How the program finds local addresses: any (none listed), inline in the config (a few single
// addresses), or the trie.
Status XdpProgram::refresh_local_mode() {
  std::vector<IpPrefix> all;
  if (auto s = list_local(&all); !s.ok()) return s;
  std::vector<IpPrefix> v4, v6;
  for (const auto& p : all) (p.is_ipv4() ? v4 : v6).push_back(p);

  config_.flags &=
      ~(MXEDGE_CFG_LOCAL_V4_ANY | MXEDGE_CFG_LOCAL_V6_ANY | MXEDGE_CFG_LOCAL_V4_LPM | MXEDGE_CFG_LOCAL_V6_LPM);
  config_.local_v4_count = config_.local_v6_count = 0;
  std::memset(config_.local_v4, 0, sizeof config_.local_v4);
  std::memset(config_.local_v6, 0, sizeof config_.local_v6);
  if (all.empty()) {
    // None listed: every destination is ours. With addresses of one family only, the other family
    // has no local address at all, so "any" applies only when both are empty.
    config_.flags |= MXEDGE_CFG_LOCAL_V4_ANY | MXEDGE_CFG_LOCAL_V6_ANY;
    return write_config();
  }
  auto hosts_only = [](const std::vector<IpPrefix>& v) {
    return std::all_of(v.begin(), v.end(), [](const IpPrefix& p) { return p.length == p.max_length(); });
  };
  if (v4.size() <= MXEDGE_MAX_INLINE_LOCAL_V4 && hosts_only(v4)) {
    for (const auto& p : v4) std::memcpy(config_.local_v4[config_.local_v4_count++], p.addr.data(), 4);
  } else {
    config_.flags |= MXEDGE_CFG_LOCAL_V4_LPM;
  }
  if (v6.size() <= MXEDGE_MAX_INLINE_LOCAL_V6 && hosts_only(v6)) {
    for (const auto& p : v6) std::memcpy(config_.local_v6[config_.local_v6_count++], p.addr.data(), 16);
  } else {
    config_.flags |= MXEDGE_CFG_LOCAL_V6_LPM;
  }
  return write_config();
}

Status XdpProgram::set_local_addresses(std::span<const std::string> texts) {
  if (auto s = require_loaded("set_local_addresses"); !s.ok()) return s;
  std::vector<IpPrefix> wanted;
  for (const auto& t : texts) {
    auto p = IpPrefix::parse(t);
    if (!p) return Status::error(EINVAL, "local addresses: bad prefix \"" + t + "\"");
    wanted.push_back(*p);
  }
  std::vector<IpPrefix> current;
  if (auto s = list_local(&current); !s.ok()) return s;
  // Add first, then remove: the set never shrinks below the intersection while it changes.
  mxedge_prefix_value value{};
  for (const auto& p : wanted) {
    LpmKey key(p);
    if (bpf_map_update_elem(local_fd(p.is_ipv4()), key.ptr, &value, BPF_ANY) != 0) {
      return Status::error(errno, "local addresses: add " + p.to_string());
    }
  }
  for (const auto& p : current) {
    if (std::find(wanted.begin(), wanted.end(), p) != wanted.end()) continue;
    LpmKey key(p);
    if (bpf_map_delete_elem(local_fd(p.is_ipv4()), key.ptr) != 0) {
      return Status::error(errno, "local addresses: remove " + p.to_string());
    }
  }
  return refresh_local_mode();
}

Status XdpProgram::write_config() {
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.config), &zero, &config_, BPF_ANY) != 0) {
    return Status::error(errno, "write config map");
  }
  return Status();
}

Status XdpProgram::set_rate_limit(uint32_t syn_per_second, uint32_t burst) {
  if (auto s = require_loaded("set_rate_limit"); !s.ok()) return s;
  if (syn_per_second > 0 && burst == 0) return Status::error(EINVAL, "rate limit: burst must be at least 1");
  if (syn_per_second > 1000000000u) return Status::error(EINVAL, "rate limit: above 1e9 SYNs per second");
  if (syn_per_second == 0) {
    config_.syn_interval_ns = 0;
    config_.syn_burst_ns = 0;
  } else {
    uint64_t interval = (1000000000ull + syn_per_second / 2) / syn_per_second;
    config_.syn_interval_ns = interval;
    config_.syn_burst_ns = (static_cast<uint64_t>(burst) - 1) * interval;
  }
  return write_config();
}

Status XdpProgram::set_smtp_ports(std::span<const uint16_t> ports) {
  if (auto s = require_loaded("set_smtp_ports"); !s.ok()) return s;
  if (ports.size() > MXEDGE_MAX_SMTP_PORTS) return Status::error(E2BIG, "smtp ports: more than 8");
  std::set<uint16_t> seen;
  for (uint16_t p : ports) {
    if (p == 0 || !seen.insert(p).second) return Status::error(EINVAL, "smtp ports: 0 or duplicate");
  }
  std::fill(std::begin(config_.smtp_ports), std::end(config_.smtp_ports), uint16_t{0});
  std::copy(ports.begin(), ports.end(), config_.smtp_ports);
  return write_config();
}

Status XdpProgram::set_workers(std::span<const unsigned> cpus, uint32_t qsize) {
  if (auto s = require_loaded("set_workers"); !s.ok()) return s;
  if (cpus.size() > MXEDGE_MAX_WORKERS) return Status::error(E2BIG, "workers: more than 64");
  const unsigned possible = static_cast<unsigned>(possible_cpus());
  std::set<unsigned> wanted;
  for (unsigned cpu : cpus) {
    if (cpu >= MXEDGE_MAX_CPUS || cpu >= possible) {
      return Status::error(EINVAL, "workers: CPU " + std::to_string(cpu) + " does not exist");
    }
    if (!wanted.insert(cpu).second) return Status::error(EINVAL, "workers: CPU " + std::to_string(cpu) + " twice");
  }
  if (!cpus.empty() && (qsize == 0 || qsize > 16384)) return Status::error(EINVAL, "workers: qsize not in 1..16384");

  int cpumap = bpf_map__fd(skel_->maps.worker_cpumap);
  for (unsigned cpu : cpus) {
    bpf_cpumap_val current{};
    uint32_t key = cpu;
    if (bpf_map_lookup_elem(cpumap, &key, &current) == 0 && current.qsize == qsize) continue;
    bpf_cpumap_val value{};
    value.qsize = qsize;
    if (bpf_map_update_elem(cpumap, &key, &value, BPF_ANY) != 0) {
      return Status::error(errno, "cpumap: add CPU " + std::to_string(cpu));
    }
  }
  std::fill(std::begin(config_.worker_cpus), std::end(config_.worker_cpus), 0u);
  std::copy(cpus.begin(), cpus.end(), config_.worker_cpus);
  config_.worker_count = static_cast<uint32_t>(cpus.size());
  if (auto s = write_config(); !s.ok()) return s;
  // Now that no packet is steered there any more, drop the queues of CPUs that left the set.
  for (uint32_t cpu = 0; cpu < std::min<unsigned>(possible, MXEDGE_MAX_CPUS); ++cpu) {
    if (wanted.count(cpu)) continue;
    bpf_cpumap_val current{};
    if (bpf_map_lookup_elem(cpumap, &cpu, &current) != 0) continue;
    if (bpf_map_delete_elem(cpumap, &cpu) != 0)
      return Status::error(errno, "cpumap: remove CPU " + std::to_string(cpu));
  }
  return Status();
}

Status XdpProgram::set_steering(bool on) {
  if (auto s = require_loaded("set_steering"); !s.ok()) return s;
  if (on) {
    config_.flags |= MXEDGE_CFG_STEERING;
  } else {
    config_.flags &= ~MXEDGE_CFG_STEERING;
  }
  return write_config();
}

Status XdpProgram::read_counters(XdpCounters* out) const {
  if (auto s = require_loaded("read_counters"); !s.ok()) return s;
  std::vector<mxedge_counters> values(static_cast<size_t>(possible_cpus()));
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.counters), &zero, values.data()) != 0) {
    return Status::error(errno, "read counters");
  }
  out->total = {};
  out->per_cpu.assign(values.size(), CounterSet{});
  for (size_t cpu = 0; cpu < values.size(); ++cpu) {
    for (unsigned i = 0; i < MXEDGE_CTR_COUNT; ++i) {
      const mxedge_counter& c = values[cpu].ctr[i];
      out->per_cpu[cpu][i] = {c.packets, c.bytes};
      out->total[i].packets += c.packets;
      out->total[i].bytes += c.bytes;
    }
  }
  return Status();
}

Status XdpProgram::reset_counters() {
  if (auto s = require_loaded("reset_counters"); !s.ok()) return s;
  std::vector<mxedge_counters> zeros(static_cast<size_t>(possible_cpus()));
  std::memset(static_cast<void*>(zeros.data()), 0, zeros.size() * sizeof(mxedge_counters));
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.counters), &zero, zeros.data(), BPF_ANY) != 0) {
    return Status::error(errno, "reset counters");
  }
  return Status();
}

void XdpProgram::set_test_clock(uint64_t ns) {
  if (skel_ && skel_->bss) skel_->bss->test_clock_ns = ns;
}

}  // namespace mxedge::xdp
