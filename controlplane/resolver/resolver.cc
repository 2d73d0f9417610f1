#include "controlplane/resolver/resolver.h"

#include <event2/event.h>
#include <stdlib.h>
#include <unbound-event.h>
#include <unbound.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

namespace mxedge::resolver {
namespace {

using Clock = std::chrono::steady_clock;

std::string rcode_name(int rcode) {
  switch (rcode) {
    case 1: return "FORMERR";
    case 2: return "SERVFAIL";
    case 4: return "NOTIMP";
    case 5: return "REFUSED";
    default: return "RCODE" + std::to_string(rcode);
  }
}

size_t estimate_bytes(const LookupResult& r) {
  size_t n = sizeof(LookupResult) + r.qname.size() + r.why.size() + r.answer.canonical_name.size();
  for (const auto& h : r.answer.cname_chain) n += h.owner.size() + h.target.size() + 64;
  for (const auto& m : r.answer.mx) n += m.exchange.size() + 48;
  for (const auto& a : r.answer.addresses) n += a.size() + 32;
  for (const auto& t : r.answer.tlsa) n += t.data.size() + 48;
  for (const auto& t : r.answer.targets) n += t.size() + 32;
  for (const auto& t : r.answer.txt) n += t.size() + 32;
  for (const auto& t : r.answer.other) n += t.size() + 32;
  return n;
}

bool readable_anchor(const std::string& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read trust anchor file " + path;
    return false;
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" DS ") != std::string::npos || line.find("\tDS\t") != std::string::npos ||
        line.find(" DNSKEY ") != std::string::npos || line.find("\tDNSKEY\t") != std::string::npos)
      return true;
  }
  *error = "trust anchor file " + path + " holds no DS or DNSKEY record";
  return false;
}

// ub_ctx_set_option() accepts "local-zone:" but ignores it (libunbound 1.17); a config file is read.
bool apply_nodefault_zones(ub_ctx* ctx, const std::vector<std::string>& zones, std::string* error) {
  char path[] = "/tmp/mxedge-unbound-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) {
    *error = "cannot create a temporary libunbound configuration";
    return false;
  }
  std::string text = "server:\n";
  for (const std::string& z : zones) {
    if (z.find_first_of("\"\n ") != std::string::npos) {
      close(fd);
      unlink(path);
      *error = "invalid zone name '" + z + "'";
      return false;
    }
    text += "  local-zone: \"" + z + "\" nodefault\n";
  }
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  const int rc = written ? ub_ctx_config(ctx, path) : UB_READFILE;
  unlink(path);
  if (rc != 0) *error = std::string("libunbound configuration: ") + ub_strerror(rc);
  return rc == 0;
}

}  // namespace

std::string_view to_string(Security s) {
  switch (s) {
    case Security::kSecure: return "secure";
    case Security::kInsecure: return "insecure";
    case Security::kBogus: return "bogus";
    case Security::kFailure: return "failure";
  }
  return "?";
}

std::string_view to_string(AnswerKind k) {
  switch (k) {
    case AnswerKind::kData: return "data";
    case AnswerKind::kNoData: return "nodata";
    case AnswerKind::kNxDomain: return "nxdomain";
  }
  return "?";
}

std::shared_ptr<LookupResult> make_lookup_result(std::string_view qname, uint16_t qtype, const RawAnswer& raw) {
  auto out = std::make_shared<LookupResult>();
  out->qname = normalize_name(qname);
  out->qtype = qtype;
  if (raw.sec == RawAnswer::kBogus) {
    out->security = Security::kBogus;
    out->why = raw.why_bogus && *raw.why_bogus ? raw.why_bogus : "DNSSEC validation failed";
    return out;
  }
  if (raw.rcode != 0 && raw.rcode != 3) {
    out->why = rcode_name(raw.rcode) + (raw.ratelimited ? " (rate limited)" : "");
    return out;
  }
  if (raw.packet.empty()) {
    out->why = "resolver returned no answer";
    return out;
  }
  std::string error;
  if (!parse_answer(raw.packet, out->qname, qtype, &out->answer, &error)) {
    out->why = error;
    return out;
  }
  const int rcode = raw.rcode ? raw.rcode : out->answer.rcode;
  if (rcode != 0 && rcode != 3) {
    out->why = rcode_name(rcode);
    return out;
  }
  out->security = raw.sec == RawAnswer::kSecure ? Security::kSecure : Security::kInsecure;
  const ParsedAnswer& a = out->answer;
  const bool data = !a.mx.empty() || !a.addresses.empty() || !a.tlsa.empty() || !a.targets.empty() || !a.txt.empty() ||
                    !a.other.empty();
  out->kind = rcode == 3 ? AnswerKind::kNxDomain : data ? AnswerKind::kData : AnswerKind::kNoData;
  out->ttl = a.ttl;
  return out;
}

