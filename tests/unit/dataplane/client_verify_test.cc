// OutboundTls against real in-memory handshakes: certificates generated here (EC P-256), an OpenSSL
// server SSL on one end of a BIO pair and the client SSL from new_ssl() on the other.
#include "dataplane/tls/client_verify.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/unit/support/test_certs.h"

namespace mxedge::tls {
namespace {

using policy::HostPolicy;
using policy::TlsaRecord;
using policy::TlsRequirement;

struct CtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslFree {
  void operator()(SSL* p) const { SSL_free(p); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

using test_certs::Cert;
using test_certs::kDay;
using test_certs::make_cert;

std::vector<uint8_t> spki_der(X509* x) {
  unsigned char* p = nullptr;
  int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &p);
  std::vector<uint8_t> out(p, p + (n > 0 ? n : 0));
  OPENSSL_free(p);
  return out;
}

TlsaRecord tlsa(uint8_t usage, uint8_t selector, uint8_t mtype, X509* x) {
  std::vector<uint8_t> in = selector == 0 ? test_certs::cert_der(x) : spki_der(x);
  TlsaRecord r{usage, selector, mtype, {}};
  if (mtype == 0) {
    r.data = in;
  } else {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(in.data(), in.size(), md, &len, mtype == 1 ? EVP_sha256() : EVP_sha512(), nullptr);
    r.data.assign(md, md + len);
  }
  return r;
}

class ClientVerifyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new Cert(make_cert("Test Root CA", {}, nullptr, true));
    inter_ = new Cert(make_cert("Test Intermediate CA", {}, root_, true));
    leaf_ = new Cert(make_cert("mx.example.test", {"mx.example.test"}, inter_, false));
    other_ = new Cert(make_cert("other.test", {"other.test"}, inter_, false));
    wildcard_ = new Cert(make_cert("*.example.test", {"*.example.test"}, inter_, false));
    partial_ = new Cert(make_cert("m*.example.test", {"m*.example.test"}, inter_, false));
    expired_ = new Cert(make_cert("mx.example.test", {"mx.example.test"}, inter_, false, -10 * kDay, -kDay));
    rogue_root_ = new Cert(make_cert("Rogue Root CA", {}, nullptr, true));
    untrusted_ = new Cert(make_cert("mx.example.test", {"mx.example.test"}, rogue_root_, false));

    char path[] = "/tmp/client_verify_test_ca_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    ca_file_ = new std::string(path);
    FILE* f = std::fopen(path, "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(PEM_write_X509(f, root_->cert.get()), 1);
    std::fclose(f);
  }

  static void TearDownTestSuite() {
    std::remove(ca_file_->c_str());
    for (Cert* c : {root_, inter_, leaf_, other_, wildcard_, partial_, expired_, rogue_root_, untrusted_}) delete c;
    delete ca_file_;
  }

  void SetUp() override {
    ERR_clear_error();
    std::string error;
    OutboundTlsOptions options;
    options.ca_file = *ca_file_;
    tls_ = OutboundTls::create(options, &error);
    ASSERT_TRUE(tls_) << error;
    ASSERT_EQ(tls_->cached_sessions(), 0u);
  }

  // A server presenting `leaf` and then `chain`, at most `max_version` (0: no cap).
  static CtxPtr server(const Cert& leaf, std::vector<const Cert*> chain, int max_version = 0) {
    CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    EXPECT_TRUE(ctx);
    if (!ctx) return ctx;
    EXPECT_EQ(SSL_CTX_use_certificate(ctx.get(), leaf.cert.get()), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx.get(), leaf.key.get()), 1);
    for (const Cert* c : chain) EXPECT_EQ(SSL_CTX_add1_chain_cert(ctx.get(), c->cert.get()), 1);
    if (max_version != 0) SSL_CTX_set_max_proto_version(ctx.get(), max_version);
    static const unsigned char kSid[] = "test";
    SSL_CTX_set_session_id_context(ctx.get(), kSid, sizeof kSid - 1);
    return ctx;
  }
  static CtxPtr server_chain(const Cert& leaf, int max_version = 0) { return server(leaf, {inter_}, max_version); }

