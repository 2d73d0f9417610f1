#include "dataplane/admin/admin.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <future>

#include "controlplane/tlsrpt/report.h"
#include "dataplane/stats/counters.h"
#include "dataplane/trace/tls_outcomes.h"
#include "dataplane/trace/tlsrpt_inbound.h"
#include "dataplane/trace/trace_store.h"
#include "policy/log.h"

namespace mxedge::dataplane {

namespace v1 = mxedge::mgmt::v1;
using mgmt::error_response;

namespace {

int64_t unix_now() { return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count(); }
int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "TLS_MODE_STARTTLS" -> "starttls": the word an operator writes in the config.
std::string enum_text(const std::string& name, const std::string& prefix) {
  return lower(name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name);
}

std::string domain_of(const std::string& address) {
  const size_t at = address.rfind('@');
  return at == std::string::npos ? std::string() : lower(address.substr(at + 1));
}

// Runs fn on `w`'s thread and waits for it (false when the worker did not answer in time: it is
// stopping or stuck).
template <typename T>
bool on_worker(worker::Worker& w, std::function<T()> fn, T* out, int timeout_ms = 5000) {
  auto promise = std::make_shared<std::promise<T>>();
  std::future<T> result = promise->get_future();
  w.loop().post([promise, fn = std::move(fn)] { promise->set_value(fn()); });
  if (result.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready) return false;
  *out = result.get();
  return true;
}

v1::QueueMessage describe(const spool::SpoolEntry& e, unsigned worker) {
  v1::QueueMessage m;
  const auto& env = e.envelope;
  m.set_queue_id(env.queue_id());
  m.set_worker(worker);
  m.set_direction(env.outbound() ? "outbound" : "inbound");
  m.set_sender(env.mail_from());
  m.set_size(env.size());
  m.set_received_at_us(env.received_at_us());
  m.set_attempts(e.attempts);
  m.set_next_attempt_ms(e.next_attempt_ms);
  m.set_last_error(e.last_error);
  m.set_client_address(env.client_address());
  m.set_held(e.held);
  m.set_requiretls(env.requiretls());
  m.set_tls_required_no(env.tls_required_no() && !env.requiretls());
  for (int i = 0; i < env.recipients_size(); ++i) {
    auto* r = m.add_recipients();
    r->set_address(env.recipients(i).address());
    const auto state = static_cast<size_t>(i) < e.recipients.size() ? e.recipients[static_cast<size_t>(i)] : spool::RecipientState::kPending;
    r->set_state(state == spool::RecipientState::kPending ? "pending" : state == spool::RecipientState::kDelivered ? "delivered" : "failed");
  }
  return m;
}

bool matches(const spool::SpoolEntry& e, const v1::QueueRequest& r) {
  if (r.queue_ids_size() > 0 &&
      std::find(r.queue_ids().begin(), r.queue_ids().end(), e.envelope.queue_id()) == r.queue_ids().end())
    return false;
  if (!r.domain().empty()) {
    const std::string d = lower(r.domain());
    bool any = false;
    for (const auto& rc : e.envelope.recipients()) any = any || domain_of(rc.address()) == d;
    if (!any) return false;
  }
  return true;
}

uint64_t directory_bytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) total += it->file_size(fec);
  }
  return total;
}

}  // namespace

v1::Response Admin::handle(const v1::Request& request, const mgmt::Peer& peer) {
  v1::Response r;
  switch (request.body_case()) {
    case v1::Request::kStatus: r = status(); break;
    case v1::Request::kStats: r = stats(); break;
    case v1::Request::kQueue: r = queue(request.queue()); break;
    case v1::Request::kTrace: r = trace(request.trace()); break;
    case v1::Request::kPrefix: r = prefix(request.prefix()); break;
    case v1::Request::kRateLimit: r = rate_limit(request.rate_limit()); break;
    case v1::Request::kReload: r = reload(); break;
    case v1::Request::kSubmit: r = submit(request.submit()); break;
    case v1::Request::kTlsOutcomes: r = tls_outcomes(request.tls_outcomes()); break;
    case v1::Request::kTlsrpt: r = tlsrpt(request.tlsrpt()); break;
    case v1::Request::BODY_NOT_SET:
      return error_response(v1::Error::INVALID_ARGUMENT, "empty request");
    default:
      return error_response(v1::Error::INVALID_ARGUMENT, "the data plane does not answer this request (send it to the control plane)");
  }
  const bool change = request.has_prefix() ? request.prefix().op() != v1::PrefixRequest::LIST
                      : request.has_rate_limit() ? request.rate_limit().set()
                      : request.has_queue() ? request.queue().op() != v1::QueueRequest::LIST && request.queue().op() != v1::QueueRequest::SHOW
                                            : request.has_reload() || request.has_submit();
  if (change)
    log::info("mgmt.change").kv("plane", "dataplane").kv("peer", peer.to_string()).kv("request", request.ShortDebugString())
        .kv("result", r.error().code() == v1::Error::OK ? std::string("ok") : r.error().message());
  return r;
}