Resolver::Resolver(const ResolverOptions& options) : options_(options), cache_(options.cache_bytes) {}

Resolver::~Resolver() {
  if (ctx_) ub_ctx_delete(ctx_);  // in-flight lookups are dropped without their callbacks
  for (auto& [seq, p] : pending_) {
    if (p.timer) event_free(p.timer);
    delete p.answer_token;
  }
  if (base_) event_base_free(base_);
  if (log_) fclose(log_);
}

std::unique_ptr<Resolver> Resolver::create(const ResolverOptions& options, std::string* error) {
  std::unique_ptr<Resolver> r(new Resolver(options));
  if (options.trust_anchor_file.empty()) {
    *error = "a trust anchor file is required (DNSSEC validation cannot be turned off)";
    return nullptr;
  }
  if (!readable_anchor(options.trust_anchor_file, error)) return nullptr;
  if (!options.root_hints_file.empty() && !std::ifstream(options.root_hints_file)) {
    *error = "cannot read root hints file " + options.root_hints_file;
    return nullptr;
  }
  r->base_ = event_base_new();
  if (!r->base_) {
    *error = "cannot create an event base";
    return nullptr;
  }
  r->ctx_ = ub_ctx_create_event(r->base_);
  if (!r->ctx_) {
    *error = "cannot create a libunbound context";
    return nullptr;
  }
  auto set = [&](const char* opt, const std::string& value) {
    const int rc = ub_ctx_set_option(r->ctx_, opt, value.c_str());
    if (rc != 0) *error = std::string("resolver option ") + opt + " " + value + ": " + ub_strerror(rc);
    return rc == 0;
  };
  r->log_ = fopen(options.log_file.empty() ? "/dev/null" : options.log_file.c_str(), "a");
  if (!r->log_) {
    *error = "cannot open resolver log file " + options.log_file;
    return nullptr;
  }
  ub_ctx_debugout(r->ctx_, r->log_);
  // val-log-level 2 makes the validator keep the reason of a bogus answer (why_bogus).
  if (!set("verbosity:", "0") || !set("val-log-level:", "2") ||
      !set("edns-buffer-size:", std::to_string(options.edns_buffer_size)) ||
      !set("outbound-msg-retry:", std::to_string(options.retries)) ||
      !set("val-bogus-ttl:", std::to_string(options.bogus_ttl.count())) ||
      !set("cache-max-ttl:", std::to_string(options.max_ttl.count())) ||
      !set("cache-max-negative-ttl:", std::to_string(options.max_negative_ttl.count())) ||
      !set("do-ip6:", options.use_ipv6_transport ? "yes" : "no") ||
      !set("do-not-query-localhost:", options.allow_loopback_servers ? "no" : "yes"))
    return nullptr;
  if (!options.nodefault_zones.empty() && !apply_nodefault_zones(r->ctx_, options.nodefault_zones, error)) return nullptr;
  if (!options.root_hints_file.empty() && !set("root-hints:", options.root_hints_file)) return nullptr;
  if (int rc = ub_ctx_add_ta_file(r->ctx_, options.trust_anchor_file.c_str()); rc != 0) {
    *error = "trust anchor " + options.trust_anchor_file + ": " + ub_strerror(rc);
    return nullptr;
  }
  for (const std::string& a : options.root_stub) {
    if (int rc = ub_ctx_set_stub(r->ctx_, ".", a.c_str(), 0); rc != 0) {
      *error = "root server address '" + a + "': " + ub_strerror(rc);
      return nullptr;
    }
  }
  for (const std::string& a : options.forwarders) {
    if (int rc = ub_ctx_set_fwd(r->ctx_, a.c_str()); rc != 0) {
      *error = "forwarder address '" + a + "': " + ub_strerror(rc);
      return nullptr;
    }
  }
  return r;
}

std::chrono::seconds Resolver::cache_ttl(const LookupResult& r) const {
  using std::chrono::seconds;
  switch (r.security) {
    case Security::kBogus: return options_.bogus_ttl;
    case Security::kFailure: return options_.failure_ttl;
    default: break;
  }
  const seconds ttl(r.ttl);
  return std::min(ttl, r.kind == AnswerKind::kData ? options_.max_ttl : options_.max_negative_ttl);
}