  struct Result {
    bool handshake = false;
    int reused = -1;
    std::string sni;  // what the server saw
    std::string version;
    VerifyOutcome outcome;
  };

  // A full connection: new_ssl, handshake through a BIO pair, a server greeting read by the client
  // (which also makes it process TLS 1.3 tickets), check().
  Result connect(const HostPolicy& host, SSL_CTX* server_ctx, OutboundTls* tls = nullptr) {
    if (tls == nullptr) tls = tls_.get();
    Result r;
    std::string error;
    SslPtr client(tls->new_ssl(host, &error));
    EXPECT_TRUE(client) << error;
    SslPtr srv(SSL_new(server_ctx));
    EXPECT_TRUE(srv);
    if (!client || !srv) return r;
    BIO* cbio = nullptr;
    BIO* sbio = nullptr;
    EXPECT_EQ(BIO_new_bio_pair(&cbio, 0, &sbio, 0), 1);
    SSL_set_bio(client.get(), cbio, cbio);
    SSL_set_bio(srv.get(), sbio, sbio);
    SSL_set_connect_state(client.get());
    SSL_set_accept_state(srv.get());

    bool client_done = false, server_done = false, failed = false;
    auto step = [&failed](SSL* ssl, bool* done) {
      if (*done || failed) return;
      int rc = SSL_do_handshake(ssl);
      if (rc == 1) {
        *done = true;
        return;
      }
      int e = SSL_get_error(ssl, rc);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) failed = true;
    };
    for (int i = 0; i < 50 && !failed && !(client_done && server_done); ++i) {
      step(client.get(), &client_done);
      step(srv.get(), &server_done);
    }
    r.handshake = client_done && server_done && !failed;
    if (const char* sni = SSL_get_servername(srv.get(), TLSEXT_NAMETYPE_host_name)) r.sni = sni;
    if (r.handshake) {
      const char greeting[] = "220 ok";
      EXPECT_EQ(SSL_write(srv.get(), greeting, sizeof greeting - 1), static_cast<int>(sizeof greeting - 1));
      char buf[64];
      EXPECT_EQ(SSL_read(client.get(), buf, sizeof buf), static_cast<int>(sizeof greeting - 1));
      r.reused = SSL_session_reused(client.get());
      r.version = SSL_get_version(client.get());
    }
    r.outcome = tls->check(client.get(), host);
    // Like QUIT: a session freed without close_notify is marked not resumable by OpenSSL.
    if (r.handshake) SSL_shutdown(client.get());
    ERR_clear_error();
    return r;
  }

  static HostPolicy host_named(const std::string& name, TlsRequirement req) {
    HostPolicy h;
    h.name = name;
    h.tls = req;
    h.addresses = {"192.0.2.25"};
    return h;
  }
  static HostPolicy dane(std::vector<TlsaRecord> records, std::vector<std::string> names = {"mx.example.test"}) {
    HostPolicy h = host_named("mx.example.test", TlsRequirement::kDane);
    h.tlsa = std::move(records);
    h.dane_names = std::move(names);
    return h;
  }

  static void expect_dane_verified(const Result& r, int usage, int selector, int mtype, int depth) {
    EXPECT_TRUE(r.handshake);
    EXPECT_TRUE(r.outcome.satisfied) << r.outcome.failure;
    EXPECT_TRUE(r.outcome.verified) << r.outcome.failure;
    EXPECT_EQ(r.outcome.method, "dane");
    EXPECT_EQ(r.outcome.dane_usage, usage);
    EXPECT_EQ(r.outcome.dane_selector, selector);
    EXPECT_EQ(r.outcome.dane_mtype, mtype);
    EXPECT_EQ(r.outcome.match_depth, depth);
    EXPECT_EQ(r.outcome.result_type, "");
    EXPECT_EQ(r.outcome.failure, "");
  }
  static void expect_failed(const Result& r, const std::string& method, const std::string& result_type) {
    EXPECT_TRUE(r.handshake) << "verification must not abort the handshake";
    EXPECT_FALSE(r.outcome.satisfied);
    EXPECT_FALSE(r.outcome.verified);
    EXPECT_EQ(r.outcome.method, method);
    EXPECT_EQ(r.outcome.result_type, result_type) << r.outcome.failure;
    EXPECT_FALSE(r.outcome.failure.empty());
  }

