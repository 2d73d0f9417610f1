// Fuzz target: the record-parsing path of the resolver — a DNS answer packet as libunbound hands it
// over (ub_resolve_event's callback), read by make_lookup_result/parse_answer (ldns), and the TLSA usability checks.
// The first byte picks the question type; the rest is the packet. The question name is taken from
// the packet when it has one, so CNAME chains and owner matching are reachable.
#include <cstdint>
#include <string>

#include "controlplane/resolver/dns_answer.h"
#include "controlplane/resolver/resolver.h"
#include "policy/tlsa.h"

// ldns' headers redefine bool for C; they come after every C++ header.
#include <ldns/ldns.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxedge::resolver;
  if (size < 1) return 0;
  static constexpr uint16_t kTypes[] = {kTypeA, kTypeAaaa, kTypeMx, kTypeTlsa, kTypeCname, kTypeSoa, kTypeTxt};
  const uint16_t qtype = kTypes[data[0] % (sizeof kTypes / sizeof kTypes[0])];
  const uint8_t* pkt = data + 1;
  const size_t len = size - 1;

  std::string qname = "mx.test";
  ldns_pkt* parsed = nullptr;
  if (ldns_wire2pkt(&parsed, pkt, len) == LDNS_STATUS_OK) {
    const ldns_rr_list* q = ldns_pkt_question(parsed);
    if (q && ldns_rr_list_rr_count(q) > 0) {
      if (char* s = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(q, 0)))) {
        qname = s;
        free(s);
      }
    }
    ldns_pkt_free(parsed);
  }

  ParsedAnswer answer;
  std::string error;
  if (parse_answer({pkt, len}, qname, qtype, &answer, &error)) {
    for (const auto& t : answer.tlsa) {
      (void)mxedge::policy::classify(t);
      std::string err;
      auto back = mxedge::policy::parse_tlsa_presentation(mxedge::policy::to_presentation(t), &err);
      if (!t.data.empty() && (!back || !(*back == t))) __builtin_trap();  // presentation round trip
    }
  }

  // The same bytes as libunbound's answer, with each security status it can report.
  RawAnswer raw;
  raw.packet = {pkt, len};
  raw.sec = static_cast<RawAnswer::Sec>(data[0] / 8 % 3);
  raw.rcode = data[0] / 32 % 2 ? 2 : 0;
  auto result = make_lookup_result(qname, qtype, raw);
  if (!result) __builtin_trap();
  if (result->security == Security::kSecure && raw.sec != RawAnswer::kSecure) __builtin_trap();

  (void)mxedge::policy::parse_tlsa_rdata({pkt, len});
  std::string err;
  (void)mxedge::policy::parse_tlsa_presentation(std::string_view(reinterpret_cast<const char*>(pkt), len), &err);
  return 0;
}
