#include "controlplane/resolver/dns_answer.h"

#include <algorithm>
#include <cctype>
#include <memory>

// ldns' headers redefine bool for C; they come after every C++ header.
#include <ldns/ldns.h>

namespace mxedge::resolver {
namespace {

struct PktDeleter {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
struct CharDeleter {
  void operator()(char* p) const { free(p); }
};

std::string dname_text(const ldns_rdf* rdf) {
  if (!rdf || ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME) return {};
  std::unique_ptr<char, CharDeleter> s(ldns_rdf2str(rdf));
  return s ? normalize_name(s.get()) : std::string();
}

constexpr size_t kMaxChain = 16;

}  // namespace

std::string type_name(uint16_t type) {
  switch (type) {
    case kTypeA: return "A";
    case kTypeCname: return "CNAME";
    case kTypeSoa: return "SOA";
    case kTypeMx: return "MX";
    case kTypeTxt: return "TXT";
    case kTypeAaaa: return "AAAA";
    case kTypeTlsa: return "TLSA";
    default: return "TYPE" + std::to_string(type);
  }
}

std::string normalize_name(std::string_view name) {
  std::string s(name);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (s.size() > 1 && s.back() == '.' && (s.size() < 2 || s[s.size() - 2] != '\\')) s.pop_back();
  if (s.empty()) s = ".";
  return s;
}

bool parse_answer(std::span<const uint8_t> packet, std::string_view qname, uint16_t qtype, ParsedAnswer* out,
                  std::string* error) {
  *out = ParsedAnswer{};
  auto fail = [&](std::string msg) {
    if (error) *error = std::move(msg);
    return false;
  };
  if (packet.size() < 12) return fail("malformed DNS answer: " + std::to_string(packet.size()) + " bytes, shorter than a header");
  ldns_pkt* raw = nullptr;
  const ldns_status st = ldns_wire2pkt(&raw, packet.data(), packet.size());
  if (st != LDNS_STATUS_OK) return fail(std::string("malformed DNS answer: ") + ldns_get_errorstr_by_id(st));
  std::unique_ptr<ldns_pkt, PktDeleter> pkt(raw);
  out->rcode = ldns_pkt_get_rcode(pkt.get());

  const ldns_rr_list* answer = ldns_pkt_answer(pkt.get());
  const size_t n = answer ? ldns_rr_list_rr_count(answer) : 0;
  // Index the answer section once: owner names as text.
  struct Rr {
    const ldns_rr* rr;
    std::string owner;
    uint16_t type;
  };
  std::vector<Rr> rrs;
  rrs.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(answer, i);
    if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN)
      return fail("malformed DNS answer: record in class " + std::to_string(ldns_rr_get_class(rr)) + ", not IN");
    rrs.push_back({rr, dname_text(ldns_rr_owner(rr)), static_cast<uint16_t>(ldns_rr_get_type(rr))});
  }

  uint32_t ttl = UINT32_MAX;
  std::string name = normalize_name(qname);
  // Follow the CNAME chain (unless CNAME itself was asked for).
  while (qtype != kTypeCname) {
    auto it = std::find_if(rrs.begin(), rrs.end(), [&](const Rr& r) { return r.type == kTypeCname && r.owner == name; });
    if (it == rrs.end()) break;
    if (ldns_rr_rd_count(it->rr) != 1) return fail("malformed DNS answer: CNAME without a target");
    std::string target = dname_text(ldns_rr_rdf(it->rr, 0));
    if (target.empty()) return fail("malformed DNS answer: CNAME target is not a name");
    for (const CnameHop& h : out->cname_chain) {
      if (h.owner == target) return fail("CNAME loop at " + target);
    }
    if (target == name) return fail("CNAME loop at " + target);
    if (out->cname_chain.size() >= kMaxChain) return fail("CNAME chain longer than 16 hops");
    ttl = std::min(ttl, ldns_rr_ttl(it->rr));
    out->cname_chain.push_back({name, target});
    name = std::move(target);
  }
  out->canonical_name = name;