void Resolver::lookup(std::string_view name, uint16_t type, Callback callback) {
  ++counters_.lookups;
  const std::string qname = normalize_name(name);
  std::string key = std::to_string(type) + "/" + qname;
  const auto now = Clock::now();
  if (Result hit = cache_.get(key, now)) {
    callback(hit, true);
    return;
  }
  if (auto it = pending_by_key_.find(key); it != pending_by_key_.end()) {
    ++counters_.coalesced;
    pending_[it->second].callbacks.push_back(std::move(callback));
    return;
  }
  const uint64_t seq = next_seq_++;
  Pending& p = pending_.emplace(seq, Pending{}).first->second;
  p.seq = seq;
  p.key = key;
  p.qname = qname;
  p.qtype = type;
  p.callbacks.push_back(std::move(callback));
  pending_by_key_.emplace(std::move(key), seq);
  ++counters_.queries_started;
  // Local data is answered inside ub_resolve_event: the pending entry exists before the call.
  auto* token = new Token{this, seq};
  p.answer_token = token;
  int async_id = 0;
  const int rc = ub_resolve_event(ctx_, qname.c_str(), type, 1, token, &Resolver::on_answer, &async_id);
  auto it = pending_.find(seq);
  if (it == pending_.end()) return;  // answered already
  if (rc != 0) {
    delete token;  // never handed over
    it->second.answer_token = nullptr;
    auto failed = std::make_shared<LookupResult>();
    failed->qname = qname;
    failed->qtype = type;
    failed->why = std::string("resolver error: ") + ub_strerror(rc);
    complete(seq, std::move(failed));
    return;
  }
  Pending& q = it->second;
  q.async_id = async_id;
  q.timer_token = std::make_unique<Token>(Token{this, seq});
  q.timer = evtimer_new(base_, &Resolver::on_timeout, q.timer_token.get());
  const auto t = options_.query_timeout.count();
  timeval tv{static_cast<time_t>(t / 1000), static_cast<suseconds_t>((t % 1000) * 1000)};
  evtimer_add(q.timer, &tv);
}

void Resolver::on_answer(void* arg, int rcode, void* packet, int packet_len, int sec, char* why_bogus, int ratelimited) {
  std::unique_ptr<Token> token(static_cast<Token*>(arg));
  Resolver* self = token->self;
  auto it = self->pending_.find(token->seq);
  if (it == self->pending_.end()) return;
  it->second.answer_token = nullptr;  // this callback owns it now
  RawAnswer raw;
  raw.rcode = rcode;
  if (packet && packet_len > 0) raw.packet = {static_cast<const uint8_t*>(packet), static_cast<size_t>(packet_len)};
  raw.sec = sec == 2 ? RawAnswer::kSecure : sec == 1 ? RawAnswer::kBogus : RawAnswer::kInsecure;
  raw.why_bogus = why_bogus;
  raw.ratelimited = ratelimited != 0;
  self->complete(token->seq, make_lookup_result(it->second.qname, it->second.qtype, raw));
}

void Resolver::on_timeout(int, short, void* arg) {
  const Token* token = static_cast<const Token*>(arg);
  Resolver* self = token->self;
  const uint64_t seq = token->seq;
  auto it = self->pending_.find(seq);
  if (it == self->pending_.end()) return;
  // A cancelled query's callback never runs: its token is ours to free. If the cancel fails, the
  // query is not libunbound's any more and its callback has run (everything is on this thread).
  if (it->second.async_id && ub_cancel(self->ctx_, it->second.async_id) == 0) delete it->second.answer_token;
  it->second.answer_token = nullptr;
  ++self->counters_.timeouts;
  auto r = std::make_shared<LookupResult>();
  r->qname = it->second.qname;
  r->qtype = it->second.qtype;
  r->why = "timeout: no answer within " + std::to_string(self->options_.query_timeout.count()) + " ms";
  self->complete(seq, std::move(r));
}

void Resolver::complete(uint64_t seq, std::shared_ptr<LookupResult> result) {
  auto it = pending_.find(seq);
  if (it == pending_.end()) return;
  Pending p = std::move(it->second);
  pending_.erase(it);
  pending_by_key_.erase(p.key);
  if (p.timer) event_free(p.timer);
  switch (result->security) {
    case Security::kSecure: ++counters_.secure; break;
    case Security::kInsecure: ++counters_.insecure; break;
    case Security::kBogus: ++counters_.bogus; break;
    case Security::kFailure: ++counters_.failure; break;
  }
  const auto ttl = cache_ttl(*result);
  const auto now = Clock::now();
  result->ttl = static_cast<uint32_t>(ttl.count());
  result->expires = now + ttl;
  const size_t bytes = estimate_bytes(*result);
  Result shared = std::move(result);
  cache_.put(p.key, shared, ttl, bytes, now);
  for (Callback& cb : p.callbacks) cb(shared, false);
}

void Resolver::run_until(const std::function<bool()>& done) {
  while (!done() && !pending_.empty()) event_base_loop(base_, EVLOOP_ONCE);
}

}  // namespace mxedge::resolver
