// Builds immutable runtime snapshots from a validated config; see runtime_config.h.
#include "dataplane/worker/runtime_config.h"

#include <netdb.h>

#include "policy/duration.h"

namespace mxedge::worker {

namespace {
int64_t to_ms(const google::protobuf::Duration& d) { return config::duration_ms(d); }
}  // namespace

std::shared_ptr<const RuntimeConfig> build_runtime(const mxedge::config::v1::Config& config, std::string* error) {
  using namespace mxedge::config::v1;
  auto rt = std::make_shared<RuntimeConfig>();
  rt->config = config;
  const Limits& lim = config.limits();
  for (const Listener& l : config.listeners()) {
    ListenerRuntime lr;
    lr.config = l;
    auto addr = SocketAddress::parse(l.address());
    if (!addr) {
      *error = "listener " + l.name() + ": invalid address " + l.address();
      return nullptr;
    }
    lr.address = *addr;
    if (l.tls_mode() != TLS_MODE_NONE) {
      std::vector<tls::CertificateFiles> certs;
      for (const auto& c : l.certificates()) certs.push_back({c.cert_file(), c.key_file()});
      std::string err;
      lr.ssl_ctx = tls::make_server_context(certs, &err, l.client_ca_file());
      if (!lr.ssl_ctx) {
        *error = "listener " + l.name() + ": " + err;
        return nullptr;
      }
    }
    auto p = std::make_shared<smtp::SessionPolicy>();
    p->hostname = config.hostname();
    p->listener_name = l.name();
    p->accepted_domains.assign(config.accepted_domains().begin(), config.accepted_domains().end());
    p->offer_starttls = l.tls_mode() == TLS_MODE_STARTTLS;
    p->implicit_tls = l.tls_mode() == TLS_MODE_IMPLICIT;
    p->require_tls = l.require_tls();
    p->outbound = l.role() == mxedge::config::v1::LISTENER_ROLE_OUTBOUND;
    p->require_client_certificate = l.require_client_certificate();
    for (const auto& n : l.allowed_networks()) {
      auto prefix = xdp::IpPrefix::parse(n);
      if (!prefix) {
        *error = "listener " + l.name() + ": invalid network '" + n + "' (host bits set beyond the length?)";
        return nullptr;
      }
      lr.allowed_networks.push_back(*prefix);
    }
    p->command_line_length = lim.command_line_length();
    p->text_line_length = lim.text_line_length();
    p->recipients_per_message = lim.recipients_per_message();
    p->message_size = lim.message_size();
    p->errors_per_session = lim.errors_per_session();
    lr.policy = std::move(p);
    rt->listeners.push_back(std::move(lr));
  }

  const auto& ob = config.outbound();
  rt->outbound.enabled = ob.enabled();
  rt->outbound.ca_file = ob.ca_file();
  rt->outbound.retry_min_ms = to_ms(ob.retry_min());
  rt->outbound.retry_max_ms = to_ms(ob.retry_max());
  rt->outbound.connections_per_destination = ob.connections_per_destination();
  rt->outbound.connect_timeout_ms = to_ms(ob.connect_timeout());
  rt->outbound.command_timeout_ms = to_ms(ob.command_timeout());
  rt->outbound.policy_wait_ms = to_ms(ob.policy_wait());
  rt->outbound.queue_lifetime_ms = to_ms(ob.queue_lifetime());
  rt->outbound.delay_warning_ms = to_ms(ob.delay_warning());
  rt->outbound.trace_retention_s = ob.trace_retention().seconds();

  const NextHop& nh = config.next_hop();
  RelayRuntime& r = rt->relay;
  r.host = nh.host();
  r.port = static_cast<uint16_t>(nh.port());
  r.tls = nh.tls();
  r.connections_per_worker = nh.connections_per_worker();
  r.connect_timeout_ms = to_ms(nh.connect_timeout());
  r.command_timeout_ms = to_ms(nh.command_timeout());
  r.retry_min_ms = to_ms(nh.retry_min());
  r.retry_max_ms = to_ms(nh.retry_max());
  if (auto literal = SocketAddress::from_ip_port(nh.host(), r.port)) {
    r.addresses.push_back(*literal);
  } else {
    r.sni = nh.host();
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(nh.host().c_str(), std::to_string(r.port).c_str(), &hints, &res);
    if (rc != 0) {
      *error = "next_hop.host " + nh.host() + " does not resolve: " + gai_strerror(rc);
      return nullptr;
    }
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) r.addresses.push_back(SocketAddress::from_sockaddr(a->ai_addr, a->ai_addrlen));
    freeaddrinfo(res);
  }
  r.verify_name = nh.verify_name().empty() ? nh.host() : nh.verify_name();
  if (nh.tls() != NEXT_HOP_TLS_NONE) {
    tls::ClientOptions co;
    co.verify = nh.tls() == NEXT_HOP_TLS_VERIFY;
    co.ca_file = nh.ca_file();
    co.verify_name = r.verify_name;
    std::string err;
    r.ssl_ctx = tls::make_client_context(co, &err);
    if (!r.ssl_ctx) {
      *error = "next_hop: " + err;
      return nullptr;
    }
  }

  rt->command_timeout_ms = to_ms(lim.command_timeout());
  rt->data_timeout_ms = to_ms(lim.data_timeout());
  rt->min_data_rate = lim.min_data_rate();
  rt->data_rate_grace_ms = to_ms(lim.data_rate_grace());
  rt->greeting_delay_ms = to_ms(lim.greeting_delay());
  rt->connections_per_source = lim.connections_per_source();
  rt->sessions_total = lim.sessions_total();
  return rt;
}

}  // namespace mxedge::worker
