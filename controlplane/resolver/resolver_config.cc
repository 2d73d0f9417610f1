#include "controlplane/resolver/resolver_config.h"

#include "policy/duration.h"

namespace mxedge::resolver {
namespace {

using config::to_milliseconds;
std::chrono::seconds secs(const google::protobuf::Duration& d) { return std::chrono::seconds(d.seconds()); }

}  // namespace

ResolverOptions resolver_options(const config::v1::Resolver& c) {
  ResolverOptions o;
  o.trust_anchor_file = c.trust_anchor_file();
  o.root_hints_file = c.root_hints_file();
  o.forwarders.assign(c.forwarders().begin(), c.forwarders().end());
  o.query_timeout = to_milliseconds(c.query_timeout());
  o.retries = static_cast<int>(c.retries());
  o.edns_buffer_size = static_cast<int>(c.edns_buffer_size());
  o.cache_bytes = c.cache_size();
  o.max_ttl = secs(c.max_ttl());
  o.max_negative_ttl = secs(c.max_negative_ttl());
  o.bogus_ttl = secs(c.bogus_ttl());
  o.failure_ttl = secs(c.failure_ttl());
  o.root_stub.assign(c.root_servers().begin(), c.root_servers().end());
  o.nodefault_zones.assign(c.nodefault_zones().begin(), c.nodefault_zones().end());
  o.use_ipv6_transport = !c.has_ipv6_transport() || c.ipv6_transport();
  // Servers the operator names on loopback (a local unbound, a private root) must be reachable;
  // libunbound refuses 127.0.0.0/8 and ::1 otherwise.
  for (const auto* list : {&o.forwarders, &o.root_stub})
    for (const std::string& s : *list)
      if (s.starts_with("127.") || s.starts_with("::1")) o.allow_loopback_servers = true;
  return o;
}

DestinationOptions destination_options(const config::v1::Resolver& c) {
  DestinationOptions o;
  o.max_mx_hosts = c.max_mx_hosts();
  o.cache_bytes = c.cache_size() / 2;
  return o;
}

}  // namespace mxedge::resolver
