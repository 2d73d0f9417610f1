// tls_client.h - the OpenSSL client context mxedge-loadgen's sessions share.
//
// DESCRIPTION
//   One SSL_CTX for the whole run, shared by every worker thread (OpenSSL 3
//   makes SSL_new on a shared context thread-safe). It is configured for many
//   long-lived, mostly idle connections and for measuring full handshakes:
//   read and write buffers are released while a connection is idle, writes may
//   complete partially and be retried from a moved buffer, and no session is
//   ever resumed, so every connection pays for a complete handshake.
//
// STANDARDS
//   RFC 8446 (TLS 1.3), RFC 5246 (TLS 1.2), RFC 6066 section 3 (SNI),
//   RFC 6125 (server identity check, via OpenSSL's SSL_set1_host).
//
// SECURITY
//   By default the server certificate is NOT verified: the tool measures a
//   lab server with a lab certificate. --verify turns on chain verification
//   (against --ca-file or the system store) and, with a name, the host name
//   check. A handshake that fails verification counts as a TLS error.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "loadgen_config.h"

namespace mxedge::loadgen {

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

// Builds the client context. On failure returns null and sets error.
SslCtxPtr make_client_context(const LoadgenConfig& config, std::string& error);

// A new client SSL for fd, with SNI and the name to verify set from config.
// Returns null when OpenSSL cannot allocate it.
SSL* new_client_ssl(SSL_CTX* ctx, const LoadgenConfig& config, int fd);

// Why the last handshake on ssl failed: when verifying, the certificate
// verification result if that was the cause, else the first OpenSSL error on this thread's queue.
std::string describe_tls_failure(SSL* ssl, bool verifying);

}  // namespace mxedge::loadgen
