// The DNSSEC wizard's pure parts: the TLS-RPT record parser, TLSA matching against generated keys,
// the zone cut and the judgement of synthesized answers (tests/integration/test_wizard.py runs the
// whole wizard against the signed lab DNS).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "controlplane/resolver/dnssec_records.h"
#include "controlplane/wizard/checks.h"
#include "controlplane/wizard/gateway_keys.h"
#include "policy/tlsrpt.h"
#include "controlplane/wizard/wizard.h"

namespace mxedge::wizard {
using policy::is_tlsrpt_record;
using policy::parse_tlsrpt_record;

namespace {

using mgmt::v1::WizardStep;
using resolver::AnswerKind;
using resolver::LookupResult;
using resolver::Security;

// ---- TLS-RPT -------------------------------------------------------------------------------------

TEST(TlsRptTest, ValidRecords) {
  std::string err;
  auto r = parse_tlsrpt_record("v=TLSRPTv1; rua=mailto:tlsrpt@example.com", &err);
  ASSERT_TRUE(r) << err;
  EXPECT_EQ(r->rua, std::vector<std::string>{"mailto:tlsrpt@example.com"});
  r = parse_tlsrpt_record("v=TLSRPTv1;rua=mailto:a@example.com, https://reports.example.com/tlsrpt ;", &err);
  ASSERT_TRUE(r) << err;
  EXPECT_EQ(r->rua, (std::vector<std::string>{"mailto:a@example.com", "https://reports.example.com/tlsrpt"}));
  r = parse_tlsrpt_record("v=TLSRPTv1 ; ext-1=yes; rua=HTTPS://r.example.com/", &err);
  ASSERT_TRUE(r) << err;
  EXPECT_EQ(r->extensions, 1u);
}

TEST(TlsRptTest, InvalidRecords) {
  std::string err;
  EXPECT_FALSE(parse_tlsrpt_record("v=TLSRPTv1;", &err));
  EXPECT_NE(err.find("no rua"), std::string::npos) << err;
  EXPECT_FALSE(parse_tlsrpt_record("v=TLSRPTv1; rua=ftp://x.example/", &err));
  EXPECT_NE(err.find("neither a mailto: nor an https: URI"), std::string::npos) << err;
  EXPECT_FALSE(parse_tlsrpt_record("v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example", &err));
  EXPECT_FALSE(parse_tlsrpt_record("v=TLSRPTv1; rua=mailto:a@b.example,", &err));
  EXPECT_FALSE(parse_tlsrpt_record("v=TLSRPTv1; rua=mailto:nobody", &err));
  EXPECT_FALSE(parse_tlsrpt_record("v=TLSRPTv1; rua=https:///path", &err));
  EXPECT_FALSE(parse_tlsrpt_record("rua=mailto:a@b.example; v=TLSRPTv1", &err));
  EXPECT_FALSE(parse_tlsrpt_record("v=TLSRPTv1; rua=mailto:a@b.example; junk", &err));
  EXPECT_FALSE(is_tlsrpt_record("v=TLSRPTv10; rua=mailto:a@b.example"));
  EXPECT_TRUE(is_tlsrpt_record("v=TLSRPTv1"));
}

// ---- keys and TLSA -------------------------------------------------------------------------------

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& name) : path(std::filesystem::temp_directory_path() / name) {}
  ~TempFile() { std::remove(path.c_str()); }
};

