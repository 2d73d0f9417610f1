// Outbound delivery by per-destination policy; see outbound.h.
#include "dataplane/delivery/outbound.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>

#include "dataplane/delivery/dsn.h"
#include "dataplane/relay/relay_connection.h"
#include "policy/log.h"

namespace mxedge::delivery {

namespace {

int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// RFC 8689 4.2.1: REQUIRETLS binds the sending MTA only for a non-null return-path.
bool requiretls_job(const relay::Job& j) {
  return j.entry != nullptr && j.entry->envelope.requiretls() && !j.entry->envelope.mail_from().empty();
}

// RFC 8689 5: "TLS-Required: No" (ignored when REQUIRETLS was given).
bool tls_required_no_job(const relay::Job& j) {
  return j.entry != nullptr && j.entry->envelope.tls_required_no() && !j.entry->envelope.requiretls();
}

bool tls_demanded(const policy::HostPolicy& h) { return !(h.tls == policy::TlsRequirement::kMay && h.cleartext_allowed); }

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Destination

Destination::Destination(Outbound& outbound, std::string domain) : out_(outbound), domain_(std::move(domain)) {}

Destination::~Destination() { abort_all(); }

worker::EventLoop& Destination::loop() { return out_.loop(); }
spool::Spool& Destination::spool() { return out_.spool(); }
unsigned Destination::worker_index() const { return out_.worker_index(); }
stats::WorkerCounters& Destination::counters() { return out_.counters(); }
const std::string& Destination::helo_name() const { return out_.runtime().config.hostname(); }
bool Destination::stopping() const { return out_.stopping(); }

void Destination::add(relay::Job job) {
  ready_.push_back(std::move(job));
  kick();
}

void Destination::kick() {
  if (out_.stopping() || ready_.empty()) return;
  std::vector<relay::RelayConnection*> live;
  for (auto& c : connections_) live.push_back(c.get());
  for (auto* c : live) {
    if (ready_.empty()) return;
    c->offer_work();
  }
  if (!connections_.empty()) {
    // A round is under way. Once a connection carries mail, open more to the same host, up to the
    // limit, while jobs wait; a failing host is probed by one connection only.
    const relay::RelayConnection* healthy = nullptr;
    for (const auto& [c, st] : conns_) {
      if (st.ok && !st.failed) healthy = c;
    }
    if (healthy == nullptr) return;
    const Conn& hs = conns_.at(const_cast<relay::RelayConnection*>(healthy));
    const size_t at = hs.attempt;
    size_t starting = 0;
    for (const auto& [c, st] : conns_) starting += st.ok ? 0 : 1;
    // Only the jobs that host may carry (a REQUIRETLS job it refused waits for another round).
    const size_t waiting = static_cast<size_t>(std::count_if(ready_.begin(), ready_.end(), [&](const relay::Job& j) { return carries(hs, j); }));
    while (!ready_.empty() && starting < waiting && connections_.size() < out_.runtime().outbound.connections_per_destination) {
      start_connection(at);
      ++starting;
    }
    return;
  }

  const int64_t now_ms = out_.loop().now_ms();
  auto p = out_.store().current()->find(domain_, static_cast<int64_t>(::time(nullptr)));
  if (!p) {
    if (waiting_since_ms_ < 0) {
      waiting_since_ms_ = now_ms;
      if (out_.client() != nullptr) out_.client()->request(domain_);
      log::info("delivery.policy_requested").kv("worker", worker_index()).kv("domain", domain_)
          .kv("queued", static_cast<uint64_t>(ready_.size()));
    } else if (now_ms - waiting_since_ms_ >= out_.runtime().outbound.policy_wait_ms) {
      waiting_since_ms_ = -1;
      defer_all("no delivery policy for " + domain_ + " from the control plane within " +
                    std::to_string(out_.runtime().outbound.policy_wait_ms / 1000) + "s",
                "4.4.3");
      return;
    }
    out_.wake_for_policy();
    return;
  }
  waiting_since_ms_ = -1;
  switch (p->verdict) {
    case policy::PolicyVerdict::kDefer:
      policy_ = p;
      defer_all(p->reason + (p->result_type.empty() ? "" : " [" + p->result_type + "]"), p->enhanced_status);
      return;
    case policy::PolicyVerdict::kBounce:
      policy_ = p;
      fail_all("550 " + (p->enhanced_status.empty() ? std::string("5.1.2") : p->enhanced_status) + " " + domain_ + ": " + p->reason);
      return;
    case policy::PolicyVerdict::kDeliver:
      break;
  }
  if (attempts_.empty() || policy_ != p || attempt_ >= attempts_.size()) {
    policy_ = p;
    plan_attempts();
  }
  fail_unroutable_requiretls();
  if (ready_.empty()) return;
  if (attempts_.empty()) {
    defer_all("the policy for " + domain_ + " lists no usable address", "4.4.4");
    return;
  }
  skip_useless_attempts();
  if (attempt_ >= attempts_.size()) {
    attempts_.clear();
    defer_all("no address of an MX host of " + domain_ + " that may carry these messages", "4.4.4");
    return;
  }
  start_connection(attempt_);
}

bool Destination::carries(const Conn& st, const relay::Job& job) const {
  if (requiretls_job(job)) {
    if (st.relaxed || !policy_ || st.attempt >= attempts_.size()) return false;
    const policy::HostPolicy& h = host_of(st);
    if (!policy::requiretls_host_refusal(*policy_, h).empty()) return false;
    auto d = job.entry->requiretls_refused.find(domain_);
    return d == job.entry->requiretls_refused.end() || d->second.find(h.name) == d->second.end();
  }
  if (st.relaxed) return tls_required_no_job(job);
  return true;
}

void Destination::skip_useless_attempts() {
  while (attempt_ < attempts_.size()) {
    Conn probe;
    probe.attempt = attempt_;
    if (std::any_of(ready_.begin(), ready_.end(), [&](const relay::Job& j) { return carries(probe, j); })) return;
    ++attempt_;
  }
}

void Destination::fail_unroutable_requiretls() {
  if (!policy_) return;
  std::vector<std::pair<relay::Job, std::string>> doomed;
  for (auto it = ready_.begin(); it != ready_.end();) {
    std::string why;
    if (requiretls_job(*it) && policy::requiretls_candidates(*policy_, it->entry->requiretls_refused[domain_], &why).empty()) {
      doomed.emplace_back(std::move(*it), why);
      it = ready_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [job, why] : doomed) {
    log::warning("delivery.requiretls_failed").kv("worker", worker_index()).kv("qid", job.entry->envelope.queue_id())
        .kv("domain", domain_).kv("reason", why);
    fail_job(std::move(job), "550 5.7.30 REQUIRETLS support required: " + why);
  }
}

// RFC 8689 4.2.1, the parts only a session shows: the peer authenticated by its requirement
// (DANE, WebPKI, or the MTA-STS testing check). The version, the advertisement and a TLS session at
// all are the connection's checks.
std::string Destination::requiretls_refusal(relay::RelayConnection* c, SSL*) {
  const Conn& st = conn(c);
  const policy::HostPolicy& h = host_of(st);
  if (std::string r = policy::requiretls_host_refusal(*policy_, h); !r.empty()) return r;
  if (st.relaxed || !st.tls.verified)
    return "no verified TLS with " + h.name + (st.tls.failure.empty() ? "" : " (" + st.tls.failure + ")");
  return {};
}

bool Destination::requiretls_refused(relay::RelayConnection* c, const relay::Job& job, const std::string& reason) {
  const Conn& st = conn(c);
  const policy::HostPolicy& h = host_of(st);
  job.entry->requiretls_refused[domain_][h.name] = reason;
  {
    auto te = event("requiretls_refused", &job, &st);
    te.detail = "5.7.30 " + reason;
    out_.trace(std::move(te));
  }
  std::string why;
  if (policy::requiretls_candidates(*policy_, job.entry->requiretls_refused[domain_], &why).empty()) {
    log::warning("delivery.requiretls_failed").kv("worker", worker_index()).kv("qid", job.entry->envelope.queue_id())
        .kv("domain", domain_).kv("reason", why);
    fail_job(job, "550 5.7.30 REQUIRETLS support required: " + why);
  } else {
    ready_.push_front(job);  // another MX host first (RFC 8689 4.2.1); this connection skips it
  }
  return true;
}

void Destination::relax(relay::RelayConnection* c, const std::string& reason) {
  Conn& st = conn(c);
  const policy::HostPolicy& h = host_of(st);
  hop_failed(c, reason);  // a failure of this host for every other message
  st.relaxed = true;
  st.relaxed_reason = reason;
  log::warning("delivery.tls_required_no").kv("worker", worker_index()).kv("domain", domain_).kv("host", h.name)
      .kv("requirement", policy::to_string(h.tls)).kv("ignored", reason);
}

void Destination::plan_attempts() {
  attempts_.clear();
  attempt_ = 0;
  failures_.clear();
  std::vector<size_t> order(policy_->hosts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t b = 0; b < order.size();) {
    size_t e = b + 1;
    while (e < order.size() && policy_->hosts[order[e]].preference == policy_->hosts[order[b]].preference) ++e;
    std::shuffle(order.begin() + static_cast<std::ptrdiff_t>(b), order.begin() + static_cast<std::ptrdiff_t>(e), out_.rng());
    b = e;
  }
  for (size_t h : order) {
    for (const std::string& a : policy_->hosts[h].addresses) {
      if (auto addr = SocketAddress::from_ip_port(a, policy_->hosts[h].port)) attempts_.push_back({h, *addr});
    }
  }
}

void Destination::start_connection(size_t attempt) {
  connections_.push_back(std::make_unique<relay::RelayConnection>(*this));
  relay::RelayConnection* c = connections_.back().get();
  Conn st;
  st.attempt = attempt;
  // "TLS-Required: No" messages waiting: a host that demands TLS may still take them in cleartext.
  st.tls_optional = tls_demanded(host_of(st)) && std::any_of(ready_.begin(), ready_.end(), tls_required_no_job);
  conns_[c] = std::move(st);
  c->start();
}

relay::ConnectTarget Destination::target(relay::RelayConnection* c) {
  const Conn& st = conn(c);
  relay::ConnectTarget t;
  t.address = attempts_[st.attempt].address;
  t.name = host_of(st).name;
  t.connect_timeout_ms = out_.runtime().outbound.connect_timeout_ms;
  t.command_timeout_ms = out_.runtime().outbound.command_timeout_ms;
  return t;
}

relay::TlsNeed Destination::tls_need(relay::RelayConnection* c) const {
  const Conn& st = conns_.at(c);
  const policy::HostPolicy& h = host_of(st);
  if (st.tls_optional) return relay::TlsNeed::kOpportunistic;
  if (h.tls == policy::TlsRequirement::kMay) return h.cleartext_allowed ? relay::TlsNeed::kOpportunistic : relay::TlsNeed::kRequired;
  return relay::TlsNeed::kRequired;
}

SSL* Destination::new_ssl(relay::RelayConnection* c, std::string* error) { return out_.tls().new_ssl(host_of(conn(c)), error); }

std::string Destination::accept_tls(relay::RelayConnection* c, SSL* ssl) {
  Conn& st = conn(c);
  const policy::HostPolicy& h = host_of(st);
  st.tls = out_.tls().check(ssl, h);
  st.tls_up = true;
  if (st.tls.satisfied) {
    // TLS-RPT: a successful session under this host's policy; an MTA-STS testing failure is also
    // reported (as a failure of the sts policy) although the message goes ahead (RFC 8461 §5).
    record_outcome(outcome(&h, ""));
    if (st.tls.sts_testing_failed) {
      trace::TlsOutcome f = outcome(&h, st.tls.result_type.empty() ? "sts-webpki-invalid" : st.tls.result_type, c);
      f.policy_type = "sts";
      record_outcome(f);
    }
  }
  if (!st.tls.satisfied) {
    std::string why = "TLS with " + h.name + " does not satisfy the " + std::string(policy::to_string(h.tls)) + " requirement: " +
                      st.tls.failure + (st.tls.result_type.empty() ? "" : " (" + st.tls.result_type + ")");
    // RFC 8689 5: messages with "TLS-Required: No" go ahead over this session anyway; for every
    // other message the host has failed.
    if (std::any_of(ready_.begin(), ready_.end(), tls_required_no_job)) {
      relax(c, why);
      return {};
    }
    return why;
  }
  if (st.tls.sts_testing_failed) {
    log::warning("delivery.sts_testing_failure").kv("worker", worker_index()).kv("domain", domain_).kv("host", h.name)
        .kv("reason", st.tls.failure).kv("result_type", st.tls.result_type);
  }
  return {};
}

bool Destination::next_job(relay::RelayConnection* c, relay::Job* job) {
  if (out_.stopping() || ready_.empty()) return false;
  const Conn& st = conn(c);
  auto it = std::find_if(ready_.begin(), ready_.end(), [&](const relay::Job& j) { return carries(st, j); });
  if (it == ready_.end()) return false;
  *job = std::move(*it);
  ready_.erase(it);
  last_job_exempt_ = job->entry != nullptr && job->entry->envelope.tlsrpt_exempt();
  return true;
}

// TLS-RPT reports are not themselves reported on (RFC 8460 3): a session is left out of the outcome
// store when it is carrying report mail only — every job waiting for it is a report (or, with none
// waiting, the last one taken was).
bool Destination::tlsrpt_exempt() const {
  if (ready_.empty()) return last_job_exempt_;
  for (const auto& j : ready_)
    if (j.entry == nullptr || !j.entry->envelope.tlsrpt_exempt()) return false;
  return true;
}

void Destination::record_outcome(const trace::TlsOutcome& o) {
  if (!tlsrpt_exempt()) out_.record_outcome(o);
}

trace::TlsOutcome Destination::outcome(const policy::HostPolicy* h, const std::string& result_type,
                                       relay::RelayConnection* c) {
  trace::TlsOutcome o;
  o.day = trace::TlsOutcomeStore::utc_day(wall_us() / 1000000);
  o.policy_domain = domain_;
  o.result_type = result_type;
  const bool sts = h != nullptr ? (h->tls == policy::TlsRequirement::kWebPki || h->sts_testing) : result_type.rfind("sts-", 0) == 0;
  const bool tlsa = h != nullptr ? h->tls == policy::TlsRequirement::kDane
                                 : (result_type == "dnssec-invalid" || result_type == "tlsa-invalid" || result_type == "dane-required");
  if (tlsa) {
    o.policy_type = "tlsa";
    if (h != nullptr)
      for (const auto& t : h->tlsa) o.policy_strings += (o.policy_strings.empty() ? "" : "\n") + policy::to_presentation(t);
  } else if (sts && policy_) {
    o.policy_type = "sts";
    o.policy_id = policy_->sts_id;
    for (const auto& m : policy_->sts_mx) o.mx_hosts += (o.mx_hosts.empty() ? "" : "\n") + m;
    // The report's policy-string (RFC 8460 4.4) is the policy's lines; max_age is not pushed to the
    // data plane, so the report sender adds it from the control plane's policy cache.
    if (policy_->sts == "enforce" || policy_->sts == "testing" || policy_->sts == "none") {
      o.policy_strings = "version: STSv1\nmode: " + policy_->sts;
      for (const auto& m : policy_->sts_mx) o.policy_strings += "\nmx: " + m;
    }
  } else {
    o.policy_type = sts ? "sts" : "no-policy-found";
  }
  if (h != nullptr && !result_type.empty()) o.receiving_mx_hostname = h->name;
  if (c != nullptr && !result_type.empty()) {
    const Conn& st = conn(c);
    o.sending_mta_ip = c->local_ip();
    o.receiving_ip = attempts_[st.attempt].address.ip_text();
    o.failure_reason_code = st.tls.failure;
  }
  return o;
}

trace::TraceEvent Destination::event(const char* what, const relay::Job* job, const Conn* c) const {
  trace::TraceEvent e;
  e.ts_us = wall_us();
  e.event = what;
  e.domain = domain_;
  if (job != nullptr) {
    e.qid = job->entry->envelope.queue_id();
    e.rcpts = static_cast<uint32_t>(job->rcpts.size());
    for (uint32_t i : job->rcpts) {
      if (static_cast<int>(i) >= job->entry->envelope.recipients_size()) continue;
      std::string a = job->entry->envelope.recipients(static_cast<int>(i)).address();
      for (char& ch : a) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      e.recipients.push_back(std::move(a));
    }
  }
  if (policy_) {
    e.dane_mode = std::string(policy::to_string(policy_->dane_mode));
    e.sts_mode = std::string(policy::to_string(policy_->sts_mode));
    e.dnssec = policy_->dnssec;
    e.mta_sts = policy_->sts;
  }
  if (c != nullptr && policy_ && c->attempt < attempts_.size()) {
    const policy::HostPolicy& h = host_of(*c);
    e.host = h.name;
    e.address = attempts_[c->attempt].address.ip_text();
    e.requirement = std::string(policy::to_string(h.tls));
    e.verification = c->tls.method.empty() ? "none" : c->tls.method;
    e.dane_usage = c->tls.dane_usage;
    e.dane_depth = c->tls.match_depth;
  }
  return e;
}

void Destination::backoff(relay::Job job, const std::string& reason) {
  spool::SpoolEntry* e = job.entry;
  const auto& ob = out_.runtime().outbound;
  const int64_t age_ms = (wall_us() - e->envelope.received_at_us()) / 1000;
  if (age_ms >= ob.queue_lifetime_ms) {
    // Queue lifetime over: the recipients fail, with the last reason (RFC 3464 Action: failed).
    std::string status = enhanced_status(reason, "4.4.7");
    const std::string reply = "554 " + status + " delivery time expired after " + std::to_string(age_ms / 1000) + "s: " + reason;
    std::vector<mxedge::spool::v1::RecipientResult> results;
    for (uint32_t i : job.rcpts) {
      mxedge::spool::v1::RecipientResult rr;
      rr.set_index(i);
      rr.set_outcome(mxedge::spool::v1::RECIPIENT_OUTCOME_FAILED);
      rr.set_reply(reply);
      results.push_back(rr);
    }
    log::warning("message.expired").kv("worker", worker_index()).kv("qid", e->envelope.queue_id()).kv("domain", domain_)
        .kv("rcpts", static_cast<uint64_t>(job.rcpts.size())).kv("age_s", age_ms / 1000).kv("reason", reason);
    auto te = event("expired", &job, nullptr);
    te.detail = reply;
    te.result_type = last_result_type_;
    out_.trace(std::move(te));
    report(nullptr, job, results, domain_, nullptr, reply);
    spool().settle(e, results);  // may destroy the entry
    return;
  }
  if (!e->delay_notified && age_ms >= ob.delay_warning_ms) {
    std::vector<DsnRecipient> notify;
    for (uint32_t i : job.rcpts) notify.push_back({i, enhanced_status(reason, "4.0.0"), "", "x-mxedge; " + reason});
    const int64_t until_us = e->envelope.received_at_us() + ob.queue_lifetime_ms * 1000;
    if (!send_dsn(spool(), *e, DsnKind::kDelay, std::move(notify), helo_name(), out_.accepted_domains(), true, until_us).empty())
      e->delay_notified = true;
  }
  ++e->attempts;
  stats::bump(counters().outbound_deferred);
  // Never wait past the queue lifetime: the last retry comes at the deadline.
  const int64_t delay = std::min(out_.backoff_ms(e->attempts), std::max<int64_t>(1, ob.queue_lifetime_ms - age_ms));
  const int64_t at = out_.loop().now_ms() + delay;
  log::info("message.deferred").kv("worker", worker_index()).kv("qid", e->envelope.queue_id()).kv("domain", domain_)
      .kv("rcpts", static_cast<uint64_t>(job.rcpts.size())).kv("attempts", e->attempts).kv("retry_in_ms", delay).kv("reason", reason);
  {
    auto te = event("deferred", &job, nullptr);
    te.detail = reason;
    te.result_type = policy_ && policy_->verdict == policy::PolicyVerdict::kDefer ? policy_->result_type : last_result_type_;
    out_.trace(std::move(te));
  }
  e->last_error = reason;
  e->next_attempt_ms = wall_us() / 1000 + delay;
  deferred_.emplace(at, std::move(job));
  out_.wake_at(at);
}

void Destination::defer(relay::RelayConnection* c, const relay::Job& job, const std::string& reason) {
  if (!conn(c).ok) {
    ready_.push_front(job);  // the host failed before any mail went out: another connection or host gets it
    return;
  }
  backoff(job, reason);
}

void Destination::defer_all(const std::string& reason, const std::string& status) {
  const std::string why = (status.empty() ? "" : status + " ") + reason;
  while (!ready_.empty()) {
    relay::Job j = std::move(ready_.front());
    ready_.pop_front();
    // A policy that stops delivery before any session (bogus DNSSEC, MTA-STS fetch failure under
    // mandatory): TLS-RPT counts one failed session per deferral.
    if (policy_ && policy_->verdict == policy::PolicyVerdict::kDefer && !policy_->result_type.empty() &&
        !(j.entry != nullptr && j.entry->envelope.tlsrpt_exempt()))
      out_.record_outcome(outcome(nullptr, policy_->result_type));
    backoff(std::move(j), why);
  }
}

void Destination::fail_all(const std::string& reply) {
  while (!ready_.empty()) {
    relay::Job j = std::move(ready_.front());
    ready_.pop_front();
    fail_job(std::move(j), reply);
  }
}

void Destination::fail_job(relay::Job j, const std::string& reply) {
  std::vector<mxedge::spool::v1::RecipientResult> results;
  for (uint32_t i : j.rcpts) {
    mxedge::spool::v1::RecipientResult rr;
    rr.set_index(i);
    rr.set_outcome(mxedge::spool::v1::RECIPIENT_OUTCOME_FAILED);
    rr.set_reply(reply);
    results.push_back(rr);
  }
  j.entry->requiretls_refused.erase(domain_);
  report(nullptr, j, results, domain_, nullptr, reply);
  spool().settle(j.entry, results);  // may destroy the entry
}

void Destination::report(relay::RelayConnection* c, const relay::Job& job, const std::vector<mxedge::spool::v1::RecipientResult>& settled,
                         const std::string& peer, SSL* ssl, const std::string& reply) {
  const auto& env = job.entry->envelope;
  size_t delivered = 0;
  std::vector<DsnRecipient> failed;
  for (const auto& rr : settled) {
    if (rr.outcome() == mxedge::spool::v1::RECIPIENT_OUTCOME_DELIVERED) {
      ++delivered;
      continue;
    }
    stats::bump(counters().outbound_failed);
    log::warning("message.failed").kv("worker", worker_index()).kv("qid", env.queue_id()).kv("domain", domain_)
        .kv("to", "<" + env.recipients(static_cast<int>(rr.index())).address() + ">").kv("peer", peer).kv("reply", rr.reply());
    // A server's reply is an SMTP diagnostic; our own policy decisions and expiry are not.
    const bool remote = c != nullptr;
    failed.push_back({rr.index(), enhanced_status(rr.reply(), "5.0.0"), remote ? host_of(conn(c)).name : std::string(),
                      (remote ? "smtp; " : "x-mxedge; ") + rr.reply()});
  }
  if (!failed.empty()) {
    auto te = event("failed", &job, c != nullptr ? &conn(c) : nullptr);
    te.rcpts = static_cast<uint32_t>(failed.size());
    te.detail = failed.front().diagnostic;
    out_.trace(std::move(te));
    send_dsn(spool(), *job.entry, DsnKind::kFailure, std::move(failed), helo_name(), out_.accepted_domains(), true);
  }
  if (delivered == 0 || c == nullptr) return;
  stats::bump(counters().outbound_delivered, delivered);
  const Conn& st = conn(c);
  const policy::HostPolicy& h = host_of(st);
  auto line = log::info("message.delivered");
  line.kv("worker", worker_index()).kv("qid", env.queue_id()).kv("domain", domain_).kv("rcpts", static_cast<uint64_t>(delivered))
      .kv("host", h.name).kv("peer", peer).kv("requirement", policy::to_string(h.tls))
      .kv("tls", ssl != nullptr ? std::string(SSL_get_version(ssl)) : std::string("none"));
  if (ssl != nullptr) {
    const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
    line.kv("cipher", cipher != nullptr ? SSL_CIPHER_get_name(cipher) : "?").kv("verified", st.tls.method.empty() ? "none" : st.tls.method);
    if (st.tls.dane_usage >= 0) line.kv("dane_usage", st.tls.dane_usage).kv("dane_depth", st.tls.match_depth);
    if (st.tls.resumed) line.kv("resumed", true);
  }
  if (env.requiretls()) line.kv("requiretls", 1);
  if (tls_required_no_job(job)) line.kv("tls_required_no", 1);
  if (st.relaxed) line.kv("policy_ignored", st.relaxed_reason);  // RFC 8689 5: delivered despite it
  line.kv("dane_mode", policy::to_string(policy_->dane_mode)).kv("mta_sts_mode", policy::to_string(policy_->sts_mode))
      .kv("dnssec", policy_->dnssec).kv("mta_sts", policy_->sts).kv("delay_ms", (wall_us() - env.received_at_us()) / 1000)
      .kv("reply", reply);
  auto te = event("delivered", &job, &st);
  te.rcpts = static_cast<uint32_t>(delivered);
  if (ssl != nullptr) {
    te.tls_version = SSL_get_version(ssl);
    const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
    te.cipher = cipher != nullptr ? SSL_CIPHER_get_name(cipher) : "";
  } else {
    te.tls_version = "none";
    te.verification = "none";
  }
  te.detail = st.relaxed ? "TLS-Required: No, policy failure ignored (" + st.relaxed_reason + "); " + reply : reply;
  out_.trace(std::move(te));
}

void Destination::hop_ok(relay::RelayConnection* c) {
  Conn& st = conn(c);
  // Opportunistic only for "TLS-Required: No" messages: without TLS the host failed for the rest.
  if (st.tls_optional && !st.tls_up && !st.relaxed && tls_demanded(host_of(st)))
    relax(c, host_of(st).name + " session without TLS, which is required (starttls-not-supported)");
  conn(c).ok = true;
  kick();  // more connections to this host while jobs wait
}

void Destination::hop_failed(relay::RelayConnection* c, const std::string& reason) {
  Conn& st = conn(c);
  st.failed = true;
  st.ok = false;
  stats::bump(counters().outbound_host_failures);
  const policy::HostPolicy& h = host_of(st);
  const std::string addr = attempts_[st.attempt].address.ip_text();
  std::string type = st.tls.result_type;
  if (type.empty() && reason.find("starttls-not-supported") != std::string::npos) type = "starttls-not-supported";
  log::warning("delivery.attempt_failed").kv("worker", worker_index()).kv("domain", domain_).kv("host", h.name).kv("address", addr)
      .kv("requirement", policy::to_string(h.tls)).kv("reason", reason).kv("result_type", type);
  // A TLS failure (not a refused connection or a 4xx greeting): TLS-RPT counts it.
  if (!type.empty()) record_outcome(outcome(&h, type, c));
  last_result_type_ = type;
  auto te = event("attempt_failed", nullptr, &st);
  te.result_type = type;
  te.detail = reason;
  out_.trace(std::move(te));
  if (st.attempt == attempt_) {  // the first failure of this attempt moves the round on
    failures_.push_back(h.name + "[" + addr + "]: " + reason);
    ++attempt_;
  }
}

void Destination::connection_closed(relay::RelayConnection* c) {
  auto it = std::find_if(connections_.begin(), connections_.end(), [c](const auto& p) { return p.get() == c; });
  if (it == connections_.end()) return;
  const Conn st = conns_[c];
  conns_.erase(c);
  graveyard_.push_back(std::move(*it));
  connections_.erase(it);
  if (out_.stopping()) return;
  if (st.failed) {
    if (!connections_.empty()) return;  // others still work this round
    if (!ready_.empty()) skip_useless_attempts();
    if (attempt_ < attempts_.size()) {
      if (!ready_.empty()) start_connection(attempt_);  // the next host or address
      return;
    }
    std::string all;
    for (const auto& f : failures_) all += (all.empty() ? "" : "; ") + f;
    attempts_.clear();
    defer_all("no MX host of " + domain_ + " could be used: " + all, "4.7.5");
    return;
  }
  if (connections_.empty()) attempts_.clear();  // the next round re-reads the policy
  if (!ready_.empty()) kick();
}

size_t Destination::retry(const std::function<bool(const spool::SpoolEntry&)>& match) {
  size_t n = 0;
  for (auto it = deferred_.begin(); it != deferred_.end();) {
    if (match(*it->second.entry)) {
      it->second.entry->next_attempt_ms = 0;
      ready_.push_back(std::move(it->second));
      it = deferred_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  if (n > 0) kick();
  return n;
}

void Destination::take(const spool::SpoolEntry* entry, std::vector<relay::Job>* out) {
  for (auto it = ready_.begin(); it != ready_.end();) {
    if (it->entry == entry) {
      out->push_back(std::move(*it));
      it = ready_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = deferred_.begin(); it != deferred_.end();) {
    if (it->second.entry == entry) {
      out->push_back(std::move(it->second));
      it = deferred_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<relay::Job> Outbound::take(const spool::SpoolEntry* entry) {
  std::vector<relay::Job> out;
  for (auto& [domain, d] : destinations_) d->take(entry, &out);
  return out;
}

void Outbound::put_back(std::vector<relay::Job> jobs) {
  for (auto& job : jobs) {
    if (job.rcpts.empty()) continue;
    const std::string domain = domain_of(job.entry->envelope.recipients(static_cast<int>(job.rcpts.front())).address());
    auto& d = destinations_[domain];
    if (!d) d = std::make_unique<Destination>(*this, domain);
    d->add(std::move(job));
  }
}

size_t Outbound::retry(const std::function<bool(const spool::SpoolEntry&)>& match) {
  size_t n = 0;
  for (auto& [domain, d] : destinations_) n += d->retry(match);
  return n;
}

void Destination::release_deferred(int64_t now_ms) {
  bool moved = false;
  while (!deferred_.empty() && deferred_.begin()->first <= now_ms) {
    deferred_.begin()->second.entry->next_attempt_ms = 0;
    ready_.push_back(std::move(deferred_.begin()->second));
    deferred_.erase(deferred_.begin());
    moved = true;
  }
  if (moved) kick();
}

void Destination::stop() {
  std::vector<relay::RelayConnection*> live;
  for (auto& c : connections_) live.push_back(c.get());
  for (auto* c : live) c->quit_if_idle();
}

void Destination::abort_all() {
  while (!connections_.empty()) connections_.front()->abort("shutdown");
}

// ---------------------------------------------------------------------------------------------------
// Outbound

Outbound::Outbound(worker::EventLoop& loop, spool::Spool& spool, unsigned worker_index, stats::WorkerCounters& counters,
                   dataplane::PolicyStore& store, dataplane::PolicyClient* client)
    : loop_(loop),
      spool_(spool),
      worker_(worker_index),
      counters_(counters),
      store_(store),
      client_(client),
      poll_timer_(&loop, [this] { poll(); }),
      deferred_timer_(&loop, [this] {
        const int64_t now = loop_.now_ms();
        int64_t next = INT64_MAX;
        for (auto& [d, dest] : destinations_) dest->release_deferred(now);
        for (auto& [d, dest] : destinations_) next = std::min(next, dest->next_deferred_ms());
        if (next != INT64_MAX) deferred_timer_.arm_at(next);
      }),
      trace_expiry_timer_(&loop, [this] {
        if (trace_) {
          const size_t n = trace_->expire(wall_us());
          if (n > 0) log::info("trace.expired").kv("worker", worker_).kv("events", static_cast<uint64_t>(n));
        }
        if (outcomes_) outcomes_->expire(wall_us() / 1000000);
        trace_expiry_timer_.arm_at(loop_.now_ms() + 3600 * 1000);
      }),
      rng_(std::random_device{}() ^ (worker_index * 7919u)) {}

Outbound::~Outbound() {
  stopping_ = true;
  abort_all();
  destinations_.clear();
}

bool Outbound::set_runtime(std::shared_ptr<const worker::RuntimeConfig> runtime) {
  runtime_ = std::move(runtime);
  accepted_domains_.assign(runtime_->config.accepted_domains().begin(), runtime_->config.accepted_domains().end());
  if (!trace_) {
    std::string error;
    const std::string path = trace::TraceStore::path_for(runtime_->config.spool().directory(), worker_);
    trace_ = trace::TraceStore::open(path, runtime_->outbound.trace_retention_s, worker_, &error);
    if (!trace_) log::error("trace.unavailable").kv("worker", worker_).kv("reason", error);
    else trace_expiry_timer_.arm_at(loop_.now_ms() + 60 * 1000);
  }
  if (!outcomes_) {
    // TLS-RPT outcomes: kept 14 days (a daily report needs the previous UTC day; retries need more).
    std::string error;
    const std::string path = trace::TlsOutcomeStore::path_for(runtime_->config.spool().directory(), worker_);
    outcomes_ = trace::TlsOutcomeStore::open(path, 14 * 86400, &error);
    if (!outcomes_) log::error("tlsrpt.unavailable").kv("worker", worker_).kv("reason", error);
  }
  if (!tls_) {
    std::string error;
    tls::OutboundTlsOptions o;
    o.ca_file = runtime_->outbound.ca_file;
    tls_ = tls::OutboundTls::create(o, &error);
    if (!tls_) {
      log::error("delivery.tls_unavailable").kv("worker", worker_).kv("reason", error);
      return false;
    }
  }
  return true;
}

int64_t Outbound::backoff_ms(uint32_t attempts) {
  const auto& o = runtime_->outbound;
  int64_t d = o.retry_min_ms;
  for (uint32_t i = 1; i < attempts && d < o.retry_max_ms; ++i) d *= 2;
  d = std::min(d, o.retry_max_ms);
  std::uniform_int_distribution<int64_t> jitter(-d / 10, d / 10);
  return std::max<int64_t>(1, d + jitter(rng_));
}

void Outbound::wake_at(int64_t when_ms) {
  if (when_ms < deferred_timer_.deadline()) deferred_timer_.arm_at(when_ms);
}

void Outbound::enqueue(spool::SpoolEntry* entry) {
  std::map<std::string, std::vector<uint32_t>> by_domain;
  for (uint32_t i = 0; i < entry->recipients.size(); ++i) {
    if (entry->recipients[i] != spool::RecipientState::kPending) continue;
    by_domain[domain_of(entry->envelope.recipients(static_cast<int>(i)).address())].push_back(i);
  }
  if (!tls_) {
    // Without a TLS client nothing may leave: the message stays in the spool for the next start.
    log::error("message.held").kv("worker", worker_).kv("qid", entry->envelope.queue_id()).kv("reason", "outbound TLS client unavailable");
    return;
  }
  for (auto& [domain, rcpts] : by_domain) {
    auto& d = destinations_[domain];
    if (!d) d = std::make_unique<Destination>(*this, domain);
    d->add(relay::Job{entry, std::move(rcpts)});
  }
}

void Outbound::poll() {
  bool waiting = false;
  for (auto& [domain, d] : destinations_) {
    if (!d->waiting_for_policy()) continue;
    d->kick();
    waiting |= d->waiting_for_policy();
  }
  if (waiting) poll_timer_.arm_at(loop_.now_ms() + 100);
}

void Outbound::stop() {
  stopping_ = true;
  for (auto& [domain, d] : destinations_) d->stop();
}

bool Outbound::idle() const {
  return std::none_of(destinations_.begin(), destinations_.end(), [](const auto& kv) { return kv.second->connected(); });
}

void Outbound::abort_all() {
  for (auto& [domain, d] : destinations_) d->abort_all();
}

void Outbound::reap(bool now) {
  if (!now && loop_.now_ms() - last_reap_ms_ < 1000) return;
  last_reap_ms_ = loop_.now_ms();
  for (auto it = destinations_.begin(); it != destinations_.end();) {
    it->second->reap();
    if (it->second->idle() && !it->second->waiting_for_policy()) it = destinations_.erase(it);
    else ++it;
  }
}

}  // namespace mxedge::delivery