  static Cert* root_;
  static Cert* inter_;
  static Cert* leaf_;
  static Cert* other_;
  static Cert* wildcard_;
  static Cert* partial_;
  static Cert* expired_;
  static Cert* rogue_root_;
  static Cert* untrusted_;
  static std::string* ca_file_;
  std::unique_ptr<OutboundTls> tls_;
};

Cert* ClientVerifyTest::root_ = nullptr;
Cert* ClientVerifyTest::inter_ = nullptr;
Cert* ClientVerifyTest::leaf_ = nullptr;
Cert* ClientVerifyTest::other_ = nullptr;
Cert* ClientVerifyTest::wildcard_ = nullptr;
Cert* ClientVerifyTest::partial_ = nullptr;
Cert* ClientVerifyTest::expired_ = nullptr;
Cert* ClientVerifyTest::rogue_root_ = nullptr;
Cert* ClientVerifyTest::untrusted_ = nullptr;
std::string* ClientVerifyTest::ca_file_ = nullptr;

// --- DANE-EE ---------------------------------------------------------------------------------------

TEST_F(ClientVerifyTest, DaneEeSpkiSha256MatchesLeaf) {
  CtxPtr srv = server_chain(*leaf_);
  Result r = connect(dane({tlsa(3, 1, 1, leaf_->cert.get())}), srv.get());
  expect_dane_verified(r, 3, 1, 1, 0);
  EXPECT_EQ(r.sni, "mx.example.test");
  EXPECT_EQ(r.outcome.tlsa_accepted, 1);
  EXPECT_EQ(r.outcome.tlsa_rejected, 0);
  EXPECT_NE(r.outcome.peer_subject.find("CN=mx.example.test"), std::string::npos) << r.outcome.peer_subject;
}

TEST_F(ClientVerifyTest, DaneEeIgnoresNamesDatesAndIssuer) {  // RFC 7672 §3.1.1
  for (Cert* c : {other_, expired_, untrusted_}) {
    CtxPtr srv = server(*c, {});
    Result r = connect(dane({tlsa(3, 1, 1, c->cert.get())}), srv.get());
    expect_dane_verified(r, 3, 1, 1, 0);
  }
}

TEST_F(ClientVerifyTest, DaneEeFullCertificateSha256) {
  CtxPtr srv = server_chain(*leaf_);
  expect_dane_verified(connect(dane({tlsa(3, 0, 1, leaf_->cert.get())}), srv.get()), 3, 0, 1, 0);
}

TEST_F(ClientVerifyTest, DaneEeSpkiSha512) {
  CtxPtr srv = server_chain(*leaf_);
  expect_dane_verified(connect(dane({tlsa(3, 1, 2, leaf_->cert.get())}), srv.get()), 3, 1, 2, 0);
}

TEST_F(ClientVerifyTest, DaneEeMismatchFails) {
  CtxPtr srv = server_chain(*leaf_);
  Result r = connect(dane({tlsa(3, 1, 1, other_->cert.get())}), srv.get());
  expect_failed(r, "dane", "validation-failure");
  EXPECT_EQ(r.outcome.failure, "no TLSA record matched");
  EXPECT_EQ(r.outcome.dane_usage, -1);
  EXPECT_EQ(r.outcome.match_depth, -1);
}

