// Unit tests for the delivery policy's wire form (policy/policy_codec.h): round trip, and every
// validation rule refusing a bad push.
#include "policy/policy_codec.h"

#include <gtest/gtest.h>

#include <functional>

namespace mxedge::policy {
namespace {

namespace pb = mxedge::policy::v1;

DestinationPolicy sample() {
  DestinationPolicy p;
  p.domain = "example.test";
  p.connector = "default";
  p.dane_mode = ConnectorMode::kMandatory;
  p.sts_mode = ConnectorMode::kNone;
  p.verdict = PolicyVerdict::kDeliver;
  HostPolicy d;
  d.name = "mx1.example.test";
  d.preference = 10;
  d.addresses = {"192.0.2.1", "2001:db8::1"};
  d.tls = TlsRequirement::kDane;
  d.tlsa = {TlsaRecord{3, 1, 1, std::vector<uint8_t>(32, 7)}, TlsaRecord{2, 0, 2, std::vector<uint8_t>(64, 9)}};
  d.dane_names = {"mx1.provider.test", "mx1.example.test"};
  d.min_tls_version = 0x0304;
  d.reason = "DANE";
  HostPolicy m;
  m.name = "mx2.example.test";
  m.preference = 20;
  m.addresses = {"192.0.2.2"};
  m.tls = TlsRequirement::kMay;
  m.cleartext_allowed = true;
  m.sts_testing = true;
  m.port = 587;
  p.hosts = {d, m};
  p.excluded = {{"mx3.example.test", "TLSA bogus", "dnssec-invalid"}};
  p.dnssec = "secure";
  p.sts = "testing";
  p.sts_id = "abc";
  p.sts_mx = {"*.example.test"};
  p.expires_at = 1'700'000'300;
  p.version = 42;
  return p;
}

TEST(PolicyCodec, RoundTripKeepsEveryField) {
  const DestinationPolicy p = sample();
  pb::DestinationPolicy m;
  to_proto(p, &m);
  std::string wire;
  ASSERT_TRUE(m.SerializeToString(&wire));
  pb::DestinationPolicy back_m;
  ASSERT_TRUE(back_m.ParseFromString(wire));
  std::string error;
  auto back = from_proto(back_m, &error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(back->domain, p.domain);
  EXPECT_EQ(back->dane_mode, ConnectorMode::kMandatory);
  EXPECT_EQ(back->sts_mode, ConnectorMode::kNone);
  ASSERT_EQ(back->hosts.size(), 2u);
  EXPECT_EQ(back->hosts[0].tlsa, p.hosts[0].tlsa);
  EXPECT_EQ(back->hosts[0].dane_names, p.hosts[0].dane_names);
  EXPECT_EQ(back->hosts[0].addresses, p.hosts[0].addresses);
  EXPECT_EQ(back->hosts[0].min_tls_version, 0x0304);
  EXPECT_EQ(back->hosts[1].tls, TlsRequirement::kMay);
  EXPECT_TRUE(back->hosts[1].cleartext_allowed);
  EXPECT_TRUE(back->hosts[1].sts_testing);
  EXPECT_EQ(back->hosts[1].port, 587);
  EXPECT_EQ(back->hosts[0].port, 25);
  ASSERT_EQ(back->excluded.size(), 1u);
  EXPECT_EQ(back->excluded[0].result_type, "dnssec-invalid");
  EXPECT_EQ(back->sts_mx, p.sts_mx);
  EXPECT_EQ(back->expires_at, p.expires_at);
  EXPECT_EQ(back->version, 42u);
}

struct BadCase {
  const char* name;
  std::function<void(pb::DestinationPolicy&)> mutate;
  const char* error;
};

TEST(PolicyCodec, InvalidPoliciesAreRefusedWithTheReason) {
  const BadCase cases[] = {
      {"empty domain", [](auto& m) { m.set_domain(""); }, "invalid domain"},
      {"upper case domain", [](auto& m) { m.set_domain("Example.test"); }, "invalid domain"},
      {"unknown dane mode", [](auto& m) { m.set_dane_mode(static_cast<pb::ConnectorMode>(9)); }, "dane_mode 9 unknown"},
      {"unspecified verdict", [](auto& m) { m.set_verdict(pb::VERDICT_UNSPECIFIED); }, "verdict 0 unknown"},
      {"deliver without hosts", [](auto& m) { m.clear_hosts(); }, "verdict deliver without hosts"},
      {"defer with hosts", [](auto& m) { m.set_verdict(pb::VERDICT_DEFER); }, "hosts given with verdict defer"},
      {"bad address", [](auto& m) { m.mutable_hosts(0)->set_addresses(0, "mx.example.test"); }, "is not an IP address"},
      {"no address", [](auto& m) { m.mutable_hosts(1)->clear_addresses(); }, "hosts[1]: needs 1 to 256 addresses"},
      {"unknown tls", [](auto& m) { m.mutable_hosts(0)->set_tls(static_cast<pb::TlsRequirement>(77)); }, "tls requirement 77 unknown"},
      {"dane without tlsa", [](auto& m) { m.mutable_hosts(0)->clear_tlsa(); }, "DANE requirement without TLSA records"},
      {"dane without names", [](auto& m) { m.mutable_hosts(0)->clear_dane_names(); }, "DANE requirement without TLSA records or names"},
      {"tlsa on a may host", [](auto& m) { *m.mutable_hosts(1)->add_tlsa() = m.hosts(0).tlsa(0); }, "TLSA records without a DANE requirement"},
      {"unusable tlsa", [](auto& m) { m.mutable_hosts(0)->mutable_tlsa(0)->set_usage(1); }, "hosts[0].tlsa[0]: not usable"},
      {"short digest", [](auto& m) { m.mutable_hosts(0)->mutable_tlsa(0)->set_data(std::string(20, 'x')); }, "not usable"},
      {"usage out of range", [](auto& m) { m.mutable_hosts(0)->mutable_tlsa(0)->set_usage(300); }, "field out of range"},
      {"tls 1.1", [](auto& m) { m.mutable_hosts(0)->set_min_tls_version(0x0302); }, "min_tls_version must be TLS 1.2 or 1.3"},
      {"cleartext with webpki", [](auto& m) { m.mutable_hosts(1)->set_tls(pb::TLS_REQUIREMENT_WEBPKI); }, "cleartext allowed with a TLS requirement"},
      {"preference", [](auto& m) { m.mutable_hosts(0)->set_preference(70000); }, "preference out of range"},
      {"port", [](auto& m) { m.mutable_hosts(0)->set_port(70000); }, "port out of range"},
      {"no expiry", [](auto& m) { m.set_expires_at(0); }, "no expiry"},
      {"host name with space", [](auto& m) { m.mutable_hosts(0)->set_name("mx 1"); }, "invalid host name"},
  };
  for (const auto& c : cases) {
    pb::DestinationPolicy m;
    to_proto(sample(), &m);
    c.mutate(m);
    std::string error;
    EXPECT_FALSE(from_proto(m, &error)) << c.name;
    EXPECT_NE(error.find(c.error), std::string::npos) << c.name << ": " << error;
  }
}

}  // namespace
}  // namespace mxedge::policy
