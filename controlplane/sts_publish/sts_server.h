// The HTTPS server of the gateway's own MTA-STS policy (RFC 8461 §3.3): GET
// /.well-known/mta-sts.txt answered 200 text/plain with the policy when the Host header is
// mta-sts.<d> for an accepted domain d, 404 for anything else; no redirects; TLS 1.2+ only; the
// certificate chosen by SNI among `mta_sts_publish.certificates` (else the first). cpp-httplib's
// SSLServer (Debian's libcpp-httplib is built with CPPHTTPLIB_OPENSSL_SUPPORT) on a thread of its
// own with a small worker pool; every request is logged (event=mta_sts.publish.request).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mxedge/config/v1/config.pb.h"

namespace httplib {
class SSLServer;
}
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace mxedge::sts_publish {

class StsPublishServer {
 public:
  // Loads `config.mta_sts_publish().certificates`, binds `listen` and starts serving
  // policy_text(config) for config.accepted_domains(). nullptr and `error` on failure.
  static std::unique_ptr<StsPublishServer> start(const config::v1::Config& config, std::string* error);
  // start() in two steps: bind() does everything up to the bound socket (the part that may need
  // CAP_NET_BIND_SERVICE), serve() starts the serving thread, so that a daemon can drop its
  // privileges in between and the thread never has them.
  static std::unique_ptr<StsPublishServer> bind(const config::v1::Config& config, std::string* error);
  void serve();
  ~StsPublishServer();
  StsPublishServer(const StsPublishServer&) = delete;
  StsPublishServer& operator=(const StsPublishServer&) = delete;

  // Replaces the policy served and the domains it is served for (a reload); any thread. Requests in
  // progress finish with the old policy.
  void set_policy(std::string text, std::vector<std::string> domains);
  // Stops accepting, finishes requests in progress, joins the thread. Idempotent.
  void stop();
  uint16_t port() const { return port_; }

 private:
  struct State {
    std::string text, id;
    std::vector<std::string> domains;
  };
  StsPublishServer() = default;
  std::shared_ptr<const State> state() const;
  static int on_servername(SSL* ssl, int* alert, void* arg);

  std::unique_ptr<httplib::SSLServer> server_;
  std::vector<SSL_CTX*> sni_ctx_;  // one per certificate after the first (the first is the server's)
  mutable std::mutex mu_;
  std::shared_ptr<const State> state_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace mxedge::sts_publish
