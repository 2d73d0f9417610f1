// Per-worker relay scheduling; see relay.h.
#include "dataplane/relay/relay.h"

#include <openssl/x509v3.h>

#include <algorithm>
#include <chrono>

#include "dataplane/delivery/dsn.h"
#include "dataplane/relay/relay_connection.h"
#include "policy/log.h"

namespace mxedge::relay {

namespace {
int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

Relay::Relay(worker::EventLoop& loop, spool::Spool& spool, unsigned worker_index, stats::WorkerCounters& counters)
    : loop_(loop),
      spool_(spool),
      worker_(worker_index),
      counters_(counters),
      deferred_timer_(&loop, [this] { release_deferred(); }),
      hop_timer_(&loop, [this] { kick(); }),
      rng_(std::random_device{}() ^ worker_index) {}

Relay::~Relay() {
  abort_all();
  graveyard_.clear();
}

void Relay::set_runtime(std::shared_ptr<const worker::RuntimeConfig> runtime) {
  runtime_ = std::move(runtime);
  kick();
}

void Relay::enqueue(spool::SpoolEntry* entry) {
  ready_.push_back(entry);
  kick();
}

int64_t Relay::backoff_ms(uint32_t failures) {
  const auto& r = runtime_->relay;
  int64_t d = r.retry_min_ms;
  for (uint32_t i = 1; i < failures && d < r.retry_max_ms; ++i) d *= 2;
  d = std::min(d, r.retry_max_ms);
  // ±10% jitter so that many messages deferred together do not return together.
  std::uniform_int_distribution<int64_t> jitter(-d / 10, d / 10);
  return std::max<int64_t>(1, d + jitter(rng_));
}

void Relay::kick() {
  if (!runtime_ || stopping_) return;
  if (loop_.now_ms() < hop_retry_at_) {
    hop_timer_.arm_at(hop_retry_at_);
    return;
  }
  // offer_work may close a connection (which moves it to the graveyard): iterate over a copy.
  std::vector<RelayConnection*> live;
  for (auto& c : connections_) live.push_back(c.get());
  for (auto* c : live) {
    if (ready_.empty()) return;
    c->offer_work();
  }
  // After a failure, probe with one connection before opening the rest.
  size_t limit = hop_failures_ > 0 ? 1 : runtime_->relay.connections_per_worker;
  // A connection that fails at once (socket() out of descriptors, connect() with no route) closes
  // inside start() and starts the back-off: stop opening then, or this loop would never end.
  while (!ready_.empty() && connections_.size() < std::min<size_t>(limit, ready_.size()) && loop_.now_ms() >= hop_retry_at_) {
    connections_.push_back(std::make_unique<RelayConnection>(*this));
    connections_.back()->start();
  }
}

ConnectTarget Relay::target(RelayConnection*) {
  const auto& r = runtime_->relay;
  ConnectTarget t;
  t.address = r.addresses[next_address_++ % r.addresses.size()];
  t.connect_timeout_ms = r.connect_timeout_ms;
  t.command_timeout_ms = r.command_timeout_ms;
  return t;
}

TlsNeed Relay::tls_need(RelayConnection*) const {
  switch (runtime_->relay.tls) {
    case config::v1::NEXT_HOP_TLS_NONE: return TlsNeed::kNever;
    case config::v1::NEXT_HOP_TLS_REQUIRED:
    case config::v1::NEXT_HOP_TLS_VERIFY: return TlsNeed::kRequired;
    default: return TlsNeed::kOpportunistic;
  }
}

SSL* Relay::new_ssl(RelayConnection*, std::string* error) {
  const auto& cfg = runtime_->relay;
  SSL* ssl = SSL_new(cfg.ssl_ctx.get());
  if (ssl == nullptr) {
    *error = "SSL_new failed";
    return nullptr;
  }
  if (!cfg.sni.empty()) SSL_set_tlsext_host_name(ssl, cfg.sni.c_str());
  if (cfg.tls == config::v1::NEXT_HOP_TLS_VERIFY) {
    if (SocketAddress::from_ip_port(cfg.verify_name, 0)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), cfg.verify_name.c_str());
    } else {
      SSL_set1_host(ssl, cfg.verify_name.c_str());
    }
  }
  return ssl;
}

// RFC 8689 4.2.1 for the configured next hop: its certificate must have been verified against
// next_hop.verify_name (tls: verify; the handshake fails otherwise).
std::string Relay::requiretls_refusal(RelayConnection*, SSL* ssl) {
  if (runtime_->relay.tls != config::v1::NEXT_HOP_TLS_VERIFY)
    return "no verified TLS with the next hop " + runtime_->relay.host + " (next_hop.tls is not verify)";
  if (ssl == nullptr || SSL_get_verify_result(ssl) != X509_V_OK || SSL_get0_peer_certificate(ssl) == nullptr)
    return "no verified TLS with the next hop " + runtime_->relay.host;
  return {};
}

bool Relay::next_job(RelayConnection*, Job* job) {
  if (stopping_ || ready_.empty()) return false;
  job->entry = ready_.front();
  job->rcpts.clear();
  ready_.pop_front();
  return true;
}

