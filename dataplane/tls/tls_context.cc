// OpenSSL context construction; see tls_context.h for the policy.
#include "dataplane/tls/tls_context.h"

#include <openssl/err.h>

namespace mxedge::tls {
namespace {

// TLS 1.2 suites; TLS 1.3 suites are OpenSSL's defaults (all AEAD).
constexpr const char* kCipherList =
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:DHE+AES:AESGCM:AES:"
    "!aNULL:!eNULL:!RC4:!3DES:!DES:!MD5:!EXPORT:!PSK:!SRP:!DSS:!SEED:!IDEA";

void common_setup(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Idle sessions give their read/write buffers back: memory per idle TLS session stays small.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_cipher_list(ctx, kCipherList);
  // One read(2) per socket drain instead of two per record (header, then body).
  SSL_CTX_set_read_ahead(ctx, 1);
}

}  // namespace

std::string last_error() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

ContextPtr make_server_context(const std::vector<CertificateFiles>& certificates, std::string* error,
                               const std::string& client_ca_file) {
  ContextPtr ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) {
    *error = "SSL_CTX_new: " + last_error();
    return nullptr;
  }
  common_setup(ctx.get());
  static const unsigned char kSidContext[] = "mxedge";
  SSL_CTX_set_session_id_context(ctx.get(), kSidContext, sizeof kSidContext - 1);
  // TLS 1.3 sends two tickets by default; an MTA resumes at most one session per destination.
  SSL_CTX_set_num_tickets(ctx.get(), 1);
  for (const auto& c : certificates) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), c.cert_file.c_str()) != 1) {
      *error = "cannot load certificate " + c.cert_file + ": " + last_error();
      return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), c.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      *error = "cannot load private key " + c.key_file + ": " + last_error();
      return nullptr;
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
      *error = "private key " + c.key_file + " does not match certificate " + c.cert_file;
      return nullptr;
    }
  }
  if (!client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), client_ca_file.c_str(), nullptr) != 1) {
      *error = "cannot load client CA file " + client_ca_file + ": " + last_error();
      return nullptr;
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(client_ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx.get(), names);
    // Ask, verify, but let the handshake finish either way: the SMTP session refuses MAIL.
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
  }
  return ctx;
}

ContextPtr make_client_context(const ClientOptions& options, std::string* error) {
  ContextPtr ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (!ctx) {
    *error = "SSL_CTX_new: " + last_error();
    return nullptr;
  }
  common_setup(ctx.get());
  if (options.verify) {
    int ok = options.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                                     : SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr);
    if (ok != 1) {
      *error = "cannot load CA " + (options.ca_file.empty() ? std::string("(system store)") : options.ca_file) + ": " + last_error();
      return nullptr;
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  return ctx;
}

smtp::TlsState describe(const SSL* ssl) {
  smtp::TlsState t;
  t.active = true;
  t.version = SSL_get_version(ssl);
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl);
  if (c != nullptr) {
    t.cipher = SSL_CIPHER_get_name(c);
    t.bits = SSL_CIPHER_get_bits(c, nullptr);
  }
  if (!SSL_is_server(ssl)) return t;
  if (X509* peer = SSL_get0_peer_certificate(ssl)) {
    t.client_verified = SSL_get_verify_result(ssl) == X509_V_OK;
    char buf[256];
    X509_NAME_oneline(X509_get_subject_name(peer), buf, sizeof buf);
    t.client_subject = buf;
  }
  return t;
}

}  // namespace mxedge::tls