TEST_F(ClientVerifyTest, DaneMatchesAnyRecordOfTheSet) {
  CtxPtr srv = server_chain(*leaf_);
  Result r = connect(dane({tlsa(3, 1, 1, other_->cert.get()), tlsa(3, 1, 1, leaf_->cert.get())}), srv.get());
  expect_dane_verified(r, 3, 1, 1, 0);
  EXPECT_EQ(r.outcome.tlsa_accepted, 2);
}

// --- DANE-TA ---------------------------------------------------------------------------------------

TEST_F(ClientVerifyTest, DaneTaOnIntermediate) {
  CtxPtr srv = server_chain(*leaf_);
  expect_dane_verified(connect(dane({tlsa(2, 1, 1, inter_->cert.get())}), srv.get()), 2, 1, 1, 1);
}

TEST_F(ClientVerifyTest, DaneTaChecksTheName) {
  CtxPtr srv = server_chain(*other_);
  Result r = connect(dane({tlsa(2, 1, 1, inter_->cert.get())}), srv.get());
  expect_failed(r, "dane", "certificate-host-mismatch");
  EXPECT_EQ(r.outcome.failure, "hostname mismatch");
  EXPECT_EQ(r.outcome.dane_usage, -1);  // OpenSSL reports the match only for a verified chain
}

TEST_F(ClientVerifyTest, DaneTaChecksTheDates) {  // unlike DANE-EE, a DANE-TA chain is validated
  CtxPtr srv = server_chain(*expired_);
  Result r = connect(dane({tlsa(2, 1, 1, inter_->cert.get())}), srv.get());
  expect_failed(r, "dane", "certificate-expired");
}

TEST_F(ClientVerifyTest, DaneTaRejectsPartialWildcard) {
  CtxPtr srv = server_chain(*partial_);
  expect_failed(connect(dane({tlsa(2, 1, 1, inter_->cert.get())}), srv.get()), "dane", "certificate-host-mismatch");
}

TEST_F(ClientVerifyTest, DaneTaAcceptsMxNameAfterTheBaseDomain) {  // RFC 7672 §3.2.2
  CtxPtr srv = server_chain(*leaf_);
  HostPolicy h = dane({tlsa(2, 1, 1, inter_->cert.get())}, {"mx.cname-target.test", "mx.example.test"});
  Result r = connect(h, srv.get());
  expect_dane_verified(r, 2, 1, 1, 1);
  EXPECT_EQ(r.sni, "mx.cname-target.test");  // SNI is the TLSA base domain
}

TEST_F(ClientVerifyTest, DaneTaBaseDomainNameMatches) {
  Cert base = make_cert("mx.cname-target.test", {"mx.cname-target.test"}, inter_, false);
  CtxPtr srv = server_chain(base);
  HostPolicy h = dane({tlsa(2, 1, 1, inter_->cert.get())}, {"mx.cname-target.test", "mx.example.test"});
  expect_dane_verified(connect(h, srv.get()), 2, 1, 1, 1);
}

TEST_F(ClientVerifyTest, DaneTaOnRootInServedChain) {
  CtxPtr srv = server(*leaf_, {inter_, root_});
  expect_dane_verified(connect(dane({tlsa(2, 0, 1, root_->cert.get())}), srv.get()), 2, 0, 1, 2);
}

TEST_F(ClientVerifyTest, DaneTaFromAnotherCaDoesNotMatch) {
  CtxPtr srv = server(*untrusted_, {rogue_root_});
  expect_failed(connect(dane({tlsa(2, 1, 1, inter_->cert.get())}), srv.get()), "dane", "validation-failure");
}

// --- Unusable TLSA sets ----------------------------------------------------------------------------

TEST_F(ClientVerifyTest, OnlyUnusableRecordsIsTlsaInvalid) {
  CtxPtr srv = server_chain(*leaf_);
  TlsaRecord short_digest = tlsa(3, 1, 1, leaf_->cert.get());
  short_digest.data.pop_back();  // 31 bytes
  Result r = connect(dane({short_digest}), srv.get());
  expect_failed(r, "dane", "tlsa-invalid");
  EXPECT_EQ(r.outcome.tlsa_accepted, 0);
  EXPECT_EQ(r.outcome.tlsa_rejected, 1);
}

