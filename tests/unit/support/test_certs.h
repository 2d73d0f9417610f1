// Test certificates made in-process with OpenSSL (EC P-256): a root, intermediates, leaves with
// DNS names, chosen validity. Shared by the unit tests that verify chains (client_verify_test,
// ctl_offline_test).
#pragma once

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <vector>

namespace mxedge::test_certs {

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct KeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};

struct Cert {
  std::unique_ptr<X509, X509Free> cert;
  std::unique_ptr<EVP_PKEY, KeyFree> key;
};

constexpr long kDay = 24 * 60 * 60;

inline void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
  ASSERT_NE(ext, nullptr) << value;
  EXPECT_EQ(X509_add_ext(cert, ext, -1), 1);
  X509_EXTENSION_free(ext);
}

// A certificate for `cn` (with `sans` as DNS names when not empty), signed by `issuer` (self-signed
// when null), valid from now + not_before to now + not_after (seconds).
inline Cert make_cert(const std::string& cn, const std::vector<std::string>& sans, const Cert* issuer, bool ca,
                      long not_before = -kDay, long not_after = 30 * kDay) {
  static long serial = 1;
  Cert c;
  c.key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  c.cert.reset(X509_new());
  if (!c.key || !c.cert) return c;
  X509* x = c.cert.get();
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), not_before);
  X509_gmtime_adj(X509_getm_notAfter(x), not_after);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer != nullptr ? issuer->cert.get() : x;
  X509_set_issuer_name(x, X509_get_subject_name(issuer_cert));
  X509_set_pubkey(x, c.key.get());
  add_ext(x, issuer_cert, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) add_ext(x, issuer_cert, NID_authority_key_identifier, "keyid");
  if (ca) {
    add_ext(x, issuer_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, issuer_cert, NID_key_usage, "critical,digitalSignature");
    add_ext(x, issuer_cert, NID_ext_key_usage, "serverAuth");
    std::string san;
    for (const auto& s : sans) san += (san.empty() ? "DNS:" : ",DNS:") + s;
    if (!san.empty()) add_ext(x, issuer_cert, NID_subject_alt_name, san.c_str());
  }
  EVP_PKEY* signer = issuer != nullptr ? issuer->key.get() : c.key.get();
  EXPECT_GT(X509_sign(x, signer, EVP_sha256()), 0);
  return c;
}

// The DER encoding of a certificate, straight from OpenSSL.
inline std::vector<uint8_t> cert_der(X509* x) {
  unsigned char* p = nullptr;
  const int n = i2d_X509(x, &p);
  std::vector<uint8_t> out(p, p + (n > 0 ? n : 0));
  OPENSSL_free(p);
  return out;
}

}  // namespace mxedge::test_certs
