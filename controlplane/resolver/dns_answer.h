// Record-level reading of a DNS answer packet (wire format, as libunbound returns it) with ldns:
// the CNAME chain from the question name, the final RRset's records (MX, A/AAAA, TLSA, CNAME, TXT; other
// types as text), the
// TTL, and the negative-caching TTL of a denial (RFC 2308). Malformed input never crashes; it gives
// a clear error instead.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policy/tlsa.h"

namespace mxedge::resolver {

// DNS types the resolver asks for.
enum RrType : uint16_t {
  kTypeA = 1,
  kTypeCname = 5,
  kTypeSoa = 6,
  kTypeMx = 15,
  kTypeTxt = 16,
  kTypeAaaa = 28,
  kTypeTlsa = 52,
};
std::string type_name(uint16_t type);

struct MxRecord {
  uint16_t preference = 0;
  std::string exchange;  // normalized name; "." for the null MX target
  bool operator==(const MxRecord&) const = default;
};

struct CnameHop {
  std::string owner;
  std::string target;
};

struct ParsedAnswer {
  int rcode = 0;
  std::vector<CnameHop> cname_chain;  // in order from the question name
  std::string canonical_name;         // the question name after following the chain
  // Records of the question type at the canonical name.
  std::vector<MxRecord> mx;
  std::vector<std::string> addresses;  // A / AAAA in text form
  std::vector<policy::TlsaRecord> tlsa;
  std::vector<std::string> targets;  // CNAME rdata when the question type is CNAME
  std::vector<std::string> txt;      // TXT records, each with its character-strings joined
  // Records of any other question type (SOA, DNSKEY, DS, ...), each in presentation format without
  // comments: "owner. TTL IN TYPE rdata" (the DNSSEC wizard reads DNSKEY and DS this way).
  std::vector<std::string> other;
  // Smallest TTL of the chain and the final RRset; for a denial, the SOA's negative TTL
  // (min(SOA TTL, SOA MINIMUM)); 0 when the packet carries neither.
  uint32_t ttl = 0;
  bool has_ttl = false;
};

// Lower case, no trailing dot, "." for the root. Escapes from presentation format are kept.
std::string normalize_name(std::string_view name);

// Reads `packet`, the answer to (`qname`, `qtype`, class IN). Returns false with `error` set when the
// packet does not parse, a record in the answer has another class, a record's rdata is not what its
// type requires, or the CNAME chain loops or exceeds 16 hops.
bool parse_answer(std::span<const uint8_t> packet, std::string_view qname, uint16_t qtype, ParsedAnswer* out,
                  std::string* error);

}  // namespace mxedge::resolver
