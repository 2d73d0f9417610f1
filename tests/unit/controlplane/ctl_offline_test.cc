// mxedgectl's offline tools (controlplane/ctl/offline): DANE verification of chains generated here
// (EC P-256: a root CA, an intermediate, leaves with given names and dates), TLSA generation compared
// with digests computed here, the MTA-STS and config checks' verdicts.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/unit/support/test_certs.h"

#include "controlplane/ctl/offline/config_check.h"
#include "controlplane/ctl/offline/dane_verify.h"
#include "controlplane/ctl/offline/sts_check.h"
#include "controlplane/ctl/offline/tlsa_generate.h"
#include "controlplane/ctl/offline/x509_util.h"

namespace mxedge::ctl::offline {
namespace {

using policy::TlsaRecord;

using test_certs::Cert;
using test_certs::kDay;
using test_certs::make_cert;

// Independent of the library: the DER encodings straight from OpenSSL, digests with SHA256()/SHA512().

std::vector<uint8_t> der_pubkey(EVP_PKEY* k) {
  unsigned char* p = nullptr;
  const int n = i2d_PUBKEY(k, &p);
  std::vector<uint8_t> out(p, p + (n > 0 ? n : 0));
  OPENSSL_free(p);
  return out;
}

std::vector<uint8_t> sha256(const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out(SHA256_DIGEST_LENGTH);
  SHA256(in.data(), in.size(), out.data());
  return out;
}

std::vector<uint8_t> sha512(const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out(SHA512_DIGEST_LENGTH);
  SHA512(in.data(), in.size(), out.data());
  return out;
}

TlsaRecord tlsa(uint8_t usage, uint8_t selector, uint8_t mtype, const Cert& c) {
  const std::vector<uint8_t> in = selector == 0 ? test_certs::cert_der(c.cert.get()) : der_pubkey(c.key.get());
  return TlsaRecord{usage, selector, mtype, mtype == 0 ? in : mtype == 1 ? sha256(in) : sha512(in)};
}

std::string pem_of(X509* x) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, x);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

std::string pem_of_key(EVP_PKEY* k) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, k, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

class CtlOfflineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new Cert(make_cert("Test Root CA", {}, nullptr, true));
    inter_ = new Cert(make_cert("Test Intermediate CA", {}, root_, true));
    leaf_ = new Cert(make_cert("mx.example.test", {"mx.example.test"}, inter_, false));
    expired_other_ = new Cert(make_cert("other.test", {"other.test"}, inter_, false, -10 * kDay, -kDay));
    partial_ = new Cert(make_cert("m*.example.test", {"m*.example.test"}, inter_, false));
    base_only_ = new Cert(make_cert("example.test", {"example.test"}, inter_, false));
  }
  static void TearDownTestSuite() {
    for (Cert* c : {root_, inter_, leaf_, expired_other_, partial_, base_only_}) delete c;
  }

  void SetUp() override {
    char tmpl[] = "/tmp/ctl-offline-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string write(const std::string& name, const std::string& content) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << content;
    return path;
  }

  static DaneResult verify(const std::vector<const Cert*>& chain, const std::vector<TlsaRecord>& records,
                           const std::string& host = "mx.example.test", const std::vector<std::string>& names = {}) {
    std::vector<X509*> certs;
    for (const Cert* c : chain) certs.push_back(c->cert.get());
    std::string error;
    auto r = dane_verify(certs, host, names, records, &error);
    EXPECT_TRUE(r.has_value()) << error;
    return r ? *r : DaneResult{};
  }

  static Cert* root_;
  static Cert* inter_;
  static Cert* leaf_;
  static Cert* expired_other_;
  static Cert* partial_;
  static Cert* base_only_;
  std::string dir_;
};