v1::Response Admin::status() {
  v1::Response r;
  auto* s = r.mutable_status()->mutable_dataplane();
  auto rt = deps_.runtime();
  const auto& cfg = rt->config;
  s->set_version(deps_.version);
  s->set_pid(static_cast<uint32_t>(::getpid()));
  s->set_started_at(deps_.started_at);
  s->set_uptime_s(unix_now() - deps_.started_at);
  s->set_hostname(cfg.hostname());
  uint64_t pending = 0;
  for (worker::Worker* w : deps_.workers) {
    auto* ws = s->add_workers();
    ws->set_index(w->index());
    ws->set_cpu(w->cpu());
    ws->set_sessions_active(w->counters().sessions_active.load(std::memory_order_relaxed));
    ws->set_spool_pending(w->counters().spool_pending.load(std::memory_order_relaxed));
    pending += ws->spool_pending();
  }
  for (const auto& l : rt->listeners) {
    auto* ls = s->add_listeners();
    ls->set_name(l.config.name());
    ls->set_address(l.address.to_string());
    ls->set_tls_mode(enum_text(config::v1::TlsMode_Name(l.config.tls_mode()), "TLS_MODE_"));
    ls->set_role(enum_text(config::v1::ListenerRole_Name(l.config.role()), "LISTENER_ROLE_"));
  }
  {
    std::lock_guard<std::mutex> lock(*deps_.fast_path_mu);
    if (deps_.fast_path != nullptr && *deps_.fast_path) {
      for (const auto& a : (*deps_.fast_path)->attachments()) {
        auto* x = s->add_xdp_interfaces();
        x->set_ifname(a.ifname);
        x->set_ifindex(a.ifindex);
        x->set_mode(a.native ? "native" : "generic");
      }
      s->set_xdp_steering(cfg.xdp().steering());
    }
  }
  s->set_outbound_enabled(cfg.outbound().enabled());
  if (deps_.policies != nullptr) {
    s->set_policy_version(deps_.policies->version());
    s->set_policies(deps_.policies->current()->policies.size());
  }
  s->set_policy_link_up(deps_.policy_client != nullptr && deps_.policy_client->connected());
  s->set_spool_directory(cfg.spool().directory());
  s->set_spool_bytes(directory_bytes(cfg.spool().directory()));
  s->set_spool_messages(pending);
  struct statvfs vfs {};
  if (::statvfs(cfg.spool().directory().c_str(), &vfs) == 0) s->set_spool_free_bytes(static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize);
  // Asked directly (mxedgectl --socket <dataplane socket>): the data plane's own view of its health.
  auto* st = r.mutable_status();
  if (s->outbound_enabled() && !s->policy_link_up()) st->add_problems("the policy link to the control plane is down");
  st->set_healthy(st->problems().empty());
  return r;
}

