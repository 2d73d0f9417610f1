#include "controlplane/resolver/dns_answer.h"
#include "controlplane/resolver/resolver.h"

#include <gtest/gtest.h>
#include <ldns/ldns.h>

#include <string>
#include <vector>

namespace mxedge::resolver {
namespace {

// Builds a response packet from presentation-format records, with ldns.
std::vector<uint8_t> packet(const std::string& qname, ldns_rr_type qtype, const std::vector<std::string>& answer,
                            const std::vector<std::string>& authority = {}, ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR) {
  ldns_pkt* p = nullptr;
  EXPECT_EQ(ldns_pkt_query_new_frm_str(&p, qname.c_str(), qtype, LDNS_RR_CLASS_IN, LDNS_RD), LDNS_STATUS_OK);
  ldns_pkt_set_qr(p, true);
  ldns_pkt_set_rcode(p, rcode);
  auto add = [&](const std::string& text, ldns_pkt_section section) {
    ldns_rr* rr = nullptr;
    EXPECT_EQ(ldns_rr_new_frm_str(&rr, text.c_str(), 3600, nullptr, nullptr), LDNS_STATUS_OK) << text;
    ldns_pkt_push_rr(p, section, rr);
  };
  for (const auto& t : answer) add(t, LDNS_SECTION_ANSWER);
  for (const auto& t : authority) add(t, LDNS_SECTION_AUTHORITY);
  uint8_t* wire = nullptr;
  size_t size = 0;
  EXPECT_EQ(ldns_pkt2wire(&wire, p, &size), LDNS_STATUS_OK);
  std::vector<uint8_t> out(wire, wire + size);
  free(wire);
  ldns_pkt_free(p);
  return out;
}

TEST(DnsAnswerTest, MxRecords) {
  auto wire = packet("example.test.", LDNS_RR_TYPE_MX,
                     {"example.test. 300 IN MX 10 MX1.Example.test.", "example.test. 200 IN MX 20 mx2.example.test."});
  ParsedAnswer a;
  std::string err;
  ASSERT_TRUE(parse_answer(wire, "Example.Test.", kTypeMx, &a, &err)) << err;
  ASSERT_EQ(a.mx.size(), 2u);
  EXPECT_EQ(a.mx[0], (MxRecord{10, "mx1.example.test"}));
  EXPECT_EQ(a.mx[1], (MxRecord{20, "mx2.example.test"}));
  EXPECT_EQ(a.canonical_name, "example.test");
  EXPECT_EQ(a.ttl, 200u);
  EXPECT_TRUE(a.cname_chain.empty());
}

TEST(DnsAnswerTest, NullMxTargetIsRoot) {
  auto wire = packet("null.test.", LDNS_RR_TYPE_MX, {"null.test. 300 IN MX 0 ."});
  ParsedAnswer a;
  std::string err;
  ASSERT_TRUE(parse_answer(wire, "null.test", kTypeMx, &a, &err)) << err;
  ASSERT_EQ(a.mx.size(), 1u);
  EXPECT_EQ(a.mx[0], (MxRecord{0, "."}));
}

TEST(DnsAnswerTest, CnameChainIsFollowedAndTtlIsTheSmallest) {
  auto wire = packet("mx.a.test.", LDNS_RR_TYPE_A,
                     {"mx.a.test. 600 IN CNAME mid.b.test.", "mid.b.test. 60 IN CNAME host.c.test.",
                      "host.c.test. 300 IN A 192.0.2.1", "host.c.test. 300 IN A 192.0.2.2",
                      "unrelated.test. 5 IN A 192.0.2.9"});
  ParsedAnswer a;
  std::string err;
  ASSERT_TRUE(parse_answer(wire, "mx.a.test", kTypeA, &a, &err)) << err;
  ASSERT_EQ(a.cname_chain.size(), 2u);
  EXPECT_EQ(a.cname_chain[0].owner, "mx.a.test");
  EXPECT_EQ(a.cname_chain[1].target, "host.c.test");
  EXPECT_EQ(a.canonical_name, "host.c.test");
  EXPECT_EQ(a.addresses, (std::vector<std::string>{"192.0.2.1", "192.0.2.2"}));
  EXPECT_EQ(a.ttl, 60u);
}

TEST(DnsAnswerTest, CnameLoopIsAnError) {
  auto wire = packet("a.test.", LDNS_RR_TYPE_A, {"a.test. 60 IN CNAME b.test.", "b.test. 60 IN CNAME a.test."});
  ParsedAnswer a;
  std::string err;
  EXPECT_FALSE(parse_answer(wire, "a.test", kTypeA, &a, &err));
  EXPECT_NE(err.find("CNAME loop"), std::string::npos) << err;
}

TEST(DnsAnswerTest, TlsaAndAaaa) {
  auto wire = packet("_25._tcp.mx.test.", LDNS_RR_TYPE_TLSA,
                     {"_25._tcp.mx.test. 300 IN TLSA 3 1 1 "
                      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                      "_25._tcp.mx.test. 300 IN TLSA 2 0 1 abcd"});
  ParsedAnswer a;
  std::string err;
  ASSERT_TRUE(parse_answer(wire, "_25._tcp.mx.test", kTypeTlsa, &a, &err)) << err;
  ASSERT_EQ(a.tlsa.size(), 2u);
  EXPECT_EQ(policy::to_presentation(a.tlsa[1]), "2 0 1 abcd");
  EXPECT_EQ(a.tlsa[0].data.size(), 32u);

  auto v6 = packet("mx.test.", LDNS_RR_TYPE_AAAA, {"mx.test. 300 IN AAAA 2001:db8::25"});
  ASSERT_TRUE(parse_answer(v6, "mx.test", kTypeAaaa, &a, &err)) << err;
  EXPECT_EQ(a.addresses, (std::vector<std::string>{"2001:db8::25"}));
}

TEST(DnsAnswerTest, TxtStringsAreJoined) {
  auto wire = packet("_mta-sts.example.test.", LDNS_RR_TYPE_TXT,
                     {"_mta-sts.example.test. 300 IN TXT \"v=STSv1; \" \"id=20160831085700Z;\"",
                      "_mta-sts.example.test. 300 IN TXT \"v=spf1 -all\""});
  ParsedAnswer a;
  std::string err;
  ASSERT_TRUE(parse_answer(wire, "_mta-sts.example.test", kTypeTxt, &a, &err)) << err;
  EXPECT_EQ(a.txt, (std::vector<std::string>{"v=STSv1; id=20160831085700Z;", "v=spf1 -all"}));
}

TEST(DnsAnswerTest, NegativeTtlComesFromTheSoa) {
  auto wire = packet("_25._tcp.mx.test.", LDNS_RR_TYPE_TLSA, {},
                     {"test. 900 IN SOA ns.test. host.test. 1 7200 3600 1209600 120"}, LDNS_RCODE_NOERROR);
  ParsedAnswer a;
  std::string err;
  ASSERT_TRUE(parse_answer(wire, "_25._tcp.mx.test", kTypeTlsa, &a, &err)) << err;
  EXPECT_TRUE(a.tlsa.empty());
  EXPECT_TRUE(a.has_ttl);
  EXPECT_EQ(a.ttl, 120u);
}

TEST(DnsAnswerTest, WrongClassIsRejected) {
  auto wire = packet("mx.test.", LDNS_RR_TYPE_A, {"mx.test. 300 CH A 192.0.2.1"});
  ParsedAnswer a;
  std::string err;
  EXPECT_FALSE(parse_answer(wire, "mx.test", kTypeA, &a, &err));
  EXPECT_NE(err.find("class"), std::string::npos) << err;
}

TEST(DnsAnswerTest, TruncatedAndGarbagePacketsGiveClearErrors) {
  auto wire = packet("mx.test.", LDNS_RR_TYPE_A, {"mx.test. 300 IN A 192.0.2.1"});
  ParsedAnswer a;
  std::string err;
  for (size_t cut : {size_t{0}, size_t{5}, size_t{12}, wire.size() - 3, wire.size() - 1}) {
    std::vector<uint8_t> t(wire.begin(), wire.begin() + static_cast<std::ptrdiff_t>(cut));
    EXPECT_FALSE(parse_answer(t, "mx.test", kTypeA, &a, &err)) << cut;
    EXPECT_NE(err.find("malformed"), std::string::npos) << err;
  }
  // A record whose rdlength says 4 but which carries 3 address bytes and then ends.
  std::vector<uint8_t> bad = wire;
  bad[bad.size() - 5] = 3;  // rdlength low byte: 4 -> 3
  bad.pop_back();
  EXPECT_FALSE(parse_answer(bad, "mx.test", kTypeA, &a, &err));
  // Random bytes after a plausible header.
  std::vector<uint8_t> junk{0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c, 0xff, 0xff, 0xff};
  EXPECT_FALSE(parse_answer(junk, "mx.test", kTypeA, &a, &err));
}

TEST(DnsAnswerTest, NormalizeName) {
  EXPECT_EQ(normalize_name("MX.Example.TEST."), "mx.example.test");
  EXPECT_EQ(normalize_name("."), ".");
  EXPECT_EQ(normalize_name(""), ".");
  EXPECT_EQ(normalize_name("a.test"), "a.test");
}

// How libunbound's answer becomes a status: the rules the DANE ladder depends on.
TEST(LookupResultTest, StatusFromLibunboundsAnswer) {
  auto data = packet("mx.test.", LDNS_RR_TYPE_A, {"mx.test. 300 IN A 192.0.2.1"});
  RawAnswer raw;
  raw.packet = data;
  raw.sec = RawAnswer::kSecure;
  auto r = make_lookup_result("MX.test.", kTypeA, raw);
  EXPECT_EQ(r->security, Security::kSecure);
  EXPECT_EQ(r->kind, AnswerKind::kData);
  EXPECT_EQ(r->qname, "mx.test");
  EXPECT_TRUE(r->secure_data());
  EXPECT_EQ(r->ttl, 300u);

  raw.sec = RawAnswer::kInsecure;
  EXPECT_EQ(make_lookup_result("mx.test", kTypeA, raw)->security, Security::kInsecure);

  // Bogus wins over everything, with the validator's reason.
  raw.sec = RawAnswer::kBogus;
  raw.rcode = 2;
  raw.why_bogus = "signature expired";
  r = make_lookup_result("mx.test", kTypeA, raw);
  EXPECT_EQ(r->security, Security::kBogus);
  EXPECT_EQ(r->why, "signature expired");

  // SERVFAIL that is not a validation failure: a failure, never "no data".
  raw.sec = RawAnswer::kInsecure;
  raw.why_bogus = nullptr;
  r = make_lookup_result("mx.test", kTypeA, raw);
  EXPECT_EQ(r->security, Security::kFailure);
  EXPECT_EQ(r->why, "SERVFAIL");
  raw.rcode = 5;
  EXPECT_EQ(make_lookup_result("mx.test", kTypeA, raw)->why, "REFUSED");

  // Secure denial: NXDOMAIN and NODATA, with the SOA's negative TTL.
  auto nx = packet("nosuch.test.", LDNS_RR_TYPE_TLSA, {}, {"test. 900 IN SOA ns.test. host.test. 1 7200 3600 1209600 60"},
                   LDNS_RCODE_NXDOMAIN);
  RawAnswer deny;
  deny.packet = nx;
  deny.sec = RawAnswer::kSecure;
  r = make_lookup_result("nosuch.test", kTypeTlsa, deny);
  EXPECT_TRUE(r->secure_denial());
  EXPECT_EQ(r->kind, AnswerKind::kNxDomain);
  EXPECT_EQ(r->ttl, 60u);
  auto nodata = packet("mx.test.", LDNS_RR_TYPE_TLSA, {}, {"test. 900 IN SOA ns.test. host.test. 1 7200 3600 1209600 60"});
  deny.packet = nodata;
  r = make_lookup_result("mx.test", kTypeTlsa, deny);
  EXPECT_EQ(r->kind, AnswerKind::kNoData);
  EXPECT_TRUE(r->secure_denial());

  // A secure-marked answer that does not parse is a failure, not data.
  std::vector<uint8_t> cut(data.begin(), data.end() - 2);
  raw = RawAnswer{};
  raw.packet = cut;
  raw.sec = RawAnswer::kSecure;
  r = make_lookup_result("mx.test", kTypeA, raw);
  EXPECT_EQ(r->security, Security::kFailure);
  EXPECT_NE(r->why.find("malformed"), std::string::npos);
  raw.packet = {};
  EXPECT_EQ(make_lookup_result("mx.test", kTypeA, raw)->security, Security::kFailure);
}

}  // namespace
}  // namespace mxedge::resolver
