// The backend-neutral data-plane API; see fast_path.h.
#include "dataplane/xdp/fast_path.h"

#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

namespace mxedge::xdp {
namespace {

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

uint32_t list_bit(PrefixList list) {
  return list == PrefixList::kAllow ? MXEDGE_PREFIX_IN_ALLOW : MXEDGE_PREFIX_IN_BLOCK;
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
  n += packets(MXEDGE_CTR_DROP_NEW_SOURCE);
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
    case MXEDGE_CTR_DROP_NEW_SOURCE:
      return "drop_new_source";
    default:
      break;
  }
  if (index >= MXEDGE_CTR_STEERED_WORKER0 && index < MXEDGE_CTR_COUNT) {
    return "steered_worker_" + std::to_string(index - MXEDGE_CTR_STEERED_WORKER0);
  }
  return "unused_" + std::to_string(index);
}

FastPath::~FastPath() = default;

unsigned FastPath::possible_cpus() {
  int n = libbpf_num_possible_cpus();
  return n > 0 ? static_cast<unsigned>(n) : 1u;
}

Status FastPath::apply(const XdpConfig& config) {
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
  if (auto s = set_new_source_limit(config.new_source_syn_rate, config.new_source_syn_burst); !s.ok()) return s;
  if (auto s = set_workers(config.worker_cpus, config.cpumap_qsize); !s.ok()) return s;
  return set_steering(config.steering);
}

Status FastPath::load_sources(const std::vector<std::pair<IpPrefix, uint32_t>>& entries) {
  sources_.clear();
  for (const auto& [prefix, flags] : entries) {
    sources_[prefix] = {flags & (MXEDGE_PREFIX_IN_ALLOW | MXEDGE_PREFIX_IN_BLOCK), flags};
  }
  return Status();
}

// Recomputes ALLOWED/BLOCKED for `prefix` and every listed prefix inside it, and writes the entries
// whose flags changed. An entry is allowed (blocked) when it or a listed prefix containing it is on
// the allowlist (blocklist).
Status FastPath::refresh_sources_under(const IpPrefix& prefix) {
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
    if (auto s = write_source(p, flags); !s.ok()) {
      return Status::error(s.err(), "source lists: write " + p.to_string());
    }
    it->second.written = flags;
  }
  return Status();
}

