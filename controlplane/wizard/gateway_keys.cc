#include "controlplane/wizard/gateway_keys.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <memory>

namespace mxedge::wizard {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Never prompts for a passphrase.
int no_passphrase(char*, int, int, void*) { return 0; }

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM data";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::vector<uint8_t> cert_der(X509* x) {
  const int n = i2d_X509(x, nullptr);
  if (n <= 0) return {};
  std::vector<uint8_t> out(static_cast<size_t>(n));
  unsigned char* p = out.data();
  i2d_X509(x, &p);
  return out;
}

std::vector<uint8_t> pubkey_der(EVP_PKEY* k) {
  const int n = i2d_PUBKEY(k, nullptr);
  if (n <= 0) return {};
  std::vector<uint8_t> out(static_cast<size_t>(n));
  unsigned char* p = out.data();
  i2d_PUBKEY(k, &p);
  return out;
}

std::string describe_key(const EVP_PKEY* k) {
  const int id = EVP_PKEY_get_base_id(k);
  const std::string bits = std::to_string(EVP_PKEY_get_bits(k));
  if (id == EVP_PKEY_EC) return "EC " + bits;
  if (id == EVP_PKEY_RSA) return "RSA " + bits;
  if (id == EVP_PKEY_ED25519) return "Ed25519";
  return "key type " + std::to_string(id) + " " + bits;
}

std::vector<uint8_t> digest(std::span<const uint8_t> data, const EVP_MD* md) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1) return {};
  return {out, out + len};
}

bool matches_data(const policy::TlsaRecord& r, std::span<const uint8_t> selected) {
  switch (r.mtype) {
    case 0: return r.data.size() == selected.size() && std::equal(r.data.begin(), r.data.end(), selected.begin());
    case 1: return r.data == digest(selected, EVP_sha256());
    case 2: return r.data == digest(selected, EVP_sha512());
    default: return false;
  }
}

}  // namespace

std::optional<GatewayKey> load_certificate_chain(const std::string& path, std::string* error) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    *error = "cannot read " + path;
    return std::nullopt;
  }
  GatewayKey key;
  key.source = path;
  for (size_t i = 0;; ++i) {
    X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, &no_passphrase, nullptr));
    if (!x) {
      const unsigned long e = ERR_peek_last_error();
      // The end of the file: PEM_R_NO_START_LINE after at least one certificate.
      if (i > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        break;
      }
      *error = path + ": not a PEM certificate chain (" + openssl_error() + ")";
      return std::nullopt;
    }
    EVP_PKEY* pk = X509_get0_pubkey(x.get());
    if (!pk) {
      *error = path + ": certificate " + std::to_string(i + 1) + " has no usable public key";
      ERR_clear_error();
      return std::nullopt;
    }
    if (i == 0) {
      key.cert = cert_der(x.get());
      key.spki = pubkey_der(pk);
      key.description = describe_key(pk);
      char subject[256] = {};
      X509_NAME_oneline(X509_get_subject_name(x.get()), subject, sizeof subject);
      if (subject[0]) key.description += std::string(", ") + subject;
    } else {
      key.issuer_certs.push_back(cert_der(x.get()));
      key.issuer_spkis.push_back(pubkey_der(pk));
    }
  }
  if (key.spki.empty() || key.cert.empty()) {
    *error = path + ": cannot encode the certificate";
    return std::nullopt;
  }
  return key;
}

std::optional<GatewayKey> load_key(const std::string& path, std::string* error) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    *error = "cannot read " + path;
    return std::nullopt;
  }
  PkeyPtr k(PEM_read_bio_PrivateKey(bio.get(), nullptr, &no_passphrase, nullptr));
  if (!k) {
    ERR_clear_error();
    BIO_reset(bio.get());
    k.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, &no_passphrase, nullptr));
  }
  if (!k) {
    *error = path + ": not a PEM private or public key, or an encrypted one (" + openssl_error() + ")";
    return std::nullopt;
  }
  GatewayKey key;
  key.source = path;
  key.spki = pubkey_der(k.get());
  key.description = describe_key(k.get());
  if (key.spki.empty()) {
    *error = path + ": cannot encode the public key";
    return std::nullopt;
  }
  return key;
}

policy::TlsaRecord dane_ee_record(const GatewayKey& key) {
  policy::TlsaRecord r;
  r.usage = 3;
  r.selector = 1;
  r.mtype = 1;
  r.data = digest(key.spki, EVP_sha256());
  return r;
}

bool tlsa_matches(const policy::TlsaRecord& r, const GatewayKey& key) {
  if (r.selector > 1 || r.mtype > 2 || r.data.empty()) return false;
  if (r.usage == 3) {
    if (r.selector == 1) return matches_data(r, key.spki);
    return !key.cert.empty() && matches_data(r, key.cert);
  }
  if (r.usage == 2) {
    const auto& set = r.selector == 1 ? key.issuer_spkis : key.issuer_certs;
    for (const auto& d : set)
      if (matches_data(r, d)) return true;
  }
  return false;
}

std::string to_hex(std::span<const uint8_t> data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (uint8_t b : data) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  return to_hex(digest({reinterpret_cast<const uint8_t*>(data.data()), data.size()}, EVP_sha256()));
}

}  // namespace mxedge::wizard
