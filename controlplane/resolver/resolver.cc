#include "controlplane/resolver/resolver.h"

#include <poll.h>
#include <stdlib.h>
#include <unistd.h>
#include <unbound.h>

#include <algorithm>
#include <fstream>

namespace mxedge::resolver {
namespace {

using Clock = std::chrono::steady_clock;

thread_local Resolver* t_processing = nullptr;

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

std::shared_ptr<LookupResult> make_lookup_result(std::string_view qname, uint16_t qtype, int err, const ub_result* r) {
  auto out = std::make_shared<LookupResult>();
  out->qname = normalize_name(qname);
  out->qtype = qtype;
  if (err != 0) {
    out->why = std::string("resolver error: ") + ub_strerror(err);
    return out;
  }
  if (!r) {
    out->why = "resolver returned no result";
    return out;
  }
  if (r->bogus) {
    out->security = Security::kBogus;
    out->why = r->why_bogus ? r->why_bogus : "DNSSEC validation failed";
    return out;
  }
  if (r->rcode != 0 && r->rcode != 3) {
    out->why = rcode_name(r->rcode) + (r->was_ratelimited ? " (rate limited)" : "");
    return out;
  }
  std::string error;
  if (r->answer_packet && r->answer_len > 0) {
    if (!parse_answer({static_cast<const uint8_t*>(r->answer_packet), static_cast<size_t>(r->answer_len)}, out->qname,
                      qtype, &out->answer, &error)) {
      out->why = error;
      return out;
    }
  } else {
    out->answer.canonical_name = out->qname;
  }
  out->security = r->secure ? Security::kSecure : Security::kInsecure;
  out->kind = r->nxdomain ? AnswerKind::kNxDomain : r->havedata ? AnswerKind::kData : AnswerKind::kNoData;
  out->ttl = out->answer.has_ttl ? out->answer.ttl : static_cast<uint32_t>(std::max(r->ttl, 0));
  return out;
}

Resolver::Resolver(const ResolverOptions& options) : options_(options), cache_(options.cache_bytes) {}

Resolver::~Resolver() {
  if (ctx_) ub_ctx_delete(ctx_);
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
  r->ctx_ = ub_ctx_create();
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
  if (ub_ctx_async(r->ctx_, 1) != 0) {
    *error = "libunbound cannot resolve in a thread";
    return nullptr;
  }
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

int Resolver::fd() const { return ub_fd(ctx_); }

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
  int async_id = 0;
  const int rc = ub_resolve_async(ctx_, qname.c_str(), type, 1, reinterpret_cast<void*>(static_cast<uintptr_t>(seq)),
                                  &Resolver::on_result, &async_id);
  if (rc != 0) {
    auto failed = make_lookup_result(qname, type, rc, nullptr);
    ++counters_.failure;
    callback(failed, false);
    return;
  }
  ++counters_.queries_started;
  Pending p{seq, async_id, key, qname, type, now + options_.query_timeout, {}};
  p.callbacks.push_back(std::move(callback));
  pending_by_key_.emplace(std::move(key), seq);
  pending_.emplace(seq, std::move(p));
}

void Resolver::on_result(void* arg, int err, ub_result* result) {
  Resolver* self = t_processing;
  const uint64_t seq = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(arg));
  auto it = self ? self->pending_.find(seq) : decltype(self->pending_.end()){};
  if (!self || it == self->pending_.end()) {  // already failed by its deadline
    if (result) ub_resolve_free(result);
    return;
  }
  auto r = make_lookup_result(it->second.qname, it->second.qtype, err, result);
  if (result) ub_resolve_free(result);
  self->complete(seq, std::move(r));
}

void Resolver::complete(uint64_t seq, std::shared_ptr<LookupResult> result) {
  auto it = pending_.find(seq);
  if (it == pending_.end()) return;
  Pending p = std::move(it->second);
  pending_.erase(it);
  pending_by_key_.erase(p.key);
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

void Resolver::process() {
  Resolver* saved = t_processing;
  t_processing = this;
  ub_process(ctx_);
  t_processing = saved;
}

void Resolver::expire(Clock::time_point now) {
  std::vector<uint64_t> overdue;
  for (const auto& [seq, p] : pending_) {
    if (p.deadline <= now) overdue.push_back(seq);
  }
  for (uint64_t seq : overdue) {
    auto it = pending_.find(seq);
    if (it == pending_.end()) continue;
    ub_cancel(ctx_, it->second.async_id);
    ++counters_.timeouts;
    auto r = std::make_shared<LookupResult>();
    r->qname = it->second.qname;
    r->qtype = it->second.qtype;
    r->why = "timeout: no answer within " + std::to_string(options_.query_timeout.count()) + " ms";
    complete(seq, std::move(r));
  }
}

std::optional<Clock::time_point> Resolver::next_deadline() const {
  std::optional<Clock::time_point> next;
  for (const auto& [seq, p] : pending_) {
    if (!next || p.deadline < *next) next = p.deadline;
  }
  return next;
}

void Resolver::run_until(const std::function<bool()>& done) {
  while (!done() && !pending_.empty()) {
    int timeout_ms = -1;
    if (auto d = next_deadline()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*d - Clock::now()).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(left + 1, 0, 60000));
    }
    pollfd p{fd(), POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) > 0) process();
    expire(Clock::now());
  }
}

}  // namespace mxedge::resolver
