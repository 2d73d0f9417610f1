// tls_client.cc - the OpenSSL client context mxedge-loadgen's sessions share.
//
// DESCRIPTION
//   SSL_MODE_RELEASE_BUFFERS matters for --idle: an idle TLS connection then
//   holds no 16 KiB+ record buffers, so ten thousand of them fit in the load
//   generator's memory without distorting anything. The session cache is off
//   because the benchmark compares full-handshake cost.
//
// STANDARDS
//   See tls_client.h.
//
// SECURITY
//   See tls_client.h. Callers clear the thread's error queue before each SSL
//   call, so an error described here belongs to the session that failed.
#include "tls_client.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

namespace mxedge::loadgen {

SslCtxPtr make_client_context(const LoadgenConfig& config, std::string& error) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    error = "SSL_CTX_new failed";
    return nullptr;
  }
  SSL_CTX_set_mode(ctx.get(),
                   SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  if (config.tls_min_version != 0 && SSL_CTX_set_min_proto_version(ctx.get(), config.tls_min_version) != 1) {
    error = "cannot set the minimum TLS version";
    return nullptr;
  }
  if (config.tls_max_version != 0 && SSL_CTX_set_max_proto_version(ctx.get(), config.tls_max_version) != 1) {
    error = "cannot set the maximum TLS version";
    return nullptr;
  }
  if (config.verify) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    const int loaded = config.ca_file.empty()
                           ? SSL_CTX_set_default_verify_paths(ctx.get())
                           : SSL_CTX_load_verify_locations(ctx.get(), config.ca_file.c_str(), nullptr);
    if (loaded != 1) {
      error =
          fmt::format("cannot load CA certificates{}{}: {}", config.ca_file.empty() ? "" : " from ", config.ca_file,
                      ERR_reason_error_string(ERR_peek_last_error()) ? ERR_reason_error_string(ERR_peek_last_error())
                                                                     : "unknown error");
      ERR_clear_error();
      return nullptr;
    }
  } else {
    // With SSL_VERIFY_NONE OpenSSL still builds and checks the chain, only to
    // ignore the result; that costs more than the handshake's own signature
    // check. Skip it, so that the client side of an unverified handshake is as
    // cheap as it can be and the server stays the bottleneck.
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_cert_verify_callback(
        ctx.get(), [](X509_STORE_CTX*, void*) { return 1; }, nullptr);
  }
  return ctx;
}

SSL* new_client_ssl(SSL_CTX* ctx, const LoadgenConfig& config, int fd) {
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr) return nullptr;
  bool ok = SSL_set_fd(ssl, fd) == 1;
  if (ok && !config.sni.empty()) ok = SSL_set_tlsext_host_name(ssl, config.sni.c_str()) == 1;
  if (ok && config.verify && !config.verify_name.empty()) {
    ok = SSL_set1_host(ssl, config.verify_name.c_str()) == 1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  }
  if (!ok) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_connect_state(ssl);
  return ssl;
}

std::string describe_tls_failure(SSL* ssl, bool verifying) {
  const long verify = verifying ? SSL_get_verify_result(ssl) : X509_V_OK;
  const unsigned long err = ERR_peek_error();
  std::string text;
  if (verify != X509_V_OK) {
    text = fmt::format("certificate verify failed: {}", X509_verify_cert_error_string(verify));
  } else if (err != 0) {
    char buffer[256];
    ERR_error_string_n(err, buffer, sizeof(buffer));
    text = buffer;
  } else {
    text = "connection closed during the handshake";
  }
  ERR_clear_error();
  return text;
}

}  // namespace mxedge::loadgen