v1::Response Admin::stats() {
  v1::Response r;
  auto* s = r.mutable_stats();
  s->set_at_ms(unix_now_ms());
  auto& totals = *s->mutable_totals();
  for (worker::Worker* w : deps_.workers) {
    auto* ws = s->add_workers();
    ws->set_index(w->index());
    ws->set_cpu(w->cpu());
    auto& m = *ws->mutable_counters();
    const stats::WorkerCounters& c = w->counters();
#define MXEDGE_COPY(name, help) m[#name] = c.name.load(std::memory_order_relaxed);
    MXEDGE_WORKER_COUNTERS(MXEDGE_COPY)
#undef MXEDGE_COPY
    m["sessions_active"] = c.sessions_active.load(std::memory_order_relaxed);
    m["spool_pending"] = c.spool_pending.load(std::memory_order_relaxed);
    for (const auto& [k, v] : m) totals[k] += v;
    for (size_t i = 0; i < stats::kTlsCipherNames.size(); ++i) {
      const uint64_t v = c.tls_ciphers[i].load(std::memory_order_relaxed);
      if (v != 0) (*s->mutable_tls_ciphers())[std::string(stats::kTlsCipherNames[i])] += v;
    }
  }
  (*s->mutable_tls_versions())["TLSv1.2"] = totals["tls_handshakes_tls12"];
  (*s->mutable_tls_versions())["TLSv1.3"] = totals["tls_handshakes_tls13"];
  std::lock_guard<std::mutex> lock(*deps_.fast_path_mu);
  if (deps_.fast_path != nullptr && *deps_.fast_path) {
    xdp::XdpCounters counters;
    if ((*deps_.fast_path)->read_counters(&counters).ok()) {
      for (unsigned i = 0; i < MXEDGE_CTR_COUNT; ++i) {
        (*s->mutable_xdp_packets())[xdp::counter_name(i)] = counters.total[i].packets;
        (*s->mutable_xdp_bytes())[xdp::counter_name(i)] = counters.total[i].bytes;
      }
      for (size_t cpu = 0; cpu < counters.per_cpu.size(); ++cpu) {
        v1::XdpCpuStats cs;
        cs.set_cpu(static_cast<uint32_t>(cpu));
        for (unsigned i = 0; i < MXEDGE_CTR_COUNT; ++i)
          if (counters.per_cpu[cpu][i].packets != 0) (*cs.mutable_packets())[xdp::counter_name(i)] = counters.per_cpu[cpu][i].packets;
        if (!cs.packets().empty()) *s->add_xdp_cpus() = std::move(cs);
      }
    }
  }
  return r;
}

namespace {

struct QueueResult {
  std::vector<v1::QueueMessage> messages;
  size_t affected = 0;
  std::vector<std::string> skipped;
};

// Takes every queued part of `e` out of the delivery queues. False (and everything put back) when a
// part is in flight: the operation must wait for the attempt to end.
bool take_all(worker::Worker& w, spool::SpoolEntry* e) {
  if (!e->envelope.outbound()) return w.relay() != nullptr && w.relay()->take(e);
  if (w.outbound() == nullptr) return true;  // outbound delivery is off: nothing is queued
  std::vector<relay::Job> jobs = w.outbound()->take(e);
  std::vector<bool> covered(e->recipients.size(), false);
  for (const auto& j : jobs)
    for (uint32_t i : j.rcpts)
      if (i < covered.size()) covered[i] = true;
  for (size_t i = 0; i < e->recipients.size(); ++i) {
    if (e->recipients[i] == spool::RecipientState::kPending && !covered[i]) {
      w.outbound()->put_back(std::move(jobs));
      return false;
    }
  }
  return true;
}

void put_back(worker::Worker& w, spool::SpoolEntry* e) { w.route(e); }

// Runs on the worker's thread.
QueueResult queue_on_worker(worker::Worker& w, const v1::QueueRequest& req) {
  using Op = v1::QueueRequest;
  QueueResult rr;
  auto match = [&req](const spool::SpoolEntry& e) { return matches(e, req); };
  switch (req.op()) {
    case Op::RETRY:
      if (w.relay() != nullptr) rr.affected += w.relay()->retry(match);
      if (w.outbound() != nullptr) rr.affected += w.outbound()->retry(match);
      break;
    case Op::HOLD:
    case Op::RELEASE:
    case Op::DELETE:
      for (spool::SpoolEntry* e : w.spool().entries()) {
        if (!match(*e)) continue;
        const std::string qid = e->envelope.queue_id();
        std::string error;
        if (req.op() == Op::RELEASE) {
          if (!e->held) {
            rr.skipped.push_back(qid + ": not held");
            continue;
          }
          if (!w.spool().set_held(e, false, &error)) {
            rr.skipped.push_back(qid + ": " + error);
            continue;
          }
          log::info("message.released").kv("worker", w.index()).kv("qid", qid);
          w.route(e);
          ++rr.affected;
          continue;
        }
        if (req.op() == Op::HOLD && e->held) {
          rr.skipped.push_back(qid + ": already held");
          continue;
        }
        if (!e->held && !take_all(w, e)) {
          rr.skipped.push_back(qid + ": a delivery attempt is in flight; try again when it ends");
          continue;
        }
        if (req.op() == Op::HOLD) {
          if (!w.spool().set_held(e, true, &error)) {
            put_back(w, e);
            rr.skipped.push_back(qid + ": " + error);
            continue;
          }
          e->next_attempt_ms = 0;
          log::info("message.held").kv("worker", w.index()).kv("qid", qid).kv("reason", "held by an administrator");
          ++rr.affected;
          continue;
        }
        // DELETE: every pending recipient settled as failed, without a notification.
        std::vector<mxedge::spool::v1::RecipientResult> results;
        for (uint32_t i = 0; i < e->recipients.size(); ++i) {
          if (e->recipients[i] != spool::RecipientState::kPending) continue;
          mxedge::spool::v1::RecipientResult r;
          r.set_index(i);
          r.set_outcome(mxedge::spool::v1::RECIPIENT_OUTCOME_FAILED);
          r.set_reply("deleted by an administrator (mxedgectl queue delete); no notification sent");
          results.push_back(std::move(r));
        }
        log::info("message.deleted").kv("worker", w.index()).kv("qid", qid).kv("rcpts", static_cast<uint64_t>(results.size()))
            .kv("sender", e->envelope.mail_from());
        w.spool().settle(e, results);  // destroys the entry
        w.spool().flush();
        ++rr.affected;
      }
      break;
    case Op::LIST:
    case Op::SHOW:
    default:
      break;
  }
  w.spool().for_each_entry([&](const spool::SpoolEntry& e) {
    if (match(e)) rr.messages.push_back(describe(e, w.index()));
  });
  return rr;
}

}  // namespace