Cert* CtlOfflineTest::root_ = nullptr;
Cert* CtlOfflineTest::inter_ = nullptr;
Cert* CtlOfflineTest::leaf_ = nullptr;
Cert* CtlOfflineTest::expired_other_ = nullptr;
Cert* CtlOfflineTest::partial_ = nullptr;
Cert* CtlOfflineTest::base_only_ = nullptr;

TEST_F(CtlOfflineTest, DaneEeSpkiSha256Matches) {
  const DaneResult r = verify({leaf_, inter_}, {tlsa(3, 1, 1, *leaf_)});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  EXPECT_EQ(r.match_depth, 0);
  EXPECT_EQ(r.match.usage, 3);
  EXPECT_EQ(r.match.selector, 1);
  EXPECT_EQ(r.match.mtype, 1);
  EXPECT_EQ(r.match_subject, "CN=mx.example.test");
}

TEST_F(CtlOfflineTest, DaneEeFullCertificateSha256Matches) {
  const DaneResult r = verify({leaf_}, {tlsa(3, 0, 1, *leaf_)});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  EXPECT_EQ(r.match.selector, 0);
  EXPECT_EQ(r.match_depth, 0);
}

TEST_F(CtlOfflineTest, DaneEeIgnoresNameAndDates) {  // RFC 7672 §3.1.1
  const DaneResult r = verify({expired_other_, inter_}, {tlsa(3, 1, 1, *expired_other_)});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  EXPECT_EQ(r.match_depth, 0);
}

TEST_F(CtlOfflineTest, DaneEeSha512Matches) {
  const DaneResult r = verify({leaf_, inter_}, {tlsa(3, 1, 2, *leaf_)});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  EXPECT_EQ(r.match.mtype, 2);
  EXPECT_EQ(r.match.data.size(), 64u);
}

TEST_F(CtlOfflineTest, DaneTaSpkiAtIntermediate) {
  const DaneResult r = verify({leaf_, inter_}, {tlsa(2, 1, 1, *inter_)});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  EXPECT_EQ(r.match_depth, 1);
  EXPECT_EQ(r.match.usage, 2);
  EXPECT_EQ(r.match_subject, "CN=Test Intermediate CA");
}

TEST_F(CtlOfflineTest, DaneTaFullCertificateAtIntermediateWithRootInChain) {
  const DaneResult r = verify({leaf_, inter_, root_}, {tlsa(2, 0, 1, *inter_)});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  EXPECT_EQ(r.match_depth, 1);
  EXPECT_EQ(r.match.selector, 0);
}

TEST_F(CtlOfflineTest, DaneTaSpkiAtRoot) {
  const DaneResult r = verify({leaf_, inter_, root_}, {tlsa(2, 1, 1, *root_)});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  EXPECT_EQ(r.match_depth, 2);
  EXPECT_EQ(r.match_subject, "CN=Test Root CA");
}

TEST_F(CtlOfflineTest, DaneTaFullCertificateAtRoot) {
  const DaneResult r = verify({leaf_, inter_, root_}, {tlsa(2, 0, 1, *root_)});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  EXPECT_EQ(r.match_depth, 2);
}

TEST_F(CtlOfflineTest, DaneTaSha512AtIntermediate) {
  const DaneResult r = verify({leaf_, inter_}, {tlsa(2, 1, 2, *inter_)});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  EXPECT_EQ(r.match.mtype, 2);
}

TEST_F(CtlOfflineTest, DaneTaRootNotInChainDoesNotMatch) {
  const DaneResult r = verify({leaf_, inter_}, {tlsa(2, 1, 1, *root_)});
  EXPECT_EQ(r.status, DaneStatus::kFailed);
  EXPECT_EQ(r.reason, "no TLSA record matched the chain");
}

