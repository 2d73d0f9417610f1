// Unit tests for policy compilation (controlplane/policy_compiler): every connector mode against every
// destination state — the table of issue #6, row by row.
#include "controlplane/policy_compiler/compiler.h"

#include <gtest/gtest.h>

#include "controlplane/policy_compiler/policy_json.h"

namespace mxedge::policy_compiler {
namespace {

using policy::PolicyVerdict;
using policy::TlsRequirement;
using resolver::DestinationResult;
using resolver::MxHost;
using resolver::MxState;
using resolver::Security;
using resolver::TlsaState;
namespace v1 = config::v1;

constexpr int64_t kNow = 1'700'000'000;

policy::TlsaRecord record(uint8_t usage, uint8_t selector, uint8_t mtype, size_t len = 32) {
  return policy::TlsaRecord{usage, selector, mtype, std::vector<uint8_t>(len, 0xab)};
}

MxHost host(const std::string& name, uint16_t pref, Security addr, TlsaState tlsa, std::vector<policy::TlsaRecord> records = {}) {
  MxHost h;
  h.name = name;
  h.preference = pref;
  h.address_security = addr;
  h.a.security = addr;
  if (addr == Security::kSecure || addr == Security::kInsecure) h.a.addresses = {"127.0.0.10"};
  h.tlsa.state = tlsa;
  h.tlsa.qname = "_25._tcp." + name;
  for (auto& r : records) h.tlsa.records.push_back({r, policy::classify(r)});
  if (tlsa == TlsaState::kBogus) h.tlsa.why = "signature expired";
  return h;
}

DestinationResult dest(std::vector<MxHost> hosts, Security mx = Security::kSecure) {
  DestinationResult d;
  d.domain = "example.test";
  d.mx_state = MxState::kRecords;
  d.mx_security = mx;
  d.hosts = std::move(hosts);
  d.ttl = 300;
  return d;
}

v1::Connector connector(v1::ConnectorMode dane, v1::ConnectorMode sts, bool cleartext = true) {
  v1::Connector c;
  c.set_name("test");
  c.mutable_domains()->Add()->assign("*");
  c.set_dane_mode(dane);
  c.set_mta_sts_mode(sts);
  c.set_min_tls_version("TLSv1.2");
  c.set_allow_cleartext(cleartext);
  return c;
}

const v1::ConnectorMode kNone = v1::CONNECTOR_MODE_NONE;
const v1::ConnectorMode kOpp = v1::CONNECTOR_MODE_OPPORTUNISTIC;
const v1::ConnectorMode kMand = v1::CONNECTOR_MODE_MANDATORY;

mta_sts::StsResult sts_policy(policy::StsMode mode, std::vector<std::string> mx) {
  mta_sts::StsResult r;
  r.kind = mta_sts::StsResult::kPolicy;
  r.domain = "example.test";
  r.id = "id1";
  r.policy.mode = mode;
  r.policy.max_age = 86400;
  r.policy.mx = std::move(mx);
  return r;
}

mta_sts::StsResult sts_kind(mta_sts::StsResult::Kind kind, std::string reason) {
  mta_sts::StsResult r;
  r.kind = kind;
  r.domain = "example.test";
  r.reason = std::move(reason);
  return r;
}

policy::DestinationPolicy run(const v1::Connector& c, const DestinationResult& d, const mta_sts::StsResult* sts = nullptr,
                              int64_t sts_expires = 0) {
  auto p = compile(c, d.domain, d, StsInput{sts, sts_expires}, kNow);
  // Every policy renders; the JSON is what mxedge-resolve --policy prints.
  EXPECT_EQ(to_json(p)["verdict"], std::string(policy::to_string(p.verdict)));
  EXPECT_FALSE(to_text(p).empty());
  return p;
}

// ---- DANE opportunistic (the default) ----

TEST(PolicyCompiler, APolicyNeverOutlivesTheDnsDataItWasMadeFrom) {
  auto d = dest({host("mx1.example.test", 10, Security::kSecure, TlsaState::kUsable, {record(3, 1, 1)})});
  d.ttl = 0;  // the records expire now
  EXPECT_EQ(run(connector(kOpp, kOpp), d).expires_at, kNow);
  d.ttl = 7;
  EXPECT_EQ(run(connector(kOpp, kOpp), d).expires_at, kNow + 7);
}

TEST(PolicyCompiler, UsableTlsaRequiresDaneWithOnlyTheUsableRecords) {
  auto d = dest({host("mx1.example.test", 10, Security::kSecure, TlsaState::kUsable, {record(3, 1, 1), record(1, 1, 1), record(3, 1, 1, 20)})});
  auto p = run(connector(kOpp, kOpp), d);
  ASSERT_EQ(p.verdict, PolicyVerdict::kDeliver);
  ASSERT_EQ(p.hosts.size(), 1u);
  const auto& h = p.hosts[0];
  EXPECT_EQ(h.tls, TlsRequirement::kDane);
  ASSERT_EQ(h.tlsa.size(), 1u);  // PKIX-EE and the wrong-length digest are not handed to OpenSSL
  EXPECT_EQ(h.tlsa[0], record(3, 1, 1));
  EXPECT_EQ(h.dane_names, std::vector<std::string>{"mx1.example.test"});
  EXPECT_FALSE(h.cleartext_allowed);
  EXPECT_EQ(p.expires_at, kNow + 300);
  EXPECT_EQ(p.dnssec, "secure");
}

TEST(PolicyCompiler, CnameExpandedTlsaBaseComesFirstInTheDaneNames) {
  auto h = host("mx.example.test", 10, Security::kSecure, TlsaState::kUsable, {record(2, 1, 1)});
  h.tlsa.qname = "_25._tcp.mx1.provider.test";
  auto p = run(connector(kOpp, kOpp), dest({h}));
  ASSERT_EQ(p.hosts.size(), 1u);
  EXPECT_EQ(p.hosts[0].dane_names, (std::vector<std::string>{"mx1.provider.test", "mx.example.test"}));
}

TEST(PolicyCompiler, AllUnusableTlsaRequiresTlsWithoutAuthentication) {
  auto p = run(connector(kOpp, kOpp), dest({host("mx.example.test", 10, Security::kSecure, TlsaState::kAllUnusable, {record(0, 0, 1)})}));
  ASSERT_EQ(p.verdict, PolicyVerdict::kDeliver);
  EXPECT_EQ(p.hosts[0].tls, TlsRequirement::kEncrypt);
  EXPECT_FALSE(p.hosts[0].cleartext_allowed);
}

TEST(PolicyCompiler, InsecureOrDeniedTlsaFallsThroughToOpportunisticTls) {
  for (auto [addr, tlsa] : {std::pair{Security::kInsecure, TlsaState::kNotLooked}, std::pair{Security::kSecure, TlsaState::kSecureDenial},
                            std::pair{Security::kSecure, TlsaState::kInsecure}}) {
    auto p = run(connector(kOpp, kOpp), dest({host("mx.example.test", 10, addr, tlsa)}, Security::kInsecure));
    ASSERT_EQ(p.verdict, PolicyVerdict::kDeliver);
    EXPECT_EQ(p.hosts[0].tls, TlsRequirement::kMay);
    EXPECT_TRUE(p.hosts[0].cleartext_allowed);
    EXPECT_EQ(p.dnssec, "insecure");
  }
}

TEST(PolicyCompiler, BogusTlsaTakesTheHostOutAndOthersAreStillUsed) {
  auto p = run(connector(kOpp, kOpp), dest({host("mx1.example.test", 10, Security::kSecure, TlsaState::kBogus),
                                            host("mx2.example.test", 20, Security::kSecure, TlsaState::kUsable, {record(3, 1, 1)})}));
  ASSERT_EQ(p.verdict, PolicyVerdict::kDeliver);
  ASSERT_EQ(p.hosts.size(), 1u);
  EXPECT_EQ(p.hosts[0].name, "mx2.example.test");
  ASSERT_EQ(p.excluded.size(), 1u);
  EXPECT_EQ(p.excluded[0].name, "mx1.example.test");
  EXPECT_EQ(p.excluded[0].result_type, "dnssec-invalid");
  EXPECT_NE(p.excluded[0].reason.find("signature expired"), std::string::npos) << p.excluded[0].reason;
}

TEST(PolicyCompiler, BogusOrFailedTlsaOnEveryHostDefersNeverDowngrades) {
  auto bogus = run(connector(kOpp, kOpp), dest({host("mx.example.test", 10, Security::kSecure, TlsaState::kBogus)}));
  EXPECT_EQ(bogus.verdict, PolicyVerdict::kDefer);
  EXPECT_EQ(bogus.result_type, "dnssec-invalid");
  EXPECT_EQ(bogus.enhanced_status, "4.7.5");
  EXPECT_TRUE(bogus.hosts.empty());
  auto failed = run(connector(kOpp, kOpp), dest({host("mx.example.test", 10, Security::kSecure, TlsaState::kFailure)}));
  EXPECT_EQ(failed.verdict, PolicyVerdict::kDefer);
  EXPECT_EQ(failed.result_type, "");
  EXPECT_EQ(failed.enhanced_status, "4.4.4");
  EXPECT_NE(failed.reason.find("DANE cannot be decided"), std::string::npos) << failed.reason;
}

TEST(PolicyCompiler, BogusAddressesTakeTheHostOutEvenWithDaneNone) {
  auto p = run(connector(kNone, kNone), dest({host("mx.example.test", 10, Security::kBogus, TlsaState::kNotLooked)}));
  EXPECT_EQ(p.verdict, PolicyVerdict::kDefer);
  EXPECT_EQ(p.result_type, "dnssec-invalid");
}

TEST(PolicyCompiler, MxStatesBounceOrDefer) {
  auto d = dest({});
  d.mx_state = MxState::kNullMx;
  auto nullmx = run(connector(kOpp, kOpp), d);
  EXPECT_EQ(nullmx.verdict, PolicyVerdict::kBounce);
  EXPECT_EQ(nullmx.enhanced_status, "5.1.10");
  d.mx_state = MxState::kNxDomain;
  auto nx = run(connector(kOpp, kOpp), d);
  EXPECT_EQ(nx.verdict, PolicyVerdict::kBounce);
  EXPECT_EQ(nx.enhanced_status, "5.1.2");
  d.mx_state = MxState::kBogus;
  d.mx_security = Security::kBogus;
  d.why = "DS mismatch";
  auto bogus = run(connector(kNone, kNone), d);  // even with DANE none: a forged MX is not used
  EXPECT_EQ(bogus.verdict, PolicyVerdict::kDefer);
  EXPECT_EQ(bogus.result_type, "dnssec-invalid");
  EXPECT_NE(bogus.reason.find("DS mismatch"), std::string::npos);
  d.mx_state = MxState::kFailure;
  auto failed = run(connector(kOpp, kOpp), d);
  EXPECT_EQ(failed.verdict, PolicyVerdict::kDefer);
  EXPECT_EQ(failed.enhanced_status, "4.4.3");
}

TEST(PolicyCompiler, HostWithoutAddressesIsNotUsed) {
  auto h = host("mx.example.test", 10, Security::kSecure, TlsaState::kSecureDenial);
  h.a.addresses.clear();
  auto p = run(connector(kOpp, kOpp), dest({h}));
  EXPECT_EQ(p.verdict, PolicyVerdict::kDefer);
  EXPECT_EQ(p.enhanced_status, "4.4.4");
}

// ---- DANE none / mandatory ----

TEST(PolicyCompiler, DaneNoneIgnoresTlsaEvenWhenUsableOrBogus) {
  auto p = run(connector(kNone, kOpp), dest({host("mx1.example.test", 10, Security::kSecure, TlsaState::kUsable, {record(3, 1, 1)}),
                                             host("mx2.example.test", 20, Security::kSecure, TlsaState::kBogus)}));
  ASSERT_EQ(p.verdict, PolicyVerdict::kDeliver);
  ASSERT_EQ(p.hosts.size(), 2u);
  EXPECT_EQ(p.hosts[0].tls, TlsRequirement::kMay);
  EXPECT_TRUE(p.hosts[0].tlsa.empty());
  EXPECT_EQ(p.hosts[1].tls, TlsRequirement::kMay);
}

TEST(PolicyCompiler, DaneMandatoryNeedsASecureMx) {
  auto p = run(connector(kMand, kOpp), dest({host("mx.example.test", 10, Security::kSecure, TlsaState::kUsable, {record(3, 1, 1)})},
                                            Security::kInsecure));
  EXPECT_EQ(p.verdict, PolicyVerdict::kDefer);
  EXPECT_EQ(p.result_type, "dane-required");
  EXPECT_NE(p.reason.find("not DNSSEC-secure"), std::string::npos) << p.reason;
}

TEST(PolicyCompiler, DaneMandatoryUsesOnlyDaneHostsAndDefersWithoutAny) {
  auto mixed = run(connector(kMand, kOpp), dest({host("mx1.example.test", 10, Security::kInsecure, TlsaState::kNotLooked),
                                                 host("mx2.example.test", 20, Security::kSecure, TlsaState::kUsable, {record(2, 1, 1)})}));
  ASSERT_EQ(mixed.verdict, PolicyVerdict::kDeliver);
  ASSERT_EQ(mixed.hosts.size(), 1u);
  EXPECT_EQ(mixed.hosts[0].name, "mx2.example.test");
  EXPECT_EQ(mixed.excluded[0].result_type, "dane-required");

  for (auto tlsa : {TlsaState::kSecureDenial, TlsaState::kAllUnusable, TlsaState::kInsecure}) {
    auto p = run(connector(kMand, kOpp), dest({host("mx.example.test", 10, Security::kSecure, tlsa, {record(0, 0, 1)})}));
    EXPECT_EQ(p.verdict, PolicyVerdict::kDefer) << resolver::to_string(tlsa);
    EXPECT_EQ(p.result_type, "dane-required");
    EXPECT_EQ(p.enhanced_status, "4.7.5");
  }
}

// ---- MTA-STS ----

TEST(PolicyCompiler, StsEnforceKeepsMatchingHostsAndRequiresWebPki) {
  auto sts = sts_policy(policy::StsMode::kEnforce, {"*.example.test"});
  auto p = run(connector(kOpp, kOpp),
               dest({host("mx.example.test", 10, Security::kInsecure, TlsaState::kNotLooked),
                     host("mx.attacker.test", 5, Security::kInsecure, TlsaState::kNotLooked),
                     host("a.b.example.test", 20, Security::kInsecure, TlsaState::kNotLooked)},
                    Security::kInsecure),
               &sts, kNow + 100);
  ASSERT_EQ(p.verdict, PolicyVerdict::kDeliver);
  ASSERT_EQ(p.hosts.size(), 1u);
  EXPECT_EQ(p.hosts[0].name, "mx.example.test");
  EXPECT_EQ(p.hosts[0].tls, TlsRequirement::kWebPki);
  EXPECT_FALSE(p.hosts[0].cleartext_allowed);
  ASSERT_EQ(p.excluded.size(), 2u);  // not listed; and "*." matches one label only
  EXPECT_EQ(p.excluded[0].result_type, "validation-failure");
  EXPECT_EQ(p.sts, "enforce");
  EXPECT_EQ(p.sts_id, "id1");
  EXPECT_EQ(p.expires_at, kNow + 100);  // the policy's expiry is sooner than the DNS TTL
}

TEST(PolicyCompiler, StsEnforceWithNoListedHostDefers) {
  auto sts = sts_policy(policy::StsMode::kEnforce, {"mx.example.test"});
  auto p = run(connector(kOpp, kOpp), dest({host("other.example.test", 10, Security::kInsecure, TlsaState::kNotLooked)}), &sts);
  EXPECT_EQ(p.verdict, PolicyVerdict::kDefer);
  EXPECT_EQ(p.result_type, "validation-failure");
}

TEST(PolicyCompiler, DaneDecidesWhereItAppliesUnderOpportunisticSts) {
  auto sts = sts_policy(policy::StsMode::kEnforce, {"mx.example.test"});
  auto p = run(connector(kOpp, kOpp),
               dest({host("dane.example.test", 10, Security::kSecure, TlsaState::kUsable, {record(3, 1, 1)}),
                     host("mx.example.test", 20, Security::kSecure, TlsaState::kAllUnusable, {record(1, 1, 1)})}),
               &sts);
  ASSERT_EQ(p.hosts.size(), 2u);
  EXPECT_EQ(p.hosts[0].tls, TlsRequirement::kDane);    // not listed, but DANE decides (RFC 8461 §2)
  EXPECT_EQ(p.hosts[1].tls, TlsRequirement::kWebPki);  // unusable TLSA + enforce: the stricter check
  // Mandatory MTA-STS: every host used must be listed, DANE or not.
  auto m = run(connector(kOpp, kMand),
               dest({host("dane.example.test", 10, Security::kSecure, TlsaState::kUsable, {record(3, 1, 1)}),
                     host("mx.example.test", 20, Security::kSecure, TlsaState::kUsable, {record(3, 1, 1)})}),
               &sts);
  ASSERT_EQ(m.hosts.size(), 1u);
  EXPECT_EQ(m.hosts[0].name, "mx.example.test");
  EXPECT_EQ(m.hosts[0].tls, TlsRequirement::kDane);  // and DANE still verifies it
}

TEST(PolicyCompiler, StsTestingDeliversAndOnlyReports) {
  auto sts = sts_policy(policy::StsMode::kTesting, {"mx.example.test"});
  auto p = run(connector(kOpp, kOpp),
               dest({host("mx.example.test", 10, Security::kInsecure, TlsaState::kNotLooked),
                     host("other.example.test", 20, Security::kInsecure, TlsaState::kNotLooked)}),
               &sts);
  ASSERT_EQ(p.verdict, PolicyVerdict::kDeliver);
  ASSERT_EQ(p.hosts.size(), 2u);
  EXPECT_EQ(p.hosts[0].tls, TlsRequirement::kMay);
  EXPECT_TRUE(p.hosts[0].sts_testing);
  EXPECT_TRUE(p.hosts[0].cleartext_allowed);
  EXPECT_FALSE(p.hosts[1].sts_testing);  // not listed: nothing to verify against
}

TEST(PolicyCompiler, StsModeNonePolicyAndFailedFetchMeanNoSts) {
  auto none_policy = sts_policy(policy::StsMode::kNone, {});
  auto tempfail = sts_kind(mta_sts::StsResult::kTempFail, "HTTP status 500");
  auto nopolicy = sts_kind(mta_sts::StsResult::kNoPolicy, "NXDOMAIN");
  for (const auto* s : {&none_policy, &tempfail, &nopolicy}) {
    auto p = run(connector(kOpp, kOpp), dest({host("mx.example.test", 10, Security::kInsecure, TlsaState::kNotLooked)}), s);
    ASSERT_EQ(p.verdict, PolicyVerdict::kDeliver);
    EXPECT_EQ(p.hosts[0].tls, TlsRequirement::kMay);
    EXPECT_TRUE(p.hosts[0].cleartext_allowed);
  }
}

TEST(PolicyCompiler, StsConnectorModeNoneIgnoresAnEnforcePolicy) {
  auto sts = sts_policy(policy::StsMode::kEnforce, {"mx.example.test"});
  auto p = run(connector(kOpp, kNone), dest({host("other.example.test", 10, Security::kInsecure, TlsaState::kNotLooked)}), &sts);
  ASSERT_EQ(p.verdict, PolicyVerdict::kDeliver);
  EXPECT_EQ(p.hosts[0].tls, TlsRequirement::kMay);
  EXPECT_EQ(p.sts, "ignored");
}

TEST(PolicyCompiler, StsMandatoryNeedsAnEnforcePolicy) {
  auto d = dest({host("mx.example.test", 10, Security::kInsecure, TlsaState::kNotLooked)});
  auto testing = sts_policy(policy::StsMode::kTesting, {"mx.example.test"});
  auto nopolicy = sts_kind(mta_sts::StsResult::kNoPolicy, "no v=STSv1 TXT record");
  auto tempfail = sts_kind(mta_sts::StsResult::kTempFail, "HTTP status 500");
  auto t = run(connector(kOpp, kMand), d, &testing);
  EXPECT_EQ(t.verdict, PolicyVerdict::kDefer);
  EXPECT_NE(t.reason.find("mode testing, not enforce"), std::string::npos) << t.reason;
  auto n = run(connector(kOpp, kMand), d, &nopolicy);
  EXPECT_EQ(n.verdict, PolicyVerdict::kDefer);
  EXPECT_NE(n.reason.find("publishes no MTA-STS policy"), std::string::npos) << n.reason;
  auto f = run(connector(kOpp, kMand), d, &tempfail);
  EXPECT_EQ(f.verdict, PolicyVerdict::kDefer);
  EXPECT_EQ(f.result_type, "sts-policy-fetch-error");
  auto enforce = sts_policy(policy::StsMode::kEnforce, {"mx.example.test"});
  auto ok = run(connector(kOpp, kMand), d, &enforce);
  ASSERT_EQ(ok.verdict, PolicyVerdict::kDeliver);
  EXPECT_EQ(ok.hosts[0].tls, TlsRequirement::kWebPki);
}

// ---- connector TLS settings ----

TEST(PolicyCompiler, ConnectorWithoutCleartextRequiresTlsAndSetsTheMinimumVersion) {
  auto c = connector(kOpp, kOpp, /*cleartext=*/false);
  c.set_min_tls_version("TLSv1.3");
  auto p = run(c, dest({host("mx.example.test", 10, Security::kInsecure, TlsaState::kNotLooked)}));
  ASSERT_EQ(p.verdict, PolicyVerdict::kDeliver);
  EXPECT_EQ(p.hosts[0].tls, TlsRequirement::kEncrypt);
  EXPECT_FALSE(p.hosts[0].cleartext_allowed);
  EXPECT_EQ(p.hosts[0].min_tls_version, 0x0304);
}

TEST(PolicyCompiler, HostsKeepPreferenceOrder) {
  auto p = run(connector(kOpp, kOpp), dest({host("a.example.test", 10, Security::kInsecure, TlsaState::kNotLooked),
                                            host("b.example.test", 10, Security::kInsecure, TlsaState::kNotLooked),
                                            host("c.example.test", 20, Security::kInsecure, TlsaState::kNotLooked)}));
  ASSERT_EQ(p.hosts.size(), 3u);
  EXPECT_EQ(p.hosts[2].name, "c.example.test");
  EXPECT_EQ(p.hosts[2].preference, 20);
}

}  // namespace
}  // namespace mxedge::policy_compiler