v1::Response Admin::queue(const v1::QueueRequest& req) {
  using Op = v1::QueueRequest;
  if (req.op() == Op::SHOW && req.queue_ids_size() == 0) return error_response(v1::Error::INVALID_ARGUMENT, "queue show needs a queue id");
  if (req.op() != Op::LIST && req.op() != Op::SHOW && req.queue_ids_size() == 0 && req.domain().empty() && !req.all())
    return error_response(v1::Error::INVALID_ARGUMENT, "queue " + lower(Op::Op_Name(req.op())) + " needs queue ids, --domain or --all");
  v1::Response r;
  auto* out = r.mutable_queue();
  for (worker::Worker* w : deps_.workers) {
    QueueResult res;
    if (!on_worker<QueueResult>(*w, std::function<QueueResult()>([w, req] { return queue_on_worker(*w, req); }), &res))
      return error_response(v1::Error::UNAVAILABLE, "worker " + std::to_string(w->index()) + " did not answer (stopping?)");
    for (auto& m : res.messages) *out->add_messages() = std::move(m);
    for (auto& s : res.skipped) out->add_skipped(std::move(s));
    out->set_affected(out->affected() + static_cast<uint32_t>(res.affected));
  }
  std::sort(out->mutable_messages()->begin(), out->mutable_messages()->end(),
            [](const v1::QueueMessage& a, const v1::QueueMessage& b) { return a.received_at_us() < b.received_at_us(); });
  out->set_total(static_cast<uint64_t>(out->messages_size()));
  const int limit = req.limit() == 0 ? 1000 : static_cast<int>(std::min<uint32_t>(req.limit(), 1000000));
  if (out->messages_size() > limit) out->mutable_messages()->DeleteSubrange(limit, out->messages_size() - limit);
  if (req.op() == Op::SHOW && out->messages_size() == 0)
    return error_response(v1::Error::NOT_FOUND, "no message " + req.queue_ids(0) + " in the queue");
  if (req.op() != Op::LIST && req.op() != Op::SHOW && req.queue_ids_size() > 0 && out->affected() == 0 && out->skipped_size() == 0)
    return error_response(v1::Error::NOT_FOUND, "no such message in the queue: " + req.queue_ids(0));
  return r;
}