TEST_F(ClientVerifyTest, RecordOpenSslRejectsIsSkipped) {
  // classify() accepts selector 1 / matching type 0 with any data; OpenSSL must parse it as a key.
  CtxPtr srv = server_chain(*leaf_);
  TlsaRecord garbage{3, 1, 0, {0x30, 0x03, 0x01, 0x02, 0x03}};
  Result r = connect(dane({garbage}), srv.get());
  expect_failed(r, "dane", "tlsa-invalid");
  EXPECT_EQ(r.outcome.tlsa_rejected, 1);

  Result mixed = connect(dane({garbage, tlsa(3, 1, 0, leaf_->cert.get())}), srv.get());
  expect_dane_verified(mixed, 3, 1, 0, 0);
  EXPECT_EQ(mixed.outcome.tlsa_accepted, 1);
  EXPECT_EQ(mixed.outcome.tlsa_rejected, 1);
}

TEST_F(ClientVerifyTest, PkixUsagesAreNeverUsed) {
  // A PKIX-EE record for a chain the store trusts: unusable for SMTP (RFC 7672 §3.1.3).
  CtxPtr srv = server_chain(*leaf_);
  expect_failed(connect(dane({tlsa(1, 1, 1, leaf_->cert.get())}), srv.get()), "dane", "tlsa-invalid");
}

TEST_F(ClientVerifyTest, EmptyTlsaSetIsTlsaInvalid) {
  CtxPtr srv = server_chain(*leaf_);
  expect_failed(connect(dane({}), srv.get()), "dane", "tlsa-invalid");
}

// --- WebPKI ----------------------------------------------------------------------------------------

TEST_F(ClientVerifyTest, WebPkiTrustedChainAndName) {
  CtxPtr srv = server_chain(*leaf_);
  Result r = connect(host_named("mx.example.test", TlsRequirement::kWebPki), srv.get());
  EXPECT_TRUE(r.handshake);
  EXPECT_TRUE(r.outcome.satisfied) << r.outcome.failure;
  EXPECT_TRUE(r.outcome.verified);
  EXPECT_EQ(r.outcome.method, "webpki");
  EXPECT_EQ(r.outcome.result_type, "");
  EXPECT_EQ(r.outcome.dane_usage, -1);
  EXPECT_EQ(r.sni, "mx.example.test");
}

TEST_F(ClientVerifyTest, WebPkiWildcardMatchesExactlyOneLabel) {
  CtxPtr srv = server_chain(*wildcard_);
  Result one = connect(host_named("mx.example.test", TlsRequirement::kWebPki), srv.get());
  EXPECT_TRUE(one.outcome.verified) << one.outcome.failure;
  EXPECT_TRUE(one.outcome.satisfied);
  Result two = connect(host_named("a.mx.example.test", TlsRequirement::kWebPki), srv.get());
  expect_failed(two, "webpki", "certificate-host-mismatch");
  Result bare = connect(host_named("example.test", TlsRequirement::kWebPki), srv.get());
  expect_failed(bare, "webpki", "certificate-host-mismatch");
}

TEST_F(ClientVerifyTest, WebPkiRejectsPartialWildcard) {
  CtxPtr srv = server_chain(*partial_);
  expect_failed(connect(host_named("mx.example.test", TlsRequirement::kWebPki), srv.get()), "webpki",
                "certificate-host-mismatch");
}

TEST_F(ClientVerifyTest, WebPkiWrongName) {
  CtxPtr srv = server_chain(*other_);
  Result r = connect(host_named("mx.example.test", TlsRequirement::kWebPki), srv.get());
  expect_failed(r, "webpki", "certificate-host-mismatch");
  EXPECT_EQ(r.outcome.failure, "hostname mismatch");
}