Status FastPath::change_source(PrefixList list, std::string_view text, bool add) {
  auto prefix = IpPrefix::parse(text);
  if (!prefix) {
    return Status::error(EINVAL, std::string(list_name(list)) + ": bad prefix \"" + std::string(text) + "\"");
  }
  const uint32_t bit = list_bit(list);
  auto it = sources_.find(*prefix);
  if (add) {
    if (it == sources_.end()) {
      // A new entry enters the table with its final flags (refresh writes it first, then the
      // entries inside it); if the table is full it was never written and is forgotten again.
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
    if (auto s = delete_source(*prefix); !s.ok() && s.err() != ENOENT) {
      return Status::error(s.err(), std::string(list_name(list)) + ": remove " + prefix->to_string());
    }
    sources_.erase(it);
  }
  return refresh_sources_under(*prefix);
}

Status FastPath::add_prefix(PrefixList list, std::string_view text) {
  if (auto s = require_loaded("add_prefix"); !s.ok()) return s;
  if (list != PrefixList::kLocal) return change_source(list, text, true);
  auto prefix = IpPrefix::parse(text);
  if (!prefix) return Status::error(EINVAL, "local addresses: bad prefix \"" + std::string(text) + "\"");
  if (auto s = write_local(*prefix); !s.ok()) {
    return Status::error(s.err(), "local addresses: add " + prefix->to_string());
  }
  return refresh_local_mode();
}

Status FastPath::remove_prefix(PrefixList list, std::string_view text) {
  if (auto s = require_loaded("remove_prefix"); !s.ok()) return s;
  if (list != PrefixList::kLocal) return change_source(list, text, false);
  auto prefix = IpPrefix::parse(text);
  if (!prefix) return Status::error(EINVAL, "local addresses: bad prefix \"" + std::string(text) + "\"");
  if (auto s = delete_local(*prefix); !s.ok()) {
    return Status::error(s.err(), "local addresses: remove " + prefix->to_string());
  }
  return refresh_local_mode();
}

Status FastPath::list_prefixes(PrefixList list, std::vector<IpPrefix>* out) const {
  if (auto s = require_loaded("list_prefixes"); !s.ok()) return s;
  if (list == PrefixList::kLocal) {
    if (auto s = list_local(out); !s.ok()) return Status::error(s.err(), "local addresses: list");
    return Status();
  }
  out->clear();
  for (const auto& [prefix, entry] : sources_) {
    if (entry.lists & list_bit(list)) out->push_back(prefix);
  }
  return Status();
}

// How the fast path finds local addresses: any (none listed), inline in the config (a few single
// addresses), or the LPM table.
Status FastPath::refresh_local_mode() {
  std::vector<IpPrefix> all;
  if (auto s = list_local(&all); !s.ok()) return Status::error(s.err(), "local addresses: list");
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
    return publish_config();
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
  return publish_config();
}

Status FastPath::set_local_addresses(std::span<const std::string> texts) {
  if (auto s = require_loaded("set_local_addresses"); !s.ok()) return s;
  std::vector<IpPrefix> wanted;
  for (const auto& t : texts) {
    auto p = IpPrefix::parse(t);
    if (!p) return Status::error(EINVAL, "local addresses: bad prefix \"" + t + "\"");
    wanted.push_back(*p);
  }
  std::vector<IpPrefix> current;
  if (auto s = list_local(&current); !s.ok()) return Status::error(s.err(), "local addresses: list");
  // Add first, then remove: the set never shrinks below the intersection while it changes.
  for (const auto& p : wanted) {
    if (auto s = write_local(p); !s.ok()) return Status::error(s.err(), "local addresses: add " + p.to_string());
  }
  for (const auto& p : current) {
    if (std::find(wanted.begin(), wanted.end(), p) != wanted.end()) continue;
    if (auto s = delete_local(p); !s.ok()) return Status::error(s.err(), "local addresses: remove " + p.to_string());
  }
  return refresh_local_mode();
}

namespace {

// A rate (per second) and burst as the GCRA interval and tolerance the classifier keeps
// (rate_limit.h); rate 0 turns the budget off (both 0). `what` names the budget in errors.
Status gcra_budget(const char* what, uint32_t per_second, uint32_t burst, uint64_t* interval_ns, uint64_t* burst_ns) {
  if (per_second > 0 && burst == 0) return Status::error(EINVAL, std::string(what) + ": burst must be at least 1");
  if (per_second > 1000000000u) return Status::error(EINVAL, std::string(what) + ": above 1e9 per second");
  if (per_second == 0) {
    *interval_ns = 0;
    *burst_ns = 0;
  } else {
    *interval_ns = (1000000000ull + per_second / 2) / per_second;
    *burst_ns = (static_cast<uint64_t>(burst) - 1) * *interval_ns;
  }
  return Status();
}

}  // namespace

Status FastPath::set_rate_limit(uint32_t syn_per_second, uint32_t burst) {
  if (auto s = require_loaded("set_rate_limit"); !s.ok()) return s;
  uint64_t interval = 0, tolerance = 0;
  if (auto s = gcra_budget("rate limit", syn_per_second, burst, &interval, &tolerance); !s.ok()) return s;
  config_.syn_interval_ns = interval;
  config_.syn_burst_ns = tolerance;
  return publish_config();
}

Status FastPath::set_new_source_limit(uint32_t per_second, uint32_t burst) {
  if (auto s = require_loaded("set_new_source_limit"); !s.ok()) return s;
  uint64_t interval = 0, tolerance = 0;
  if (auto s = gcra_budget("new-source limit", per_second, burst, &interval, &tolerance); !s.ok()) return s;
  config_.new_source_interval_ns = interval;
  config_.new_source_burst_ns = tolerance;
  return publish_config();
}

Status FastPath::set_smtp_ports(std::span<const uint16_t> ports) {
  if (auto s = require_loaded("set_smtp_ports"); !s.ok()) return s;
  if (ports.size() > MXEDGE_MAX_SMTP_PORTS) return Status::error(E2BIG, "smtp ports: more than 8");
  std::set<uint16_t> seen;
  for (uint16_t p : ports) {
    if (p == 0 || !seen.insert(p).second) return Status::error(EINVAL, "smtp ports: 0 or duplicate");
  }
  std::fill(std::begin(config_.smtp_ports), std::end(config_.smtp_ports), uint16_t{0});
  std::copy(ports.begin(), ports.end(), config_.smtp_ports);
  return publish_config();
}

Status FastPath::set_workers(std::span<const unsigned> cpus, uint32_t qsize) {
  if (auto s = require_loaded("set_workers"); !s.ok()) return s;
  if (cpus.size() > MXEDGE_MAX_WORKERS) return Status::error(E2BIG, "workers: more than 64");
  const unsigned possible = possible_cpus();
  std::set<unsigned> wanted;
  for (unsigned cpu : cpus) {
    if (cpu >= MXEDGE_MAX_CPUS || cpu >= possible) {
      return Status::error(EINVAL, "workers: CPU " + std::to_string(cpu) + " does not exist");
    }
    if (!wanted.insert(cpu).second) return Status::error(EINVAL, "workers: CPU " + std::to_string(cpu) + " twice");
  }
  if (!cpus.empty() && (qsize == 0 || qsize > 16384)) return Status::error(EINVAL, "workers: qsize not in 1..16384");

  if (auto s = prepare_workers(cpus, qsize); !s.ok()) return s;
  std::fill(std::begin(config_.worker_cpus), std::end(config_.worker_cpus), 0u);
  std::copy(cpus.begin(), cpus.end(), config_.worker_cpus);
  config_.worker_count = static_cast<uint32_t>(cpus.size());
  if (auto s = publish_config(); !s.ok()) return s;
  // Now that no packet is steered there any more, drop the queues of CPUs that left the set.
  return retire_workers(cpus);
}

Status FastPath::set_steering(bool on) {
  if (auto s = require_loaded("set_steering"); !s.ok()) return s;
  if (on) {
    config_.flags |= MXEDGE_CFG_STEERING;
  } else {
    config_.flags &= ~MXEDGE_CFG_STEERING;
  }
  return publish_config();
}

}  // namespace mxedge::xdp