v1::Response Admin::trace(const v1::TraceRequest& req) {
  if (req.query().empty()) return error_response(v1::Error::INVALID_ARGUMENT, "trace needs a queue id, a recipient or a domain");
  auto rt = deps_.runtime();
  trace::TraceQuery q;
  // A queue id is what spool::new_queue_id makes: upper-case hex and digits, no dot, no '@'.
  if (req.query().find('@') != std::string::npos) q.recipient = req.query();
  else if (req.query().find('.') != std::string::npos) q.domain = lower(req.query());
  else q.qid = req.query();
  q.since_us = req.since_us();
  q.limit = req.limit() == 0 ? 1000 : req.limit();
  std::string error;
  auto events = trace::TraceStore::query(trace::TraceStore::databases(rt->config.spool().directory()), q, &error);
  if (!error.empty()) return error_response(v1::Error::FAILED, "trace: " + error);
  v1::Response r;
  for (const auto& e : events) {
    auto* t = r.mutable_trace()->add_events();
    t->set_ts_us(e.ts_us);
    t->set_queue_id(e.qid);
    t->set_event(e.event);
    t->set_domain(e.domain);
    t->set_recipients(e.rcpts);
    t->set_host(e.host);
    t->set_address(e.address);
    t->set_requirement(e.requirement);
    t->set_dane_mode(e.dane_mode);
    t->set_sts_mode(e.sts_mode);
    t->set_dnssec(e.dnssec);
    t->set_mta_sts(e.mta_sts);
    t->set_tls_version(e.tls_version);
    t->set_cipher(e.cipher);
    t->set_verification(e.verification);
    t->set_dane_usage(e.dane_usage);
    t->set_dane_depth(e.dane_depth);
    t->set_result_type(e.result_type);
    t->set_detail(e.detail);
    t->set_worker(e.worker);
  }
  if (r.trace().events_size() == 0) return error_response(v1::Error::NOT_FOUND, "no trace events for " + req.query());
  return r;
}

v1::Response Admin::prefix(const v1::PrefixRequest& req) {
  std::lock_guard<std::mutex> lock(*deps_.fast_path_mu);
  if (deps_.fast_path == nullptr || !*deps_.fast_path)
    return error_response(v1::Error::UNAVAILABLE, "the fast path is off (neither xdp.interfaces nor dpdk.ports is set)");
  xdp::FastPath& p = **deps_.fast_path;
  const xdp::PrefixList list = req.list() == v1::PrefixRequest::ALLOW ? xdp::PrefixList::kAllow : xdp::PrefixList::kBlock;
  v1::Response r;
  if (req.op() == v1::PrefixRequest::LIST) {
    std::vector<xdp::IpPrefix> prefixes;
    if (auto s = p.list_prefixes(list, &prefixes); !s.ok()) return error_response(v1::Error::FAILED, s.to_string());
    for (const auto& x : prefixes) r.mutable_prefix()->add_prefixes(x.to_string());
    return r;
  }
  if (req.prefixes_size() == 0) return error_response(v1::Error::INVALID_ARGUMENT, "no prefix given");
  // Validate every prefix first so that a bad one changes nothing.
  for (const auto& text : req.prefixes()) {
    if (!xdp::IpPrefix::parse(text).has_value()) return error_response(v1::Error::INVALID_ARGUMENT, "invalid prefix '" + text + "'");
  }
  for (const auto& text : req.prefixes()) {
    const auto s = req.op() == v1::PrefixRequest::ADD ? p.add_prefix(list, text) : p.remove_prefix(list, text);
    if (!s.ok()) {
      // Prefixes before this one were changed; say so, so the operator knows the state.
      std::string done;
      for (const auto& d : r.prefix().prefixes()) done += (done.empty() ? "" : ", ") + d;
      const std::string msg = (s.err() == ENOENT ? text + " is not listed" : s.to_string()) +
                              (done.empty() ? std::string() : " (already done: " + done + ")");
      return error_response(s.err() == ENOENT ? v1::Error::NOT_FOUND : v1::Error::FAILED, msg);
    }
    r.mutable_prefix()->add_prefixes(text);
  }
  return r;
}

