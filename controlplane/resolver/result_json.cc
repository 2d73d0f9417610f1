#include "controlplane/resolver/result_json.h"

#include <sstream>

namespace mxedge::resolver {
namespace {

nlohmann::json hops_json(const std::vector<HopSecurity>& hops) {
  nlohmann::json out = nlohmann::json::array();
  for (const HopSecurity& h : hops)
    out.push_back({{"owner", h.owner}, {"target", h.target}, {"security", to_string(h.security)}});
  return out;
}

nlohmann::json address_json(const AddressAnswer& a) {
  return {{"security", to_string(a.security)},
          {"kind", to_string(a.kind)},
          {"addresses", a.addresses},
          {"canonical_name", a.canonical_name},
          {"cname_chain", hops_json(a.cname_chain)},
          {"why", a.why}};
}

}  // namespace

nlohmann::json to_json(const LookupResult& r) {
  nlohmann::json chain = nlohmann::json::array();
  for (const CnameHop& h : r.answer.cname_chain) chain.push_back({{"owner", h.owner}, {"target", h.target}});
  nlohmann::json records = nlohmann::json::array();
  for (const MxRecord& m : r.answer.mx) records.push_back(std::to_string(m.preference) + " " + m.exchange);
  for (const std::string& a : r.answer.addresses) records.push_back(a);
  for (const policy::TlsaRecord& t : r.answer.tlsa) records.push_back(policy::to_presentation(t));
  for (const std::string& t : r.answer.targets) records.push_back(t);
  for (const std::string& t : r.answer.txt) records.push_back(t);
  return {{"qname", r.qname},
          {"qtype", type_name(r.qtype)},
          {"security", to_string(r.security)},
          {"kind", to_string(r.kind)},
          {"why", r.why},
          {"ttl", r.ttl},
          {"canonical_name", r.answer.canonical_name},
          {"cname_chain", chain},
          {"records", records}};
}

nlohmann::json to_json(const DestinationResult& d) {
  nlohmann::json hosts = nlohmann::json::array();
  for (const MxHost& h : d.hosts) {
    nlohmann::json records = nlohmann::json::array();
    for (const TlsaRecordResult& t : h.tlsa.records) {
      records.push_back({{"record", policy::to_presentation(t.record)},
                         {"usable", t.usability == policy::TlsaUsability::kUsable},
                         {"usability", policy::to_string(t.usability)}});
    }
    hosts.push_back({{"name", h.name},
                     {"preference", h.preference},
                     {"address_security", to_string(h.address_security)},
                     {"address_why", h.address_why},
                     {"addresses", h.addresses()},
                     {"a", address_json(h.a)},
                     {"aaaa", address_json(h.aaaa)},
                     {"tlsa",
                      {{"state", to_string(h.tlsa.state)},
                       {"qname", h.tlsa.qname},
                       {"tried", h.tlsa.tried},
                       {"why", h.tlsa.why},
                       {"records", records}}},
                     {"dane", to_string(h.dane())}});
  }
  return {{"domain", d.domain},
          {"mx_state", to_string(d.mx_state)},
          {"mx_security", to_string(d.mx_security)},
          {"why", d.why},
          {"mx_cname_chain", hops_json(d.mx_cname_chain)},
          {"hosts", hosts},
          {"hosts_truncated", d.hosts_truncated},
          {"ttl", d.ttl}};
}

nlohmann::json to_json(const CacheStats& s) {
  return {{"hits", s.hits},         {"misses", s.misses}, {"expired", s.expired}, {"evictions", s.evictions},
          {"inserts", s.inserts},   {"entries", s.entries}, {"bytes", s.bytes}, {"hit_rate", s.hit_rate()}};
}

nlohmann::json to_json(const ResolverCounters& c) {
  return {{"lookups", c.lookups}, {"queries_started", c.queries_started}, {"coalesced", c.coalesced},
          {"timeouts", c.timeouts}, {"secure", c.secure}, {"insecure", c.insecure},
          {"bogus", c.bogus}, {"failure", c.failure}};
}

std::string to_text(const DestinationResult& d) {
  std::ostringstream o;
  o << d.domain << ": " << to_string(d.mx_state) << " (MX " << to_string(d.mx_security) << ")";
  if (!d.why.empty()) o << " - " << d.why;
  o << "\n";
  for (const MxHost& h : d.hosts) {
    o << "  " << h.preference << " " << h.name << "  addresses " << to_string(h.address_security);
    for (const std::string& a : h.addresses()) o << " " << a;
    o << "\n    TLSA " << to_string(h.tlsa.state);
    if (!h.tlsa.qname.empty()) o << " at " << h.tlsa.qname;
    if (!h.tlsa.why.empty()) o << " (" << h.tlsa.why << ")";
    o << "  => DANE " << to_string(h.dane()) << "\n";
    for (const TlsaRecordResult& t : h.tlsa.records) {
      o << "      " << policy::to_presentation(t.record) << "  [" << policy::to_string(t.usability) << "]\n";
    }
  }
  return o.str();
}

}  // namespace mxedge::resolver