TEST_F(ClientVerifyTest, WebPkiExpired) {
  CtxPtr srv = server_chain(*expired_);
  Result r = connect(host_named("mx.example.test", TlsRequirement::kWebPki), srv.get());
  expect_failed(r, "webpki", "certificate-expired");
  EXPECT_EQ(r.outcome.failure, "certificate has expired");
}

TEST_F(ClientVerifyTest, WebPkiUntrustedCa) {
  CtxPtr srv = server(*untrusted_, {rogue_root_});
  expect_failed(connect(host_named("mx.example.test", TlsRequirement::kWebPki), srv.get()), "webpki",
                "certificate-not-trusted");
  CtxPtr leaf_only = server(*untrusted_, {});
  expect_failed(connect(host_named("mx.example.test", TlsRequirement::kWebPki), leaf_only.get()), "webpki",
                "certificate-not-trusted");
}

TEST_F(ClientVerifyTest, WebPkiIgnoresTlsaAndDaneIgnoresTheStore) {
  // A DANE-only trust decision must not leak into WebPKI, and the other way round.
  CtxPtr srv = server(*untrusted_, {});
  HostPolicy web = host_named("mx.example.test", TlsRequirement::kWebPki);
  web.tlsa = {tlsa(3, 1, 1, untrusted_->cert.get())};
  expect_failed(connect(web, srv.get()), "webpki", "certificate-not-trusted");
  CtxPtr trusted = server_chain(*leaf_);
  expect_failed(connect(dane({tlsa(3, 1, 1, other_->cert.get())}), trusted.get()), "dane", "validation-failure");
}

// --- Opportunistic ---------------------------------------------------------------------------------

TEST_F(ClientVerifyTest, MayIsSatisfiedWithoutVerification) {
  CtxPtr srv = server(*untrusted_, {});
  for (TlsRequirement req : {TlsRequirement::kMay, TlsRequirement::kEncrypt}) {
    Result r = connect(host_named("mx.example.test", req), srv.get());
    EXPECT_TRUE(r.handshake);
    EXPECT_TRUE(r.outcome.satisfied);
    EXPECT_FALSE(r.outcome.verified);
    EXPECT_EQ(r.outcome.method, "none");
    EXPECT_EQ(r.outcome.result_type, "");
    EXPECT_FALSE(r.outcome.sts_testing_failed);
    EXPECT_EQ(r.sni, "mx.example.test");
  }
}

TEST_F(ClientVerifyTest, MayWithStsTestingReportsTheFailure) {
  CtxPtr srv = server_chain(*other_);
  HostPolicy h = host_named("mx.example.test", TlsRequirement::kMay);
  h.sts_testing = true;
  Result r = connect(h, srv.get());
  EXPECT_TRUE(r.handshake);
  EXPECT_TRUE(r.outcome.satisfied);
  EXPECT_FALSE(r.outcome.verified);
  EXPECT_TRUE(r.outcome.sts_testing_failed);
  EXPECT_EQ(r.outcome.method, "webpki");
  EXPECT_EQ(r.outcome.result_type, "certificate-host-mismatch");
}

TEST_F(ClientVerifyTest, EncryptWithStsTestingPasses) {
  CtxPtr srv = server_chain(*leaf_);
  HostPolicy h = host_named("mx.example.test", TlsRequirement::kEncrypt);
  h.sts_testing = true;
  Result r = connect(h, srv.get());
  EXPECT_TRUE(r.outcome.satisfied);
  EXPECT_TRUE(r.outcome.verified);
  EXPECT_FALSE(r.outcome.sts_testing_failed);
  EXPECT_EQ(r.outcome.result_type, "");
}

// --- Protocol version ------------------------------------------------------------------------------