v1::Response Admin::rate_limit(const v1::RateLimitRequest& req) {
  std::lock_guard<std::mutex> lock(*deps_.fast_path_mu);
  if (deps_.fast_path == nullptr || !*deps_.fast_path)
    return error_response(v1::Error::UNAVAILABLE, "the fast path is off (neither xdp.interfaces nor dpdk.ports is set)");
  xdp::FastPath& p = **deps_.fast_path;
  if (req.set()) {
    if (req.syn_per_second() > 0 && req.burst() == 0)
      return error_response(v1::Error::INVALID_ARGUMENT, "a rate limit needs a burst of at least 1");
    if (auto s = p.set_rate_limit(req.syn_per_second(), req.burst()); !s.ok()) return error_response(v1::Error::FAILED, s.to_string());
  }
  v1::Response r;
  // The program keeps a GCRA interval and tolerance; give the operator's units back.
  const uint64_t interval = p.config().syn_interval_ns;
  r.mutable_rate_limit()->set_syn_per_second(interval == 0 ? 0 : static_cast<uint32_t>((1000000000ULL + interval / 2) / interval));
  r.mutable_rate_limit()->set_burst(interval == 0 ? 0 : static_cast<uint32_t>(p.config().syn_burst_ns / interval + 1));
  const uint64_t ns_interval = p.config().new_source_interval_ns;
  if (ns_interval != 0 && interval != 0) {  // the budget only acts with the per-source limit on
    r.mutable_rate_limit()->set_new_source_per_second(static_cast<uint32_t>((1000000000ULL + ns_interval / 2) / ns_interval));
    r.mutable_rate_limit()->set_new_source_burst(static_cast<uint32_t>(p.config().new_source_burst_ns / ns_interval + 1));
  }
  return r;
}

v1::Response Admin::reload() {
  std::string detail;
  const bool ok = deps_.reload(&detail);
  v1::Response r;
  r.mutable_reload()->set_dataplane_reloaded(ok);
  r.mutable_reload()->set_dataplane_detail(detail);
  if (!ok) {
    r.mutable_error()->set_code(v1::Error::FAILED);
    r.mutable_error()->set_message("data plane reload rejected: " + detail);
  }
  return r;
}

