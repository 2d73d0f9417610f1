// OpenSSL contexts for the data plane: one server SSL_CTX per listener (built once per config
// snapshot; sessions keep a reference to the context they started with, so a reload with new
// certificates never drops a connection), and the client context used to reach the next hop.
//
// STANDARDS: RFC 8996 / RFC 8314 (TLS 1.2 minimum), RFC 7525 cipher guidance, RFC 5746 (no
// renegotiation needed: it is refused).
// SECURITY: private keys are read here and nowhere else. No RC4, 3DES, NULL, export, MD5 or anonymous
// suites; TLS 1.2 minimum; compression and renegotiation off.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "dataplane/smtp/server_session.h"

namespace mxedge::tls {

struct CertificateFiles {
  std::string cert_file;  // PEM chain, leaf first
  std::string key_file;
};

using ContextPtr = std::shared_ptr<SSL_CTX>;

// Server context with every certificate loaded (one ECDSA and one RSA may coexist; OpenSSL picks by
// the client's signature algorithms). Returns null and sets *error on any problem.
// With `client_ca_file`, clients are asked for a certificate from those CAs; the handshake never fails
// for it (describe() reports whether one verified, and the session decides).
ContextPtr make_server_context(const std::vector<CertificateFiles>& certificates, std::string* error,
                               const std::string& client_ca_file = "");

struct ClientOptions {
  bool verify = false;      // verify the chain and the name
  std::string ca_file;      // empty: system default store
  std::string verify_name;  // name the certificate must carry
};
ContextPtr make_client_context(const ClientOptions& options, std::string* error);

// Negotiated protocol and cipher of an established connection.
smtp::TlsState describe(const SSL* ssl);

// Drains OpenSSL's error queue into one line of text.
std::string last_error();

}  // namespace mxedge::tls