// A self-signed P-256 certificate and its key, as PEM files.
void make_cert(const TempFile& cert, const TempFile& key) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pk(EVP_EC_gen("P-256"), &EVP_PKEY_free);
  ASSERT_TRUE(pk);
  std::unique_ptr<X509, decltype(&X509_free)> x(X509_new(), &X509_free);
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 86400);
  X509_set_pubkey(x.get(), pk.get());
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("mx.example.com"), -1, -1, 0);
  X509_set_issuer_name(x.get(), X509_get_subject_name(x.get()));
  ASSERT_GT(X509_sign(x.get(), pk.get(), EVP_sha256()), 0);
  FILE* f = std::fopen(cert.path.c_str(), "w");
  ASSERT_TRUE(f);
  PEM_write_X509(f, x.get());
  std::fclose(f);
  f = std::fopen(key.path.c_str(), "w");
  ASSERT_TRUE(f);
  PEM_write_PrivateKey(f, pk.get(), nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

TEST(GatewayKeysTest, CertificateAndKeyGiveTheSameDaneEeRecord) {
  TempFile cert("wizard_test_cert.pem"), key("wizard_test_key.pem");
  make_cert(cert, key);
  std::string err;
  auto c = load_certificate_chain(cert.path, &err);
  ASSERT_TRUE(c) << err;
  auto k = load_key(key.path, &err);
  ASSERT_TRUE(k) << err;
  EXPECT_EQ(c->spki, k->spki);
  EXPECT_FALSE(c->cert.empty());
  EXPECT_TRUE(k->cert.empty());
  const policy::TlsaRecord r = dane_ee_record(*c);
  EXPECT_EQ(r.usage, 3);
  EXPECT_EQ(r.selector, 1);
  EXPECT_EQ(r.mtype, 1);
  EXPECT_EQ(to_hex(r.data).size(), 64u);
  EXPECT_TRUE(tlsa_matches(r, *c));
  EXPECT_TRUE(tlsa_matches(r, *k));
  // 3 0 1 (the whole certificate) matches only when the certificate is known.
  policy::TlsaRecord full{3, 0, 0, c->cert};
  EXPECT_TRUE(tlsa_matches(full, *c));
  EXPECT_FALSE(tlsa_matches(full, *k));
  // PKIX usages and usage 2 without an issuer in the chain never match.
  policy::TlsaRecord pkix = r;
  pkix.usage = 1;
  EXPECT_FALSE(tlsa_matches(pkix, *c));
  policy::TlsaRecord ta = r;
  ta.usage = 2;
  EXPECT_FALSE(tlsa_matches(ta, *c));
  EXPECT_FALSE(load_certificate_chain(key.path, &err));
  EXPECT_FALSE(load_key("/nonexistent/key.pem", &err));
}

// ---- judgement -----------------------------------------------------------------------------------

Answer answer(Security sec, AnswerKind kind, void (*fill)(resolver::ParsedAnswer&) = nullptr, const char* why = "") {
  auto r = std::make_shared<LookupResult>();
  r->security = sec;
  r->kind = kind;
  r->why = why;
  if (fill) fill(r->answer);
  return r;
}

constexpr const char* kKey =
    "example.com. 300 IN DNSKEY 257 3 8 AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFl"
    "ExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EW"
    "gvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2"
    "hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU=";

WizardInputs base_inputs() {
  WizardInputs in;
  in.domain = "example.com";
  in.mx_names = {"mx.example.com"};
  in.soa = {{"example.com", answer(Security::kInsecure, AnswerKind::kData, [](auto& a) {
               a.other = {"example.com. 300 IN SOA ns. host. 1 2 3 4 5"};
             })},
            {"com", answer(Security::kSecure, AnswerKind::kData, [](auto& a) { a.other = {"com. 300 IN SOA a. b. 1 2 3 4 5"}; })},
            {".", answer(Security::kSecure, AnswerKind::kData, [](auto& a) { a.other = {". 300 IN SOA a. b. 1 2 3 4 5"}; })}};
  in.dnskey = answer(Security::kInsecure, AnswerKind::kData, [](auto& a) {
    a.other = {kKey, "example.com. 300 IN DNSKEY 256 3 8 AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3"};
  });
  in.ds = answer(Security::kSecure, AnswerKind::kNoData);
  in.mx = answer(Security::kInsecure, AnswerKind::kData, [](auto& a) {
    a.mx = {{10, "old.example.net"}};
  });
  in.hosts = {{"mx.example.com", answer(Security::kInsecure, AnswerKind::kNxDomain),
               answer(Security::kInsecure, AnswerKind::kNxDomain), answer(Security::kInsecure, AnswerKind::kNxDomain)}};
  in.current_keys_error = "the configuration has no inbound listener with certificates";
  in.sts_txt = answer(Security::kInsecure, AnswerKind::kNxDomain);
  in.tlsrpt_txt = answer(Security::kInsecure, AnswerKind::kData, [](auto& a) {
    a.txt = {"v=TLSRPTv1; rua=mailto:r@example.com", "v=spf1 -all"};
  });
  return in;
}

const WizardStep& step(const mgmt::v1::WizardReport& r, WizardStep::Check c) {
  for (const auto& s : r.steps())
    if (s.check() == c) return s;
  throw std::runtime_error("no step");
}

TEST(WizardEvaluateTest, ZoneCut) {
  EXPECT_EQ(zone_candidates("a.example.com"), (std::vector<std::string>{"a.example.com", "example.com", "com", "."}));
  WizardInputs in = base_inputs();
  in.soa.insert(in.soa.begin(), {"a.example.com", answer(Security::kInsecure, AnswerKind::kNoData)});
  ZoneCut cut = find_zone(in.soa);
  EXPECT_EQ(cut.zone, "example.com");
  EXPECT_EQ(cut.parent, "com");
  // A bogus zone: its apex is the highest bogus name.
  in.soa[0].second = answer(Security::kBogus, AnswerKind::kNoData, nullptr, "no keys have a DS");
  in.soa[1].second = answer(Security::kBogus, AnswerKind::kNoData, nullptr, "no keys have a DS");
  cut = find_zone(in.soa);
  EXPECT_EQ(cut.zone, "example.com");
  EXPECT_EQ(cut.parent, "com");
  in.soa[2].second = answer(Security::kFailure, AnswerKind::kNoData, nullptr, "timeout");
  in.soa[0].second = answer(Security::kFailure, AnswerKind::kNoData, nullptr, "timeout");
  cut = find_zone(in.soa);
  EXPECT_TRUE(cut.zone.empty());
  EXPECT_NE(cut.why.find("timeout"), std::string::npos);
}

TEST(WizardEvaluateTest, SignedWithoutDsGivesTheDsOfTheSepKey) {
  const auto rep = evaluate(base_inputs());
  EXPECT_FALSE(rep.ready());
  EXPECT_EQ(rep.zone(), "example.com.");
  EXPECT_EQ(rep.parent_zone(), "com.");
  const WizardStep& d = step(rep, WizardStep::CHECK_DNSSEC);
  EXPECT_EQ(d.status(), WizardStep::STATUS_ACTION_NEEDED);
  std::string err;
  const auto ds = resolver::ds_from_dnskey(kKey, resolver::DsDigest::kSha256, &err);
  ASSERT_TRUE(ds) << err;
  ASSERT_EQ(d.records_to_publish_size(), 1);  // the SEP key only
  EXPECT_EQ(d.records_to_publish(0), "example.com. IN DS " + ds->substr(ds->find("DS ") + 3));
  EXPECT_EQ(d.publish_in(), "com.");

  const WizardStep& mx = step(rep, WizardStep::CHECK_MX);
  EXPECT_EQ(mx.status(), WizardStep::STATUS_ACTION_NEEDED);
  ASSERT_EQ(mx.records_to_publish_size(), 1);
  EXPECT_EQ(mx.records_to_publish(0), "example.com. IN MX 10 mx.example.com.");
  ASSERT_EQ(mx.records_to_remove_size(), 1);
  EXPECT_EQ(mx.records_to_remove(0), "example.com. IN MX 10 old.example.net.");

  EXPECT_EQ(step(rep, WizardStep::CHECK_TLSA).status(), WizardStep::STATUS_FAIL);  // no certificates
  const WizardStep& sts = step(rep, WizardStep::CHECK_MTA_STS);
  EXPECT_EQ(sts.status(), WizardStep::STATUS_ACTION_NEEDED);
  ASSERT_EQ(sts.files_to_publish_size(), 1);
  EXPECT_EQ(sts.files_to_publish(0).content(),
            "version: STSv1\r\nmode: testing\r\nmx: mx.example.com\r\nmx: old.example.net\r\nmax_age: 86400\r\n");
  EXPECT_EQ(step(rep, WizardStep::CHECK_TLS_RPT).status(), WizardStep::STATUS_OK);

  // The plan: DS, MTA-STS testing, enforce, MX cutover (TLSA failed without certificates).
  std::vector<WizardStep::Check> order;
  for (const auto& p : rep.plan()) order.push_back(p.check());
  EXPECT_EQ(order, (std::vector<WizardStep::Check>{WizardStep::CHECK_DNSSEC, WizardStep::CHECK_TLSA,
                                                   WizardStep::CHECK_MTA_STS, WizardStep::CHECK_MTA_STS,
                                                   WizardStep::CHECK_MX}));
  EXPECT_NE(render_wizard_text(rep).find("Cutover plan"), std::string::npos);
}

TEST(WizardEvaluateTest, TimeoutsAreFailuresNotCrashes) {
  WizardInputs in = base_inputs();
  in.dnskey = nullptr;
  in.ds = nullptr;
  in.mx = nullptr;
  in.hosts[0].tlsa = nullptr;
  in.sts_txt = nullptr;
  in.tlsrpt_txt = nullptr;
  const auto rep = evaluate(in);
  for (const auto& s : rep.steps()) EXPECT_EQ(s.status(), WizardStep::STATUS_FAIL) << s.title();
  EXPECT_NE(step(rep, WizardStep::CHECK_MX).detail().find("deadline"), std::string::npos);
}

TEST(WizardTest, BadRequestIsAnError) {
  config::v1::Config cfg;
  mgmt::v1::WizardRequest req;
  req.set_domain("not a domain");
  const auto rep = run_wizard(cfg, req);
  EXPECT_FALSE(rep.error().empty());
  EXPECT_EQ(rep.steps_size(), 0);
  EXPECT_NE(render_wizard_text(rep).find("cannot run"), std::string::npos);
}

}  // namespace
}  // namespace mxedge::wizard