  for (const Rr& r : rrs) {
    if (r.type != qtype || r.owner != name) continue;
    ttl = std::min(ttl, ldns_rr_ttl(r.rr));
    const size_t rd = ldns_rr_rd_count(r.rr);
    switch (qtype) {
      case kTypeMx: {
        if (rd != 2 || ldns_rdf_get_type(ldns_rr_rdf(r.rr, 0)) != LDNS_RDF_TYPE_INT16)
          return fail("malformed MX record at " + name);
        std::string exchange = dname_text(ldns_rr_rdf(r.rr, 1));
        if (exchange.empty()) return fail("malformed MX record at " + name);
        out->mx.push_back({ldns_rdf2native_int16(ldns_rr_rdf(r.rr, 0)), std::move(exchange)});
        break;
      }
      case kTypeA:
      case kTypeAaaa: {
        const ldns_rdf* a = rd == 1 ? ldns_rr_rdf(r.rr, 0) : nullptr;
        const ldns_rdf_type want = qtype == kTypeA ? LDNS_RDF_TYPE_A : LDNS_RDF_TYPE_AAAA;
        if (!a || ldns_rdf_get_type(a) != want || ldns_rdf_size(a) != (qtype == kTypeA ? 4u : 16u))
          return fail("malformed " + type_name(qtype) + " record at " + name);
        std::unique_ptr<char, CharDeleter> s(ldns_rdf2str(a));
        if (!s) return fail("malformed " + type_name(qtype) + " record at " + name);
        out->addresses.emplace_back(s.get());
        break;
      }
      case kTypeTlsa: {
        if (rd != 4) return fail("malformed TLSA record at " + name);
        policy::TlsaRecord t;
        uint8_t* fields[] = {&t.usage, &t.selector, &t.mtype};
        for (size_t i = 0; i < 3; ++i) {
          const ldns_rdf* f = ldns_rr_rdf(r.rr, i);
          if (ldns_rdf_size(f) != 1) return fail("malformed TLSA record at " + name);
          *fields[i] = ldns_rdf_data(f)[0];
        }
        const ldns_rdf* d = ldns_rr_rdf(r.rr, 3);
        t.data.assign(ldns_rdf_data(d), ldns_rdf_data(d) + ldns_rdf_size(d));
        out->tlsa.push_back(std::move(t));
        break;
      }
      case kTypeTxt: {
        // RFC 7208 §3.3 / RFC 8461 §3.1: the character-strings of one record are concatenated.
        std::string text;
        for (size_t i = 0; i < rd; ++i) {
          const ldns_rdf* f = ldns_rr_rdf(r.rr, i);
          if (ldns_rdf_get_type(f) != LDNS_RDF_TYPE_STR || ldns_rdf_size(f) < 1 || ldns_rdf_data(f)[0] + 1u != ldns_rdf_size(f))
            return fail("malformed TXT record at " + name);
          text.append(reinterpret_cast<const char*>(ldns_rdf_data(f)) + 1, ldns_rdf_size(f) - 1);
        }
        out->txt.push_back(std::move(text));
        break;
      }
      case kTypeCname: {
        std::string target = rd == 1 ? dname_text(ldns_rr_rdf(r.rr, 0)) : std::string();
        if (target.empty()) return fail("malformed CNAME record at " + name);
        out->targets.push_back(std::move(target));
        break;
      }
      default: {
        std::unique_ptr<char, CharDeleter> s(ldns_rr2str_fmt(ldns_output_format_nocomments, r.rr));
        if (!s) return fail("malformed " + type_name(qtype) + " record at " + name);
        std::string text(s.get());
        while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\t')) text.pop_back();
        std::replace(text.begin(), text.end(), '\t', ' ');
        out->other.push_back(std::move(text));
        break;
      }
    }
  }

  if (ttl == UINT32_MAX) {
    // A denial: the SOA in the authority section gives the negative TTL (RFC 2308 §5).
    const ldns_rr_list* auth = ldns_pkt_authority(pkt.get());
    const size_t na = auth ? ldns_rr_list_rr_count(auth) : 0;
    for (size_t i = 0; i < na; ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(auth, i);
      if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA || ldns_rr_rd_count(rr) != 7) continue;
      const ldns_rdf* minimum = ldns_rr_rdf(rr, 6);
      if (ldns_rdf_size(minimum) != 4) continue;
      ttl = std::min(ldns_rr_ttl(rr), ldns_rdf2native_int32(minimum));
    }
  }
  if (ttl != UINT32_MAX) {
    out->ttl = ttl;
    out->has_ttl = true;
  }
  return true;
}

}  // namespace mxedge::resolver