void Relay::report(RelayConnection*, const Job& job, const std::vector<mxedge::spool::v1::RecipientResult>& settled, const std::string& peer, SSL* ssl,
                   const std::string& reply) {
  const auto& env = job.entry->envelope;
  size_t delivered = 0;
  std::vector<delivery::DsnRecipient> failed;
  for (const auto& rr : settled) {
    if (rr.outcome() == mxedge::spool::v1::RECIPIENT_OUTCOME_DELIVERED) {
      ++delivered;
    } else {
      stats::bump(counters_.recipients_failed);
      log::warning("message.failed").kv("worker", worker_).kv("qid", env.queue_id())
          .kv("to", "<" + env.recipients(static_cast<int>(rr.index())).address() + ">")
          .kv("next_hop", peer).kv("reply", rr.reply());
      failed.push_back({rr.index(), delivery::enhanced_status(rr.reply(), "5.0.0"), runtime_->relay.host, "smtp; " + rr.reply()});
    }
  }
  if (!failed.empty()) {
    const std::vector<std::string> accepted(runtime_->config.accepted_domains().begin(), runtime_->config.accepted_domains().end());
    delivery::send_dsn(spool_, *job.entry, delivery::DsnKind::kFailure, std::move(failed), runtime_->config.hostname(), accepted,
                       runtime_->outbound.enabled);
  }
  if (delivered > 0 && delivered == job.rcpts.size()) stats::bump(counters_.messages_relayed);
  if (delivered > 0) {
    const int64_t now_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    log::info("message.relayed").kv("worker", worker_).kv("qid", env.queue_id())
        .kv("rcpts", static_cast<uint64_t>(delivered)).kv("next_hop", peer)
        .kv("tls", ssl != nullptr ? std::string(SSL_get_version(ssl)) : std::string("none"))
        .kv("delay_ms", (now_us - env.received_at_us()) / 1000).kv("reply", reply);
  }
}

void Relay::defer(RelayConnection*, const Job& job, const std::string& reason) {
  spool::SpoolEntry* entry = job.entry;
  ++entry->attempts;
  stats::bump(counters_.messages_deferred);
  int64_t delay = backoff_ms(entry->attempts);
  deferred_.emplace(loop_.now_ms() + delay, entry);
  deferred_timer_.arm_at(deferred_.begin()->first);
  entry->last_error = reason;
  entry->next_attempt_ms = wall_ms() + delay;
  log::info("message.deferred").kv("worker", worker_).kv("qid", entry->envelope.queue_id())
      .kv("attempts", entry->attempts).kv("retry_in_ms", delay).kv("reason", reason);
}

bool Relay::take(const spool::SpoolEntry* entry) {
  bool found = false;
  for (auto it = ready_.begin(); it != ready_.end();) {
    if (*it == entry) {
      it = ready_.erase(it);
      found = true;
    } else {
      ++it;
    }
  }
  for (auto it = deferred_.begin(); it != deferred_.end();) {
    if (it->second == entry) {
      it = deferred_.erase(it);
      found = true;
    } else {
      ++it;
    }
  }
  return found;
}

size_t Relay::retry(const std::function<bool(const spool::SpoolEntry&)>& match) {
  size_t n = 0;
  for (auto it = deferred_.begin(); it != deferred_.end();) {
    if (match(*it->second)) {
      it->second->next_attempt_ms = 0;
      ready_.push_back(it->second);
      it = deferred_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  if (n > 0) kick();
  return n;
}

void Relay::release_deferred() {
  const int64_t now = loop_.now_ms();
  while (!deferred_.empty() && deferred_.begin()->first <= now) {
    deferred_.begin()->second->next_attempt_ms = 0;
    ready_.push_back(deferred_.begin()->second);
    deferred_.erase(deferred_.begin());
  }
  if (!deferred_.empty()) deferred_timer_.arm_at(deferred_.begin()->first);
  kick();
}

void Relay::hop_ok(RelayConnection*) {
  if (hop_failures_ > 0) {
    log::info("relay.next_hop_available").kv("worker", worker_).kv("host", runtime_->relay.host);
  }
  hop_failures_ = 0;
  hop_retry_at_ = 0;
}

void Relay::hop_failed(RelayConnection*, const std::string& reason) {
  ++hop_failures_;
  stats::bump(counters_.next_hop_failures);
  int64_t delay = backoff_ms(hop_failures_);
  hop_retry_at_ = loop_.now_ms() + delay;
  hop_timer_.arm_at(hop_retry_at_);
  log::warning("relay.next_hop_unavailable").kv("worker", worker_).kv("host", runtime_->relay.host)
      .kv("port", static_cast<unsigned>(runtime_->relay.port)).kv("failures", hop_failures_).kv("retry_in_ms", delay)
      .kv("reason", reason).kv("queued", static_cast<uint64_t>(ready_.size() + deferred_.size()));
}

void Relay::connection_closed(RelayConnection* c) {
  auto it = std::find_if(connections_.begin(), connections_.end(), [c](const auto& p) { return p.get() == c; });
  if (it == connections_.end()) return;
  graveyard_.push_back(std::move(*it));
  connections_.erase(it);
  kick();
}

void Relay::stop() {
  stopping_ = true;
  std::vector<RelayConnection*> live;
  for (auto& c : connections_) live.push_back(c.get());
  for (auto* c : live) c->quit_if_idle();
}

void Relay::reap() { graveyard_.clear(); }

void Relay::abort_all() {
  stopping_ = true;
  while (!connections_.empty()) connections_.front()->abort("shutdown");
}

}  // namespace mxedge::relay
