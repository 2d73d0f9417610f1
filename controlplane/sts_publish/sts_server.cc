// The MTA-STS policy host; see sts_server.h.
#include "controlplane/sts_publish/sts_server.h"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>

#include "controlplane/sts_publish/sts_publish.h"
#include "dataplane/tls/tls_context.h"
#include "policy/log.h"
#include "policy/socket_address.h"

namespace mxedge::sts_publish {
namespace {

constexpr const char* kPolicyPath = "/.well-known/mta-sts.txt";

// TLS 1.2+ and one certificate chain with its key.
bool configure(SSL_CTX* ctx, const config::v1::Certificate& cert, std::string* error) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.cert_file().c_str()) != 1) {
    *error = "cannot load certificate " + cert.cert_file() + ": " + tls::last_error();
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, cert.key_file().c_str(), SSL_FILETYPE_PEM) != 1) {
    *error = "cannot load key " + cert.key_file() + ": " + tls::last_error();
    return false;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    *error = "key " + cert.key_file() + " does not match certificate " + cert.cert_file();
    return false;
  }
  return true;
}

bool covers(SSL_CTX* ctx, const std::string& name) {
  X509* leaf = SSL_CTX_get0_certificate(ctx);
  return leaf != nullptr && X509_check_host(leaf, name.data(), name.size(), 0, nullptr) == 1;
}

}  // namespace

int StsPublishServer::on_servername(SSL* ssl, int*, void* arg) {
  auto* self = static_cast<StsPublishServer*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr || self->server_ == nullptr) return SSL_TLSEXT_ERR_OK;
  const std::string n(name);
  if (covers(self->server_->ssl_context(), n)) return SSL_TLSEXT_ERR_OK;
  for (SSL_CTX* c : self->sni_ctx_) {
    if (covers(c, n)) {
      SSL_set_SSL_CTX(ssl, c);
      break;
    }
  }
  return SSL_TLSEXT_ERR_OK;  // no certificate names it: the first one
}

std::unique_ptr<StsPublishServer> StsPublishServer::start(const config::v1::Config& config, std::string* error) {
  auto self = bind(config, error);
  if (self) self->serve();
  return self;
}

std::unique_ptr<StsPublishServer> StsPublishServer::bind(const config::v1::Config& config, std::string* error) {
  const auto& pc = config.mta_sts_publish();
  auto addr = SocketAddress::parse(pc.listen());
  if (!addr) {
    *error = "mta_sts_publish: invalid listen address '" + pc.listen() + "'";
    return nullptr;
  }
  if (pc.certificates_size() == 0) {
    *error = "mta_sts_publish: no certificates";
    return nullptr;
  }
  std::unique_ptr<StsPublishServer> self(new StsPublishServer());
  for (int i = 1; i < pc.certificates_size(); ++i) {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    if (c == nullptr) {
      *error = "mta_sts_publish: " + tls::last_error();
      return nullptr;
    }
    self->sni_ctx_.push_back(c);
    if (!configure(c, pc.certificates(i), error)) {
      *error = "mta_sts_publish: " + *error;
      return nullptr;
    }
  }
  std::string setup_error;
  StsPublishServer* raw = self.get();
  self->server_ = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
    if (!configure(&ctx, pc.certificates(0), &setup_error)) return false;
    if (!raw->sni_ctx_.empty()) {
      SSL_CTX_set_tlsext_servername_callback(&ctx, &StsPublishServer::on_servername);
      SSL_CTX_set_tlsext_servername_arg(&ctx, raw);
    }
    return true;
  });
  if (!self->server_->is_valid()) {
    *error = "mta_sts_publish: " + (setup_error.empty() ? "cannot create the TLS context" : setup_error);
    return nullptr;
  }
  std::vector<std::string> domains(config.accepted_domains().begin(), config.accepted_domains().end());
  for (const std::string& d : domains) {
    const std::string host = "mta-sts." + d;
    bool named = covers(self->server_->ssl_context(), host);
    for (SSL_CTX* c : self->sni_ctx_) named = named || covers(c, host);
    if (!named) log::warning("mta_sts.publish.no_certificate").kv("host", host).kv("detail", "no mta_sts_publish certificate names it; senders will not fetch the policy");
  }
  self->set_policy(policy_text(config), std::move(domains));

  httplib::SSLServer& srv = *self->server_;
  srv.new_task_queue = [] { return new httplib::ThreadPool(4); };
  srv.set_read_timeout(10, 0);
  srv.set_write_timeout(10, 0);
  srv.set_keep_alive_max_count(10);
  srv.set_payload_max_length(16 << 10);
  srv.Get(kPolicyPath, [raw](const httplib::Request& req, httplib::Response& res) {
    auto st = raw->state();
    auto domain = served_domain(req.get_header_value("Host"), st->domains);
    if (!domain) {
      res.status = 404;
      res.set_content("no MTA-STS policy for this host\n", "text/plain");
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_content(st->text, "text/plain");
  });
  srv.set_logger([raw](const httplib::Request& req, const httplib::Response& res) {
    auto st = raw->state();
    log::Line line(log::Level::kInfo, "mta_sts.publish.request");
    line.kv("peer", req.remote_addr).kv("method", req.method).kv("host", req.get_header_value("Host")).kv("path", req.path)
        .kv("status", res.status);
    if (res.status == 200) line.kv("id", st->id);
  });
  if (!srv.bind_to_port(addr->ip_text(), addr->port())) {
    *error = "mta_sts_publish: cannot listen on " + addr->to_string();
    return nullptr;
  }
  self->port_ = addr->port();
  // Listening from here on: connections wait in the backlog until serve() starts the thread.
  log::info("mta_sts.publish.started").kv("listen", addr->to_string()).kv("domains", static_cast<int64_t>(config.accepted_domains_size()))
      .kv("mode", policy::to_string(publish_mode(pc.mode())))
      .kv("id", self->state()->id);
  return self;
}

void StsPublishServer::serve() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "mxedge-mtasts");
    server_->listen_after_bind();
  });
}

StsPublishServer::~StsPublishServer() {
  stop();
  server_.reset();
  for (SSL_CTX* c : sni_ctx_) SSL_CTX_free(c);
}

void StsPublishServer::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void StsPublishServer::set_policy(std::string text, std::vector<std::string> domains) {
  auto st = std::make_shared<State>();
  st->id = policy_id(text);
  st->text = std::move(text);
  st->domains = std::move(domains);
  std::lock_guard<std::mutex> lock(mu_);
  state_ = std::move(st);
}

std::shared_ptr<const StsPublishServer::State> StsPublishServer::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

}  // namespace mxedge::sts_publish