// A message the gateway generates (TLS-RPT reports): spooled on one worker like a received message
// (the same group commit and fsync), then delivered by the outbound path. Answered after it is durable.
v1::Response Admin::submit(const v1::SubmitRequest& req) {
  const auto runtime = deps_.runtime();
  const auto& cfg = runtime->config;
  if (!cfg.outbound().enabled() || deps_.workers.empty())
    return error_response(v1::Error::UNAVAILABLE, "outbound delivery is off (outbound.enabled): generated mail cannot be sent");
  if (req.recipients_size() == 0) return error_response(v1::Error::INVALID_ARGUMENT, "submit: no recipients");
  if (req.recipients_size() > static_cast<int>(cfg.limits().recipients_per_message()))
    return error_response(v1::Error::INVALID_ARGUMENT, "submit: more recipients than limits.recipients_per_message");
  for (const auto& rc : req.recipients())
    if (rc.find('@') == std::string::npos || rc.find_first_of("<> \r\n") != std::string::npos)
      return error_response(v1::Error::INVALID_ARGUMENT, "submit: invalid recipient '" + rc + "'");
  if (req.mail_from().find_first_of("<> \r\n") != std::string::npos)
    return error_response(v1::Error::INVALID_ARGUMENT, "submit: invalid sender '" + req.mail_from() + "'");
  const std::string& msg = req.message();
  if (msg.empty() || msg.size() > cfg.limits().message_size())
    return error_response(v1::Error::INVALID_ARGUMENT, "submit: the message is empty or larger than limits.message_size");
  // The spool holds canonical bodies: CRLF line endings, no bare CR or LF, ending in CRLF.
  for (size_t i = 0; i < msg.size(); ++i) {
    if ((msg[i] == '\r' && (i + 1 >= msg.size() || msg[i + 1] != '\n')) || (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r')))
      return error_response(v1::Error::INVALID_ARGUMENT, "submit: the message has a bare CR or LF (CRLF line endings are required)");
  }
  if (!msg.ends_with("\r\n")) return error_response(v1::Error::INVALID_ARGUMENT, "submit: the message must end with CRLF");

  worker::Worker& w = *deps_.workers[next_submit_worker_.fetch_add(1) % deps_.workers.size()];
  struct Outcome {
    std::string queue_id;
    smtp::CommitStatus status = smtp::CommitStatus::kError;
    bool no_room = false;
  };
  auto promise = std::make_shared<std::promise<Outcome>>();
  std::future<Outcome> done = promise->get_future();
  smtp::Envelope env;
  env.mail_from = req.mail_from();
  for (const auto& rc : req.recipients()) env.recipients.push_back(smtp::Recipient{rc, 0, {}});
  env.client_address = "local";
  env.helo = "mxedge-" + (req.origin().empty() ? std::string("submit") : req.origin());
  env.listener = "submit";
  env.size = msg.size();
  env.outbound = true;
  env.tlsrpt_exempt = req.tlsrpt_exempt();
  w.loop().post([&w, env = std::move(env), msg, promise]() mutable {
    if (!w.spool().has_room()) {
      promise->set_value(Outcome{{}, smtp::CommitStatus::kNoSpace, true});
      return;
    }
    env.queue_id = w.spool().new_queue_id();
    smtp::ServerSession::Message m;
    m.body = w.spool().open_body(env.queue_id);
    m.body->append(msg);
    m.envelope = std::move(env);
    const std::string qid = m.envelope.queue_id;
    // Committed with the worker's next group commit, at the end of this loop turn.
    w.spool().stage(std::move(m), [promise, qid](smtp::CommitStatus st) { promise->set_value(Outcome{qid, st, false}); });
  });
  if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready)
    return error_response(v1::Error::UNAVAILABLE, "the worker did not take the message in time (stopping or overloaded)");
  const Outcome o = done.get();
  if (o.status != smtp::CommitStatus::kOk) {
    const std::string why = o.status == smtp::CommitStatus::kNoSpace ? "the spool is out of space" : "the spool could not write it";
    log::error("submit.failed").kv("origin", req.origin()).kv("reason", why);
    return error_response(v1::Error::FAILED, "submit: " + why);
  }
  log::info("submit.queued").kv("qid", o.queue_id).kv("origin", req.origin()).kv("from", req.mail_from())
      .kv("rcpts", static_cast<int64_t>(req.recipients_size())).kv("size", static_cast<uint64_t>(msg.size()))
      .kv("tlsrpt_exempt", req.tlsrpt_exempt());
  v1::Response r;
  r.mutable_submit()->set_queue_id(o.queue_id);
  return r;
}

v1::Response Admin::tls_outcomes(const v1::TlsOutcomesRequest& req) {
  const auto runtime = deps_.runtime();
  const std::string dir = runtime->config.spool().directory();
  const int64_t from = trace::TlsOutcomeStore::utc_day(req.day_from());
  const int64_t to = req.day_to() == 0 ? from : trace::TlsOutcomeStore::utc_day(req.day_to());
  if (to < from) return error_response(v1::Error::INVALID_ARGUMENT, "tls_outcomes: day_to is before day_from");
  if (to - from > 31 * 86400) return error_response(v1::Error::INVALID_ARGUMENT, "tls_outcomes: at most 31 days at once");
  std::string error;
  const auto rows = trace::TlsOutcomeStore::query(trace::TlsOutcomeStore::databases(dir), from, to, &error);
  if (!error.empty()) return error_response(v1::Error::FAILED, "tls_outcomes: " + error);
  const std::string domain = lower(req.domain());
  v1::Response r;
  auto* out = r.mutable_tls_outcomes();
  auto split = [](const std::string& text, google::protobuf::RepeatedPtrField<std::string>* into) {
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      if (nl > pos) *into->Add() = text.substr(pos, nl - pos);
      pos = nl + 1;
    }
  };
  for (const auto& o : rows) {
    if (!domain.empty() && o.policy_domain != domain) continue;
    auto* t = out->add_outcomes();
    t->set_day(o.day);
    t->set_policy_type(o.policy_type);
    t->set_policy_domain(o.policy_domain);
    t->set_policy_id(o.policy_id);
    split(o.policy_strings, t->mutable_policy_strings());
    split(o.mx_hosts, t->mutable_mx_hosts());
    t->set_result_type(o.result_type);
    t->set_sending_mta_ip(o.sending_mta_ip);
    t->set_receiving_mx_hostname(o.receiving_mx_hostname);
    t->set_receiving_ip(o.receiving_ip);
    t->set_failure_reason_code(o.failure_reason_code);
    t->set_sessions(o.sessions);
  }
  return r;
}

