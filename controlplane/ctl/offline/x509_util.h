// Small OpenSSL helpers for mxedgectl's offline tools: reading PEM files (certificates and keys),
// DER encodings, TLSA digests, certificate descriptions. Every function reports problems in `error`
// (a sentence for the operator) instead of throwing.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mxedge::ctl::offline {

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Reads `path` (a regular file or a pipe, not a directory) into `out`; at most `max_bytes`.
bool read_file(const std::string& path, size_t max_bytes, std::string* out, std::string* error);

// Every certificate of a PEM text, in order; other PEM blocks (private keys, parameters) are skipped.
// Fails (empty result, `error` set) when a certificate block does not parse or there is none.
// `what` names the input in messages ("chain.pem").
std::vector<X509Ptr> parse_pem_certificates(const std::string& pem, const std::string& what, std::string* error);
std::vector<X509Ptr> load_pem_certificates(const std::string& path, std::string* error);

// A private key (PKCS#8, traditional RSA/EC) or a public key (SubjectPublicKeyInfo) from a PEM file.
PkeyPtr load_pem_key(const std::string& path, std::string* error);

std::vector<uint8_t> cert_der(X509* cert);
std::vector<uint8_t> spki_der(X509* cert);
std::vector<uint8_t> spki_der(EVP_PKEY* key);

// The TLSA association data for `selected` (the DER of the full certificate or of the SPKI):
// matching type 0 the data itself, 1 SHA2-256, 2 SHA2-512. nullopt for other types.
std::optional<std::vector<uint8_t>> tlsa_digest(const std::vector<uint8_t>& selected, uint8_t mtype);

std::string subject_of(X509* cert);  // RFC 2253 form ("CN=mx.example.com,O=Example")
std::string issuer_of(X509* cert);
std::string not_before_of(X509* cert);  // "2026-11-22T19:41:55Z"
std::string not_after_of(X509* cert);
std::vector<std::string> dns_names_of(X509* cert);  // subjectAltName dNSName entries

// The text of OpenSSL's error queue (oldest first), which is cleared; "" when empty.
std::string openssl_errors();

}  // namespace mxedge::ctl::offline