TEST_F(ClientVerifyTest, MinTls13AgainstTls12ServerFails) {
  CtxPtr srv12 = server(*leaf_, {inter_}, TLS1_2_VERSION);
  HostPolicy h = host_named("mx.example.test", TlsRequirement::kMay);
  h.min_tls_version = 0x0304;
  Result r = connect(h, srv12.get());
  EXPECT_FALSE(r.handshake);
  EXPECT_FALSE(r.outcome.satisfied);
  EXPECT_EQ(r.outcome.failure, "TLS handshake not complete");

  CtxPtr srv = server_chain(*leaf_);
  Result ok = connect(h, srv.get());
  EXPECT_TRUE(ok.handshake);
  EXPECT_EQ(ok.version, "TLSv1.3");
  h.min_tls_version = 0x0303;
  Result tls12 = connect(h, srv12.get());
  EXPECT_TRUE(tls12.handshake);
  EXPECT_EQ(tls12.version, "TLSv1.2");
}

// --- Misuse ----------------------------------------------------------------------------------------

TEST_F(ClientVerifyTest, CheckWithAnotherPolicyFails) {
  CtxPtr srv = server_chain(*leaf_);
  HostPolicy may = host_named("mx.example.test", TlsRequirement::kMay);
  std::string error;
  SslPtr ssl(tls_->new_ssl(may, &error));
  ASSERT_TRUE(ssl) << error;
  VerifyOutcome v = tls_->check(ssl.get(), dane({tlsa(3, 1, 1, leaf_->cert.get())}));
  EXPECT_FALSE(v.satisfied);
  VerifyOutcome early = tls_->check(ssl.get(), may);  // no handshake yet
  EXPECT_FALSE(early.satisfied);
  EXPECT_EQ(early.failure, "TLS handshake not complete");
}

TEST_F(ClientVerifyTest, NewSslNeedsAName) {
  std::string error;
  EXPECT_EQ(tls_->new_ssl(host_named("", TlsRequirement::kWebPki), &error), nullptr);
  EXPECT_FALSE(error.empty());
}

// --- Session cache ---------------------------------------------------------------------------------

class SessionCacheTest : public ClientVerifyTest, public ::testing::WithParamInterface<int> {};

TEST_P(SessionCacheTest, ResumesOnlyUnderTheSameRequirement) {
  CtxPtr srv = server(*leaf_, {inter_}, GetParam());
  HostPolicy may = host_named("mx.example.test", TlsRequirement::kMay);
  Result first = connect(may, srv.get());
  ASSERT_TRUE(first.handshake);
  EXPECT_EQ(first.reused, 0);
  EXPECT_EQ(tls_->cached_sessions(), 1u);

  HostPolicy d = dane({tlsa(3, 1, 1, leaf_->cert.get())});
  Result second = connect(d, srv.get());
  EXPECT_EQ(second.reused, 0) << "a kMay session must not be offered for kDane";
  expect_dane_verified(second, 3, 1, 1, 0);
  EXPECT_FALSE(second.outcome.resumed);
  EXPECT_EQ(tls_->cached_sessions(), 2u);

  Result third = connect(d, srv.get());
  EXPECT_EQ(third.reused, 1);
  expect_dane_verified(third, 3, 1, 1, 0);
  EXPECT_TRUE(third.outcome.resumed);

  // The same host under WebPKI, or under DANE with another TLSA set: a full handshake.
  Result web = connect(host_named("mx.example.test", TlsRequirement::kWebPki), srv.get());
  EXPECT_EQ(web.reused, 0);
  EXPECT_TRUE(web.outcome.verified);
  HostPolicy d2 = dane({tlsa(3, 1, 1, leaf_->cert.get()), tlsa(2, 1, 1, inter_->cert.get())});
  Result other_set = connect(d2, srv.get());
  EXPECT_EQ(other_set.reused, 0);
  EXPECT_TRUE(other_set.outcome.verified);

  // Nor is it offered for kEncrypt (another requirement, although neither authenticates).
  Result encrypt = connect(host_named("mx.example.test", TlsRequirement::kEncrypt), srv.get());
  EXPECT_EQ(encrypt.reused, 0);

  // kMay resumes its own session.
  Result may_again = connect(may, srv.get());
  EXPECT_EQ(may_again.reused, 1);
  EXPECT_TRUE(may_again.outcome.satisfied);
  EXPECT_EQ(may_again.outcome.method, "none");
}