// Inbound TLS-RPT reports: read from every worker's store (dataplane/trace/tlsrpt_inbound); show
// parses the stored canonical JSON again for the per-policy view.
v1::Response Admin::tlsrpt(const v1::TlsRptRequest& req) {
  if (req.action() == v1::TlsRptRequest::PENDING)
    return error_response(v1::Error::INVALID_ARGUMENT, "tlsrpt pending is answered by the control plane (its report sender)");
  auto rt = deps_.runtime();
  if (rt->config.tlsrpt().inbound().mailboxes().empty())
    return error_response(v1::Error::UNAVAILABLE,
                          "inbound TLS-RPT reports are off: list the organisation's reporting mailboxes (the rua=mailto: "
                          "addresses of its _smtp._tls records) in tlsrpt.inbound.mailboxes and reload");
  const bool show = req.action() == v1::TlsRptRequest::SHOW;
  if (show && req.id().empty()) return error_response(v1::Error::INVALID_ARGUMENT, "tlsrpt show needs a report id");
  trace::InboundQuery q;
  q.id = req.id();
  q.domain = req.domain();
  q.since = req.since();
  q.limit = req.limit() == 0 ? 100 : req.limit();
  q.with_json = show;
  size_t total = 0;
  std::string error;
  auto rows = trace::TlsRptInboundStore::query(trace::TlsRptInboundStore::databases(rt->config.spool().directory()), q, &total, &error);
  if (!error.empty()) return error_response(v1::Error::FAILED, "tlsrpt: " + error);
  if (show && rows.empty()) return error_response(v1::Error::NOT_FOUND, "no received TLS-RPT report " + req.id());
  v1::Response r;
  auto* out = r.mutable_tlsrpt();
  out->set_total(static_cast<uint32_t>(total));
  for (const auto& row : rows) {
    auto* t = out->add_reports();
    t->set_id(row.id);
    t->set_received_at(row.received);
    t->set_worker(row.worker);
    t->set_size(row.size);
    t->set_from(row.from);
    t->set_subject(row.subject);
    t->set_report_domain(row.report_domain);
    t->set_submitter(row.submitter);
    t->set_organization_name(row.organization);
    t->set_report_id(row.report_id);
    t->set_contact_info(row.contact_info);
    t->set_start_datetime(row.start_datetime);
    t->set_end_datetime(row.end_datetime);
    for (const auto& d : row.policy_domains) t->add_policy_domains(d);
    t->set_successful_sessions(row.successes);
    t->set_failed_sessions(row.failures);
    t->set_error(row.error);
    if (!show || row.report_json.empty()) continue;
    t->set_report_json(row.report_json);
    std::string why;
    const auto rep = tlsrpt::parse_json(row.report_json, &why);
    if (!rep) continue;  // stored by to_json, so it parses; a damaged row still shows its summary
    for (const auto& p : rep->policies) {
      auto* pp = t->add_policies();
      pp->set_policy_type(std::string(tlsrpt::to_string(p.policy.policy_type)));
      pp->set_policy_domain(p.policy.policy_domain);
      for (const auto& ps : p.policy.policy_string) pp->add_policy_strings(ps);
      for (const auto& mx : p.policy.mx_host) pp->add_mx_hosts(mx);
      pp->set_successful_sessions(p.summary.total_successful_session_count);
      pp->set_failed_sessions(p.summary.total_failure_session_count);
      for (const auto& f : p.failure_details) {
        auto* ff = pp->add_failures();
        ff->set_result_type(f.result_type);
        ff->set_sending_mta_ip(f.sending_mta_ip);
        ff->set_receiving_mx_hostname(f.receiving_mx_hostname);
        ff->set_receiving_mx_helo(f.receiving_mx_helo);
        ff->set_receiving_ip(f.receiving_ip);
        ff->set_failed_session_count(f.failed_session_count);
        ff->set_additional_information(f.additional_information);
        ff->set_failure_reason_code(f.failure_reason_code);
      }
    }
  }
  return r;
}

}  // namespace mxedge::dataplane
