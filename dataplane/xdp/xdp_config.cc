// Config validation; see xdp_config.h.
#include "dataplane/xdp/xdp_config.h"

#include <net/if.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "bpf/mxedge_abi.h"
#include "dataplane/xdp/ip_prefix.h"

namespace mxedge::xdp {
namespace {

Status invalid(const std::string& what) { return Status::error(EINVAL, "xdp config: " + what); }

Status check_prefixes(const std::vector<std::string>& list, const char* field) {
  for (const auto& text : list) {
    if (!IpPrefix::parse(text)) {
      return invalid(std::string(field) + ": \"" + text +
                     "\" is not an IPv4/IPv6 address or prefix without host bits (e.g. 192.0.2.0/24)");
    }
  }
  return Status();
}

}  // namespace

Status validate(const XdpConfig& config) {
  std::set<std::string> names;
  for (const auto& ifname : config.interfaces) {
    if (ifname.empty() || ifname.size() >= IF_NAMESIZE) return invalid("interfaces: bad name \"" + ifname + "\"");
    if (!names.insert(ifname).second) return invalid("interfaces: \"" + ifname + "\" listed twice");
  }

  if (config.smtp_ports.empty()) return invalid("smtp_ports: empty");
  if (config.smtp_ports.size() > MXEDGE_MAX_SMTP_PORTS) {
    return invalid("smtp_ports: at most " + std::to_string(MXEDGE_MAX_SMTP_PORTS) + " ports");
  }
  std::set<uint16_t> ports;
  for (uint16_t port : config.smtp_ports) {
    if (port == 0) return invalid("smtp_ports: port 0");
    if (!ports.insert(port).second) return invalid("smtp_ports: " + std::to_string(port) + " listed twice");
  }

  if (auto s = check_prefixes(config.local_addresses, "local_addresses"); !s.ok()) return s;
  if (auto s = check_prefixes(config.allowlist, "allowlist"); !s.ok()) return s;
  if (auto s = check_prefixes(config.blocklist, "blocklist"); !s.ok()) return s;
  if (config.local_addresses.size() > 2 * MXEDGE_LOCAL_PREFIX_ENTRIES) return invalid("local_addresses: too many");

  if (config.syn_rate > 0 && config.syn_burst == 0) return invalid("syn_burst: must be at least 1");
  if (config.syn_rate > 1000000000u) return invalid("syn_rate: above 1e9 per second");
  if (config.new_source_syn_rate > 0) {
    if (config.new_source_syn_burst == 0) return invalid("new_source_syn_burst: must be at least 1");
    if (config.syn_rate == 0) return invalid("new_source_syn_rate: needs syn_rate > 0");
    if (config.new_source_syn_rate > 1000000000u) return invalid("new_source_syn_rate: above 1e9 per second");
  }

  if (config.worker_cpus.size() > MXEDGE_MAX_WORKERS) {
    return invalid("worker_cpus: at most " + std::to_string(MXEDGE_MAX_WORKERS) + " workers");
  }
  std::set<unsigned> cpus;
  for (unsigned cpu : config.worker_cpus) {
    if (cpu >= MXEDGE_MAX_CPUS) return invalid("worker_cpus: CPU " + std::to_string(cpu) + " out of range");
    if (!cpus.insert(cpu).second) return invalid("worker_cpus: CPU " + std::to_string(cpu) + " listed twice");
  }
  if (config.steering && config.cpumap_qsize == 0) return invalid("cpumap_qsize: must be at least 1");
  if (config.cpumap_qsize > 16384) return invalid("cpumap_qsize: above 16384");
  return Status();
}

}  // namespace mxedge::xdp
