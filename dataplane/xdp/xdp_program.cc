// The XDP program's owner and the bpf map storage under the FastPath API; see xdp_program.h.
#include "dataplane/xdp/xdp_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "dataplane/xdp/libbpf_support.h"
#include "mxedge_xdp_smtp.skel.h"
#include "policy/log.h"

namespace mxedge::xdp {
namespace {

constexpr std::string_view kProgramName = "mxedge_xdp_smtp";  // as the kernel reports it (<= 15 chars)

static_assert(sizeof(mxedge_counters) % 8 == 0, "per-CPU values are laid out at 8-byte strides");
static_assert(sizeof(mxedge_config) == 4 + 4 + 2 * MXEDGE_MAX_SMTP_PORTS + 8 + 8 + 4 + 4 +
                                           4 * MXEDGE_MAX_INLINE_LOCAL_V4 + 16 * MXEDGE_MAX_INLINE_LOCAL_V6 +
                                           4 * MXEDGE_MAX_WORKERS + 8 + 8,
              "mxedge_config must have no implicit padding");

std::string errno_text(int err) {
  char buf[128];
  return strerror_r(err < 0 ? -err : err, buf, sizeof buf);
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

}  // namespace

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

std::string XdpProgram::link_pin_path(const std::string& ifname) const {
  return options_.pin_dir.empty() ? std::string() : options_.pin_dir + "/link_xdp_" + ifname;
}

// A link pinned by an earlier run for this interface: its program is replaced in place (no moment
// without XDP) when it is still attached to this interface in an acceptable mode; otherwise it is
// detached and unpinned. *adopted is the attachment when it was adopted.
Status XdpProgram::adopt_pinned_link(const std::string& ifname, unsigned ifindex, AttachMode mode, bool* adopted) {
  *adopted = false;
  const std::string path = link_pin_path(ifname);
  if (path.empty()) return Status();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    if (errno == ENOENT) return Status();
    return Status::error(errno, "open pinned link " + path);
  }
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  std::string stale;
  bool native = false;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
    stale = "unreadable: " + errno_text(errno);
  } else if (info.type != BPF_LINK_TYPE_XDP) {
    stale = "not an XDP link";
  } else if (info.xdp.ifindex != ifindex) {
    stale = info.xdp.ifindex == 0 ? "its interface is gone" : "attached to another interface index";
  } else {
    bpf_xdp_query_opts query{};
    query.sz = sizeof(query);
    if (int err = bpf_xdp_query(static_cast<int>(ifindex), 0, &query)) {
      close(fd);
      return Status::error(err, "bpf_xdp_query(" + ifname + ")");
    }
    native = query.drv_prog_id == info.prog_id;
    if ((mode == AttachMode::kNative && !native) || (mode == AttachMode::kGeneric && native)) stale = "attached in the other mode";
  }
  if (stale.empty()) {
    if (bpf_link_update(fd, prog_fd(), nullptr) == 0) {
      links_.push_back({{ifname, ifindex, native}, fd});
      log::info("xdp.attached").kv("ifname", ifname).kv("mode", native ? "native" : "generic").kv("link", path)
          .kv("detail", "replaced the previous run's program in its pinned link");
      *adopted = true;
      return Status();
    }
    stale = "update failed: " + errno_text(errno);
  }
  log::warning("xdp.link_replaced").kv("path", path).kv("reason", stale);
  bpf_link_detach(fd);  // fails harmlessly when the interface took it away already
  close(fd);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return Status::error(errno, "unlink stale pinned link " + path);
  return Status();
}

Status XdpProgram::attach(std::string_view ifname_view, AttachMode mode) {
  std::string ifname(ifname_view);
  if (auto s = require_loaded("attach"); !s.ok()) return s;
  for (const auto& l : links_) {
    if (l.attachment.ifname == ifname) return Status();
  }
  unsigned ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0) return Status::error(errno, "if_nametoindex(" + ifname + ")");

  bool adopted = false;
  if (auto s = adopt_pinned_link(ifname, ifindex, mode, &adopted); !s.ok() || adopted) return s;

  // Leave other people's programs alone; replace one left by an earlier mxedge run that attached
  // without a link (older versions did).
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
    const uint32_t flags = id == query.drv_prog_id ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
    if (int err = bpf_xdp_detach(static_cast<int>(ifindex), flags, nullptr)) {
      // EBUSY: a link holds it, so another mxedge process runs on this interface.
      return Status::error(err, "detach the mxedge program already on " + ifname +
                                    (err == -EBUSY ? " (another running mxedge-dataplane holds it)" : ""));
    }
  }

  // A BPF link: closing it (or this process ending without a pin) detaches the program, and neither
  // closing nor updating it needs CAP_NET_ADMIN, so the running data plane does not keep that.
  auto create = [&](uint32_t flags) {
    bpf_link_create_opts opts{};
    opts.sz = sizeof(opts);
    opts.flags = flags;
    int fd = bpf_link_create(prog_fd(), static_cast<int>(ifindex), BPF_XDP, &opts);
    return fd < 0 ? -errno : fd;
  };
  std::string native_error;
  int fd = -1;
  bool native = false;
  if (mode != AttachMode::kGeneric) {
    fd = create(XDP_FLAGS_DRV_MODE);
    native = fd >= 0;
    if (fd < 0 && mode == AttachMode::kNative) return Status::error(fd, "attach XDP to " + ifname + " (native)");
    if (fd < 0) native_error = errno_text(fd);
  }
  if (fd < 0) {
    fd = create(XDP_FLAGS_SKB_MODE);
    if (fd < 0) return Status::error(fd, "attach XDP to " + ifname + " (generic)");
  }
  links_.push_back({{ifname, ifindex, native}, fd});
  // Pinned, the attachment outlives a crash (blocklists and flood limits keep applying while the
  // service restarts), and the next start replaces the program in it.
  const std::string path = link_pin_path(ifname);
  if (!path.empty() && bpf_obj_pin(fd, path.c_str()) != 0) {
    log::warning("xdp.link_pin_failed").kv("path", path).kv("error", errno_text(errno))
        .kv("detail", "attached; a crash will detach it");
  }
  auto line = log::info("xdp.attached");
  line.kv("ifname", ifname).kv("mode", native ? "native" : "generic");
  if (!path.empty()) line.kv("link", path);
  if (!native_error.empty()) line.kv("native_error", native_error);
  return Status();
}