TEST_P(SessionCacheTest, FailedVerificationIsNotCached) {
  CtxPtr srv = server(*leaf_, {inter_}, GetParam());
  HostPolicy d = dane({tlsa(3, 1, 1, other_->cert.get())});
  Result first = connect(d, srv.get());
  EXPECT_FALSE(first.outcome.verified);
  EXPECT_EQ(tls_->cached_sessions(), 0u);
  Result second = connect(d, srv.get());
  EXPECT_EQ(second.reused, 0);
  expect_failed(second, "dane", "validation-failure");

  CtxPtr wrong = server(*other_, {inter_}, GetParam());
  HostPolicy web = host_named("mx.example.test", TlsRequirement::kWebPki);
  connect(web, wrong.get());
  EXPECT_EQ(tls_->cached_sessions(), 0u);
  Result web_again = connect(web, wrong.get());
  EXPECT_EQ(web_again.reused, 0);
  expect_failed(web_again, "webpki", "certificate-host-mismatch");
}

TEST_P(SessionCacheTest, TheMapIsBounded) {
  std::string error;
  OutboundTlsOptions options;
  options.ca_file = *ca_file_;
  options.max_cached_sessions = 2;
  auto small = OutboundTls::create(options, &error);
  ASSERT_TRUE(small) << error;
  CtxPtr srv = server(*leaf_, {inter_}, GetParam());
  for (const char* name : {"a.example.test", "b.example.test", "c.example.test"})
    connect(host_named(name, TlsRequirement::kMay), srv.get(), small.get());
  EXPECT_EQ(small->cached_sessions(), 2u);
  // The oldest went first.
  EXPECT_EQ(connect(host_named("a.example.test", TlsRequirement::kMay), srv.get(), small.get()).reused, 0);
  EXPECT_EQ(connect(host_named("c.example.test", TlsRequirement::kMay), srv.get(), small.get()).reused, 1);

  options.max_cached_sessions = 0;
  auto none = OutboundTls::create(options, &error);
  ASSERT_TRUE(none) << error;
  connect(host_named("a.example.test", TlsRequirement::kMay), srv.get(), none.get());
  EXPECT_EQ(none->cached_sessions(), 0u);
  EXPECT_EQ(connect(host_named("a.example.test", TlsRequirement::kMay), srv.get(), none.get()).reused, 0);
}

TEST_P(SessionCacheTest, SslOutlivesOutboundTls) {
  CtxPtr srv = server(*leaf_, {inter_}, GetParam());
  HostPolicy may = host_named("mx.example.test", TlsRequirement::kMay);
  std::string error;
  SslPtr ssl(tls_->new_ssl(may, &error));
  ASSERT_TRUE(ssl) << error;
  tls_.reset();  // the SSL keeps its context and the cache alive
  SslPtr s(SSL_new(srv.get()));
  BIO* cbio = nullptr;
  BIO* sbio = nullptr;
  ASSERT_EQ(BIO_new_bio_pair(&cbio, 0, &sbio, 0), 1);
  SSL_set_bio(ssl.get(), cbio, cbio);
  SSL_set_bio(s.get(), sbio, sbio);
  SSL_set_accept_state(s.get());
  int done = 0;
  for (int i = 0; i < 50 && done != 3; ++i) {
    if (!(done & 1) && SSL_connect(ssl.get()) == 1) done |= 1;
    if (!(done & 2) && SSL_accept(s.get()) == 1) done |= 2;
  }
  EXPECT_EQ(done, 3);
  ERR_clear_error();
}

INSTANTIATE_TEST_SUITE_P(Versions, SessionCacheTest, ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return p.param == TLS1_2_VERSION ? std::string("Tls12") : std::string("Tls13");
                         });

}  // namespace
}  // namespace mxedge::tls
