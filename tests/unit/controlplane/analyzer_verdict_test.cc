// Unit tests for the connectivity analyzer's verdict (controlplane/analyzer/verdict.h): a compiled
// delivery policy judged against probe results, host by host and address by address.
#include <gtest/gtest.h>

#include <map>

#include "controlplane/analyzer/verdict.h"

namespace mxedge::analyzer {
namespace {

using policy::DestinationPolicy;
using policy::HostPolicy;
using policy::PolicyVerdict;
using policy::TlsRequirement;

HostPolicy host(const std::string& name, TlsRequirement tls, std::vector<std::string> addresses = {"192.0.2.1"}) {
  HostPolicy h;
  h.name = name;
  h.tls = tls;
  h.addresses = std::move(addresses);
  h.cleartext_allowed = tls == TlsRequirement::kMay;
  h.reason = "test";
  return h;
}

DestinationPolicy deliver(std::vector<HostPolicy> hosts) {
  DestinationPolicy p;
  p.domain = "example.test";
  p.connector = "c";
  p.verdict = PolicyVerdict::kDeliver;
  p.hosts = std::move(hosts);
  return p;
}

mgmt::v1::Probe tls_probe(const std::string& name, const std::string& address,
                          const std::string& dane = "not-applicable", const std::string& webpki = "failed",
                          const std::string& version = "TLSv1.3") {
  mgmt::v1::Probe p;
  p.set_host(name);
  p.set_address(address);
  p.set_port(25);
  p.set_connected(true);
  p.set_ehlo_ok(true);
  p.set_starttls_offered(true);
  p.set_tls(true);
  p.set_tls_version(version);
  p.set_cipher("TLS_AES_256_GCM_SHA384");
  p.set_dane(dane);
  if (dane == "failed") {
    p.set_dane_detail("no TLSA record matched");
    p.set_dane_result_type("validation-failure");
  }
  p.set_webpki(webpki);
  if (webpki == "failed") {
    p.set_webpki_detail("hostname mismatch");
    p.set_webpki_result_type("certificate-host-mismatch");
  }
  return p;
}

struct Probes {
  std::map<std::string, mgmt::v1::Probe> by_key;
  void add(mgmt::v1::Probe p) { by_key[p.host() + "|" + p.address()] = std::move(p); }
  ProbeLookup lookup() const {
    return [this](std::string_view h, std::string_view a) -> const mgmt::v1::Probe* {
      auto it = by_key.find(std::string(h) + "|" + std::string(a));
      return it == by_key.end() ? nullptr : &it->second;
    };
  }
};

TEST(AnalyzerVerdict, PolicyDeferAndBounceAreReportedAsTheyAre) {
  DestinationPolicy p;
  p.verdict = PolicyVerdict::kDefer;
  p.reason = "the MX answer failed DNSSEC validation";
  p.result_type = "dnssec-invalid";
  Probes probes;
  auto v = judge(p, probes.lookup(), true);
  EXPECT_EQ(v.policy(), "defer");
  EXPECT_EQ(v.outcome(), "defer");
  EXPECT_EQ(v.result_type(), "dnssec-invalid");
  EXPECT_FALSE(v.probed());
  p.verdict = PolicyVerdict::kBounce;
  EXPECT_EQ(judge(p, probes.lookup(), true).outcome(), "bounce");
}

TEST(AnalyzerVerdict, WithoutProbesTheFirstHostAndItsRequirementAreReported) {
  Probes probes;
  auto v =
      judge(deliver({host("mx1.example.test", TlsRequirement::kDane), host("mx2.example.test", TlsRequirement::kMay)}),
            probes.lookup(), false);
  EXPECT_EQ(v.outcome(), "deliver");
  EXPECT_FALSE(v.probed());
  EXPECT_EQ(v.host(), "mx1.example.test");
  EXPECT_EQ(v.requirement(), "dane");
  EXPECT_EQ(v.authentication(), "");
}

TEST(AnalyzerVerdict, DaneVerifiedDelivers) {
  Probes probes;
  auto pr = tls_probe("mx.example.test", "192.0.2.1", "verified");
  pr.set_dane_detail("TLSA 3 1 1 matched at depth 0");
  probes.add(pr);
  auto v = judge(deliver({host("mx.example.test", TlsRequirement::kDane)}), probes.lookup(), true);
  EXPECT_EQ(v.outcome(), "deliver");
  EXPECT_TRUE(v.probed());
  EXPECT_EQ(v.authentication(), "dane");
  EXPECT_EQ(v.tls_version(), "TLSv1.3");
  EXPECT_NE(v.reason().find("DANE-verified"), std::string::npos) << v.reason();
}

TEST(AnalyzerVerdict, DaneMismatchFallsBackToTheNextHostOrDefers) {
  Probes probes;
  probes.add(tls_probe("bad.example.test", "192.0.2.1", "failed"));
  probes.add(tls_probe("good.example.test", "192.0.2.2", "verified"));
  auto v = judge(deliver({host("bad.example.test", TlsRequirement::kDane, {"192.0.2.1"}),
                          host("good.example.test", TlsRequirement::kDane, {"192.0.2.2"})}),
                 probes.lookup(), true);
  EXPECT_EQ(v.outcome(), "deliver");
  EXPECT_EQ(v.host(), "good.example.test");
  ASSERT_EQ(v.attempts_size(), 1);
  EXPECT_NE(v.attempts(0).find("no TLSA record matched"), std::string::npos);

  auto only_bad =
      judge(deliver({host("bad.example.test", TlsRequirement::kDane, {"192.0.2.1"})}), probes.lookup(), true);
  EXPECT_EQ(only_bad.outcome(), "defer");
  EXPECT_EQ(only_bad.result_type(), "validation-failure");
}

TEST(AnalyzerVerdict, NoStartTlsMeansCleartextOnlyWhenAllowed) {
  Probes probes;
  mgmt::v1::Probe p = tls_probe("mx.example.test", "192.0.2.1");
  p.set_starttls_offered(false);
  p.set_tls(false);
  p.clear_tls_version();
  probes.add(p);
  auto may = judge(deliver({host("mx.example.test", TlsRequirement::kMay)}), probes.lookup(), true);
  EXPECT_EQ(may.outcome(), "deliver");
  EXPECT_EQ(may.authentication(), "cleartext");

  HostPolicy no_cleartext = host("mx.example.test", TlsRequirement::kMay);
  no_cleartext.cleartext_allowed = false;
  for (const HostPolicy& h : {no_cleartext, host("mx.example.test", TlsRequirement::kEncrypt),
                              host("mx.example.test", TlsRequirement::kDane)}) {
    auto v = judge(deliver({h}), probes.lookup(), true);
    EXPECT_EQ(v.outcome(), "defer") << policy::to_string(h.tls);
    EXPECT_EQ(v.result_type(), "starttls-not-supported");
  }
}

TEST(AnalyzerVerdict, WebPkiFailureDefersAnMtaStsHostButNotAnOpportunisticOne) {
  Probes probes;
  probes.add(tls_probe("mx.example.test", "192.0.2.1", "not-applicable", "failed"));
  auto sts = judge(deliver({host("mx.example.test", TlsRequirement::kWebPki)}), probes.lookup(), true);
  EXPECT_EQ(sts.outcome(), "defer");
  EXPECT_EQ(sts.result_type(), "certificate-host-mismatch");

  HostPolicy testing = host("mx.example.test", TlsRequirement::kMay);
  testing.sts_testing = true;
  auto v = judge(deliver({testing}), probes.lookup(), true);
  EXPECT_EQ(v.outcome(), "deliver");
  EXPECT_EQ(v.authentication(), "none");
  EXPECT_NE(v.reason().find("MTA-STS testing would report certificate-host-mismatch"), std::string::npos) << v.reason();
}

TEST(AnalyzerVerdict, HandshakeFailureAndOldTlsAreFailedAttempts) {
  Probes probes;
  mgmt::v1::Probe broken = tls_probe("mx.example.test", "192.0.2.1");
  broken.set_tls(false);
  broken.set_error("TLS handshake: alert handshake failure");
  probes.add(broken);
  probes.add(tls_probe("mx.example.test", "192.0.2.2", "not-applicable", "verified", "TLSv1.2"));
  HostPolicy h = host("mx.example.test", TlsRequirement::kMay, {"192.0.2.1", "192.0.2.2"});
  auto v = judge(deliver({h}), probes.lookup(), true);
  EXPECT_EQ(v.outcome(), "deliver");  // no cleartext retry after a failed handshake, but the next address works
  EXPECT_EQ(v.address(), "192.0.2.2");
  EXPECT_EQ(v.attempts_size(), 1);

  h.min_tls_version = 0x0304;
  auto strict = judge(deliver({h}), probes.lookup(), true);
  EXPECT_EQ(strict.outcome(), "defer");
  EXPECT_NE(strict.reason().find("below the connector's minimum TLSv1.3"), std::string::npos) << strict.reason();
}

TEST(AnalyzerVerdict, UnreachableAndUnprobedAddressesAreFailedAttempts) {
  Probes probes;
  mgmt::v1::Probe down;
  down.set_host("mx.example.test");
  down.set_address("192.0.2.1");
  down.set_error("connect: Connection refused");
  probes.add(down);
  auto v = judge(deliver({host("mx.example.test", TlsRequirement::kMay, {"192.0.2.1", "2001:db8::1"})}),
                 probes.lookup(), true);
  EXPECT_EQ(v.outcome(), "defer");
  ASSERT_EQ(v.attempts_size(), 2);
  EXPECT_NE(v.attempts(0).find("Connection refused"), std::string::npos);
  EXPECT_NE(v.attempts(1).find("[2001:db8::1]: not probed"), std::string::npos) << v.attempts(1);
}

TEST(AnalyzerVerdict, TlsVersionNumbers) {
  EXPECT_EQ(tls_version_number("TLSv1.3"), 0x0304);
  EXPECT_EQ(tls_version_number("TLSv1.2"), 0x0303);
  EXPECT_EQ(tls_version_number("SSLv3"), 0);
}

}  // namespace
}  // namespace mxedge::analyzer