Status XdpProgram::detach(std::string_view ifname) {
  auto it = std::find_if(links_.begin(), links_.end(), [&](const Link& l) { return l.attachment.ifname == ifname; });
  if (it == links_.end()) return Status::error(ENOENT, "detach: not attached to " + std::string(ifname));
  const Attachment a = it->attachment;
  const int fd = it->fd;
  links_.erase(it);
  // Unpinned first, so that a detach that fails half way does not leave a pin for the next start.
  const std::string path = link_pin_path(a.ifname);
  if (!path.empty() && unlink(path.c_str()) != 0 && errno != ENOENT) {
    log::warning("xdp.link_unpin_failed").kv("path", path).kv("error", errno_text(errno));
  }
  int err = bpf_link_detach(fd);
  close(fd);  // the last reference: the link is released (and detached, if the call above failed)
  if (err == -ENOLINK || err == -ENODEV) return Status();  // the interface is gone, and our program with it
  if (err) return Status::error(err, "detach XDP from " + a.ifname);
  log::info("xdp.detached").kv("ifname", a.ifname).kv("mode", a.native ? "native" : "generic");
  return Status();
}

std::vector<Attachment> XdpProgram::attachments() const {
  std::vector<Attachment> out;
  for (const auto& l : links_) out.push_back(l.attachment);
  return out;
}

Status XdpProgram::detach_all() {
  Status first;
  while (!links_.empty()) {
    Status s = detach(links_.back().attachment.ifname);
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

}  // namespace

Status XdpProgram::read_sources() {
  std::vector<std::pair<IpPrefix, uint32_t>> all;
  for (bool ipv4 : {true, false}) {
    std::vector<std::pair<IpPrefix, mxedge_prefix_value>> entries;
    if (auto s = read_trie(source_fd(ipv4), ipv4, "source lists", &entries); !s.ok()) return s;
    for (const auto& [prefix, value] : entries) all.emplace_back(prefix, value.flags);
  }
  return load_sources(all);
}

Status XdpProgram::write_source(const IpPrefix& p, uint32_t flags) {
  LpmKey key(p);
  mxedge_prefix_value value{flags};
  if (bpf_map_update_elem(source_fd(p.is_ipv4()), key.ptr, &value, BPF_ANY) != 0) {
    return Status::error(errno, "source lists: write " + p.to_string());
  }
  return Status();
}

Status XdpProgram::delete_source(const IpPrefix& p) {
  LpmKey key(p);
  if (bpf_map_delete_elem(source_fd(p.is_ipv4()), key.ptr) != 0) {
    return Status::error(errno, "source lists: remove " + p.to_string());
  }
  return Status();
}

Status XdpProgram::write_local(const IpPrefix& p) {
  LpmKey key(p);
  mxedge_prefix_value value{};
  if (bpf_map_update_elem(local_fd(p.is_ipv4()), key.ptr, &value, BPF_ANY) != 0) {
    return Status::error(errno, "local addresses: add " + p.to_string());
  }
  return Status();
}

Status XdpProgram::delete_local(const IpPrefix& p) {
  LpmKey key(p);
  if (bpf_map_delete_elem(local_fd(p.is_ipv4()), key.ptr) != 0) {
    return Status::error(errno, "local addresses: remove " + p.to_string());
  }
  return Status();
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

Status XdpProgram::write_config(const mxedge_config& config) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.config), &zero, &config, BPF_ANY) != 0) {
    return Status::error(errno, "write config map");
  }
  return Status();
}

// Every worker CPU gets a cpumap entry with qsize frames (an entry that already has that qsize is
// left as it is).
Status XdpProgram::prepare_workers(std::span<const unsigned> cpus, uint32_t qsize) {
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
  return Status();
}

Status XdpProgram::retire_workers(std::span<const unsigned> cpus) {
  int cpumap = bpf_map__fd(skel_->maps.worker_cpumap);
  for (uint32_t cpu = 0; cpu < std::min<unsigned>(possible_cpus(), MXEDGE_MAX_CPUS); ++cpu) {
    if (std::find(cpus.begin(), cpus.end(), cpu) != cpus.end()) continue;
    bpf_cpumap_val current{};
    if (bpf_map_lookup_elem(cpumap, &cpu, &current) != 0) continue;
    if (bpf_map_delete_elem(cpumap, &cpu) != 0)
      return Status::error(errno, "cpumap: remove CPU " + std::to_string(cpu));
  }
  return Status();
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