TEST_F(CtlOfflineTest, DaneTaWrongNameFails) {
  const DaneResult r = verify({leaf_, inter_}, {tlsa(2, 1, 1, *inter_)}, "mx.other.test");
  EXPECT_EQ(r.status, DaneStatus::kFailed);
  EXPECT_EQ(r.reason, "DANE-TA matched but the certificate does not name mx.other.test");
  EXPECT_TRUE(r.matched);
  EXPECT_EQ(r.match_depth, 1);
  EXPECT_EQ(r.x509_error, X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST_F(CtlOfflineTest, DaneTaAcceptsAnExtraName) {  // RFC 7672 §3.2.2: the TLSA base domain
  EXPECT_EQ(verify({base_only_, inter_}, {tlsa(2, 1, 1, *inter_)}, "mx.example.test").status, DaneStatus::kFailed);
  const DaneResult r = verify({base_only_, inter_}, {tlsa(2, 1, 1, *inter_)}, "mx.example.test", {"example.test"});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  EXPECT_EQ(r.names, (std::vector<std::string>{"mx.example.test", "example.test"}));
}

TEST_F(CtlOfflineTest, DaneTaRejectsPartialWildcard) {
  const DaneResult r = verify({partial_, inter_}, {tlsa(2, 1, 1, *inter_)});
  EXPECT_EQ(r.status, DaneStatus::kFailed);
  EXPECT_NE(r.reason.find("does not name"), std::string::npos) << r.reason;
}

TEST_F(CtlOfflineTest, DaneTaChecksDates) {
  const DaneResult r = verify({expired_other_, inter_}, {tlsa(2, 1, 1, *inter_)}, "other.test");
  EXPECT_EQ(r.status, DaneStatus::kFailed);
  EXPECT_EQ(r.x509_error, X509_V_ERR_CERT_HAS_EXPIRED);
  EXPECT_NE(r.reason.find("does not validate"), std::string::npos) << r.reason;
}

TEST_F(CtlOfflineTest, WrongDigestFails) {
  TlsaRecord wrong = tlsa(3, 1, 1, *leaf_);
  wrong.data[0] ^= 0xff;
  TlsaRecord wrong_ta = tlsa(2, 1, 1, *inter_);
  wrong_ta.data[5] ^= 0x01;
  const DaneResult r = verify({leaf_, inter_}, {wrong, wrong_ta});
  EXPECT_EQ(r.status, DaneStatus::kFailed);
  EXPECT_EQ(r.reason, "no TLSA record matched the chain");
  EXPECT_FALSE(r.matched);
  EXPECT_EQ(r.x509_error, X509_V_ERR_DANE_NO_MATCH);
}

TEST_F(CtlOfflineTest, PkixUsagesOnlyAreUnusable) {
  const DaneResult r = verify({leaf_, inter_}, {tlsa(0, 1, 1, *inter_), tlsa(1, 1, 1, *leaf_)});
  EXPECT_EQ(r.status, DaneStatus::kUnusable);
  ASSERT_EQ(r.records.size(), 2u);
  for (const auto& rec : r.records) {
    EXPECT_FALSE(rec.usable);
    EXPECT_EQ(rec.reason, "PKIX usage (0/1) is not usable with SMTP");
  }
}

TEST_F(CtlOfflineTest, ClassifyRejectionsAreUnusable) {
  TlsaRecord short_digest{3, 1, 1, {1, 2, 3}};
  TlsaRecord unknown_selector{3, 2, 1, std::vector<uint8_t>(32, 1)};
  TlsaRecord unknown_mtype{3, 1, 9, std::vector<uint8_t>(32, 1)};
  TlsaRecord unknown_usage{4, 1, 1, std::vector<uint8_t>(32, 1)};
  const DaneResult r = verify({leaf_}, {short_digest, unknown_selector, unknown_mtype, unknown_usage});
  EXPECT_EQ(r.status, DaneStatus::kUnusable);
  ASSERT_EQ(r.records.size(), 4u);
  EXPECT_EQ(r.records[0].reason, "digest length does not match the matching type");
  EXPECT_EQ(r.records[1].reason, "unknown selector");
  EXPECT_EQ(r.records[2].reason, "unknown matching type");
  EXPECT_EQ(r.records[3].reason, "unknown certificate usage");
}

TEST_F(CtlOfflineTest, MixOfUnusableAndMatchingVerifies) {
  const DaneResult r = verify({leaf_, inter_}, {tlsa(1, 1, 1, *leaf_), TlsaRecord{3, 1, 1, {1}}, tlsa(2, 1, 1, *inter_)});
  EXPECT_EQ(r.status, DaneStatus::kVerified) << r.reason;
  ASSERT_EQ(r.records.size(), 3u);
  EXPECT_FALSE(r.records[0].usable);
  EXPECT_FALSE(r.records[1].usable);
  EXPECT_TRUE(r.records[2].usable);
  EXPECT_EQ(r.match.usage, 2);
}

TEST_F(CtlOfflineTest, JsonAndTextShapes) {
  const DaneResult r = verify({leaf_, inter_}, {tlsa(0, 1, 1, *inter_), tlsa(2, 1, 1, *inter_)});
  const auto j = to_json(r);
  EXPECT_EQ(j["result"], "verified");
  EXPECT_FALSE(j.contains("reason"));
  EXPECT_EQ(j["match"]["usage_name"], "DANE-TA");
  EXPECT_EQ(j["match"]["depth"], 1);
  EXPECT_EQ(j["match"]["record"], policy::to_presentation(tlsa(2, 1, 1, *inter_)));
  EXPECT_TRUE(j["x509_error"].is_null());
  ASSERT_EQ(j["records"].size(), 2u);
  EXPECT_EQ(j["records"][0]["usable"], false);
  EXPECT_EQ(j["chain"].size(), 2u);
  EXPECT_EQ(j["chain"][0]["dns_names"][0], "mx.example.test");
  const std::string text = to_text(r);
  EXPECT_EQ(text.rfind("verified: DANE-TA (2) selector SPKI (1) matching type SHA2-256 (1), match depth 1\n", 0), 0u) << text;

  const DaneResult failed = verify({leaf_, inter_}, {tlsa(2, 1, 1, *inter_)}, "mx.other.test");
  EXPECT_EQ(to_json(failed)["result"], "failed");
  EXPECT_EQ(to_json(failed)["x509_error"]["code"], X509_V_ERR_HOSTNAME_MISMATCH);
  EXPECT_EQ(to_text(failed).rfind("failed: DANE-TA matched but the certificate does not name mx.other.test\n", 0), 0u);
}

TEST_F(CtlOfflineTest, RunDaneVerifyFromFiles) {
  const std::string chain = write("chain.pem", pem_of(leaf_->cert.get()) + pem_of(inter_->cert.get()));
  DaneVerifyArgs args{"MX.Example.Test.", {}, {policy::to_presentation(tlsa(3, 1, 1, *leaf_))}, chain};
  Report rep = run_dane_verify(args);
  EXPECT_EQ(rep.verdict, Verdict::kOk) << rep.error << rep.text;
  EXPECT_EQ(rep.json["host"], "mx.example.test");
  EXPECT_EQ(rep.json["chain"].size(), 2u);

  args.tlsa = {"3 1 1 zz"};
  rep = run_dane_verify(args);
  EXPECT_EQ(rep.verdict, Verdict::kUsage);
  EXPECT_NE(rep.error.find("not hex"), std::string::npos) << rep.error;

  args.tlsa = {policy::to_presentation(tlsa(1, 1, 1, *leaf_))};
  EXPECT_EQ(run_dane_verify(args).verdict, Verdict::kNegative);

  args.chain_file = dir_ + "/missing.pem";
  rep = run_dane_verify(args);
  EXPECT_EQ(rep.verdict, Verdict::kUsage);
  EXPECT_NE(rep.error.find("No such file"), std::string::npos) << rep.error;

  args.chain_file = write("empty.pem", "");
  rep = run_dane_verify(args);
  EXPECT_EQ(rep.verdict, Verdict::kUsage);
  EXPECT_NE(rep.error.find("no PEM certificate"), std::string::npos) << rep.error;

  args.chain_file = chain;
  args.host = "not a host";
  EXPECT_EQ(run_dane_verify(args).verdict, Verdict::kUsage);
}

TEST_F(CtlOfflineTest, TlsaGenerateDigests) {
  const std::string chain = write("chain.pem", pem_of(leaf_->cert.get()) + pem_of(inter_->cert.get()));
  Cert next = make_cert("mx.example.test", {"mx.example.test"}, inter_, false);
  const std::string next_key = write("next.key", pem_of_key(next.key.get()));
  TlsaGenerateArgs args;
  args.cert_files = {chain};
  args.next_key_file = next_key;
  args.mx = "MX.example.test.";
  std::string error;
  auto res = generate_tlsa(args, &error);
  ASSERT_TRUE(res.has_value()) << error;
  EXPECT_EQ(res->owner, "_25._tcp.mx.example.test.");
  ASSERT_EQ(res->records.size(), 3u);
  EXPECT_EQ(res->records[0].role, "current");
  EXPECT_EQ(res->records[0].record, (TlsaRecord{3, 1, 1, sha256(der_pubkey(leaf_->key.get()))}));
  EXPECT_EQ(res->records[0].rr, "_25._tcp.mx.example.test. IN TLSA " + policy::to_presentation(res->records[0].record));
  EXPECT_EQ(res->records[1].role, "issuer");
  EXPECT_EQ(res->records[1].record, (TlsaRecord{2, 1, 1, sha256(der_pubkey(inter_->key.get()))}));
  EXPECT_EQ(res->records[2].role, "next");
  EXPECT_EQ(res->records[2].record, (TlsaRecord{3, 1, 1, sha256(der_pubkey(next.key.get()))}));
  EXPECT_EQ(spki_sha256(leaf_->cert.get()), sha256(der_pubkey(leaf_->key.get())));
  EXPECT_FALSE(res->guidance.empty());

  // The records verify the chain they were made for.
  std::vector<TlsaRecord> records;
  for (const auto& g : res->records) records.push_back(g.record);
  EXPECT_EQ(verify({leaf_, inter_}, {records[0]}).status, DaneStatus::kVerified);
  EXPECT_EQ(verify({leaf_, inter_}, {records[1]}).status, DaneStatus::kVerified);
  EXPECT_EQ(verify({&next, inter_}, {records[2]}).status, DaneStatus::kVerified);

  const auto j = to_json(*res);
  EXPECT_EQ(j["records"][1]["rdata"], policy::to_presentation(res->records[1].record));
  const std::string text = to_text(*res);
  EXPECT_NE(text.find("\n" + res->records[0].rr + "\n"), std::string::npos) << text;
}

TEST_F(CtlOfflineTest, TlsaGenerateIssuerFromChainOptionAndPort) {
  const std::string leaf = write("leaf.pem", pem_of(leaf_->cert.get()));
  const std::string ca = write("ca.pem", pem_of(inter_->cert.get()));
  Cert next = make_cert("mx.example.test", {"mx.example.test"}, inter_, false);
  const std::string next_cert = write("next.pem", pem_of(next.cert.get()));
  TlsaGenerateArgs args;
  args.cert_files = {leaf};
  args.chain_file = ca;
  args.next_cert_file = next_cert;
  args.mx = "mx.example.test";
  args.port = 465;
  std::string error;
  auto res = generate_tlsa(args, &error);
  ASSERT_TRUE(res.has_value()) << error;
  EXPECT_EQ(res->owner, "_465._tcp.mx.example.test.");
  ASSERT_EQ(res->records.size(), 3u);
  EXPECT_EQ(res->records[1].record.data, sha256(der_pubkey(inter_->key.get())));
  EXPECT_EQ(res->records[2].record.data, sha256(der_pubkey(next.key.get())));
  bool noted = false;  // the served file lacks the CA certificate
  for (const auto& n : res->notes) noted |= n.find("does not carry the issuing CA") != std::string::npos;
  EXPECT_TRUE(noted);

  // A "chain" whose certificate did not issue the leaf is refused.
  args.chain_file = write("root.pem", pem_of(root_->cert.get()));
  EXPECT_FALSE(generate_tlsa(args, &error).has_value());
  EXPECT_NE(error.find("issued"), std::string::npos) << error;

  // The next key must belong to the next certificate.
  args.chain_file = ca;
  args.next_key_file = write("other.key", pem_of_key(leaf_->key.get()));
  EXPECT_FALSE(generate_tlsa(args, &error).has_value());

  args.next_key_file.clear();
  args.mx = "bad_name";
  EXPECT_FALSE(generate_tlsa(args, &error).has_value());
}

TEST_F(CtlOfflineTest, TlsaGenerateSelfSignedHasNoIssuerRecord) {
  Cert self = make_cert("mx.example.test", {"mx.example.test"}, nullptr, false);
  TlsaGenerateArgs args;
  args.cert_files = {write("self.pem", pem_of(self.cert.get()))};
  args.mx = "mx.example.test";
  std::string error;
  auto res = generate_tlsa(args, &error);
  ASSERT_TRUE(res.has_value()) << error;
  ASSERT_EQ(res->records.size(), 1u);
  EXPECT_EQ(res->records[0].record.usage, 3);
}

TEST_F(CtlOfflineTest, StsChecks) {
  Report r = check_sts_policy_text("version: STSv1\r\nmode: enforce\r\nmx: *.example.com\r\nmax_age: 86400\r\n", "p");
  EXPECT_EQ(r.verdict, Verdict::kOk);
  EXPECT_EQ(r.json["policy"]["mode"], "enforce");
  EXPECT_EQ(r.json["policy"]["max_age"], 86400);
  EXPECT_EQ(r.json["policy"]["mx"][0], "*.example.com");

  r = check_sts_policy_text("version: STSv1\nmode: sometimes\nmx: a.example\nmax_age: 1\n", "p");
  EXPECT_EQ(r.verdict, Verdict::kNegative);
  EXPECT_EQ(r.json["error"]["line"], 2);
  EXPECT_EQ(r.text.rfind("invalid: line 2: mode must be", 0), 0u) << r.text;

  EXPECT_EQ(run_sts_match("*.example.com", "mx.example.com").verdict, Verdict::kOk);
  EXPECT_EQ(run_sts_match("*.example.com", "a.mx.example.com").verdict, Verdict::kNegative);
  r = run_sts_match("mx.*.com", "mx.a.com");
  EXPECT_EQ(r.verdict, Verdict::kNegative);
  EXPECT_NE(r.text.find("invalid pattern"), std::string::npos);

  r = run_sts_txt({"v=STSv1; id=20240101T000000;"});
  EXPECT_EQ(r.verdict, Verdict::kOk);
  EXPECT_EQ(r.json["id"], "20240101T000000");
  EXPECT_EQ(run_sts_txt({"v=STSv1;"}).verdict, Verdict::kNegative);
  EXPECT_EQ(run_sts_txt({"v=STSv1; id=a;", "v=STSv1; id=b;"}).verdict, Verdict::kNegative);

  EXPECT_EQ(run_sts_parse(dir_ + "/missing").verdict, Verdict::kUsage);
}

TEST_F(CtlOfflineTest, ConfigValidateUnreadableIsNegative) {
  const Report r = run_config_validate(dir_ + "/missing.yaml");
  EXPECT_EQ(r.verdict, Verdict::kNegative);
  EXPECT_EQ(r.json["valid"], false);
  EXPECT_NE(r.text.find("cannot open"), std::string::npos) << r.text;
}

}  // namespace
}  // namespace mxedge::ctl::offline
