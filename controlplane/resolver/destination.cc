#include "controlplane/resolver/destination.h"

#include <algorithm>
#include <map>

namespace mxedge::resolver {
namespace {

using Clock = std::chrono::steady_clock;

AddressAnswer to_address_answer(const LookupResult& r) {
  AddressAnswer a;
  a.security = r.security;
  a.kind = r.kind;
  a.why = r.why;
  if (r.security == Security::kSecure || r.security == Security::kInsecure) {
    a.addresses = r.answer.addresses;
    a.canonical_name = r.answer.canonical_name;
    for (const CnameHop& h : r.answer.cname_chain) {
      // A secure answer proves every hop; otherwise each hop is looked up on its own below.
      a.cname_chain.push_back({h.owner, h.target, r.security == Security::kSecure ? Security::kSecure : Security::kFailure});
    }
  }
  return a;
}

size_t estimate_bytes(const DestinationResult& d) {
  size_t n = sizeof(DestinationResult) + d.domain.size() + d.why.size();
  for (const MxHost& h : d.hosts) {
    n += sizeof(MxHost) + h.name.size() + 2 * h.name.size();
    for (const auto* a : {&h.a, &h.aaaa}) {
      for (const auto& s : a->addresses) n += s.size() + 32;
      n += a->cname_chain.size() * 96 + a->why.size();
    }
    for (const auto& t : h.tlsa.records) n += t.record.data.size() + 64;
    n += h.tlsa.qname.size() + h.tlsa.why.size() + h.tlsa.tried.size() * 48;
  }
  return n;
}

}  // namespace

std::string_view to_string(TlsaState s) {
  switch (s) {
    case TlsaState::kNotLooked: return "not-looked-up";
    case TlsaState::kUsable: return "usable";
    case TlsaState::kAllUnusable: return "all-unusable";
    case TlsaState::kSecureDenial: return "secure-denial";
    case TlsaState::kInsecure: return "insecure";
    case TlsaState::kBogus: return "bogus";
    case TlsaState::kFailure: return "failure";
  }
  return "?";
}

std::string_view to_string(DaneState s) {
  switch (s) {
    case DaneState::kAuthenticate: return "authenticate";
    case DaneState::kEncryptOnly: return "encrypt-only";
    case DaneState::kNoDane: return "no-dane";
    case DaneState::kDefer: return "defer";
  }
  return "?";
}

std::string_view to_string(MxState s) {
  switch (s) {
    case MxState::kRecords: return "mx";
    case MxState::kNullMx: return "null-mx";
    case MxState::kNoMx: return "no-mx";
    case MxState::kNxDomain: return "nxdomain";
    case MxState::kBogus: return "bogus";
    case MxState::kFailure: return "failure";
  }
  return "?";
}

std::vector<std::string> MxHost::addresses() const {
  std::vector<std::string> out;
  for (const AddressAnswer* f : {&a, &aaaa}) {
    if (f->security == Security::kSecure || f->security == Security::kInsecure)
      out.insert(out.end(), f->addresses.begin(), f->addresses.end());
  }
  return out;
}

DaneState MxHost::dane() const {
  switch (address_security) {
    case Security::kBogus:
    case Security::kFailure: return DaneState::kDefer;
    case Security::kInsecure: return DaneState::kNoDane;
    case Security::kSecure: break;
  }
  switch (tlsa.state) {
    case TlsaState::kUsable: return DaneState::kAuthenticate;
    case TlsaState::kAllUnusable: return DaneState::kEncryptOnly;
    case TlsaState::kBogus:
    case TlsaState::kFailure: return DaneState::kDefer;
    default: return DaneState::kNoDane;
  }
}

std::vector<size_t> DestinationResult::delivery_order(std::mt19937& rng) const {
  std::vector<size_t> order(hosts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t begin = 0; begin < order.size();) {
    size_t end = begin + 1;
    while (end < order.size() && hosts[end].preference == hosts[begin].preference) ++end;
    std::shuffle(order.begin() + static_cast<std::ptrdiff_t>(begin), order.begin() + static_cast<std::ptrdiff_t>(end), rng);
    begin = end;
  }
  return order;
}

// One resolution in progress. Every lookup it starts holds a reference; the last one to finish hands
// the result to the owner.
struct DestinationResolver::Job : std::enable_shared_from_this<Job> {
  DestinationResolver* owner;
  std::string domain;
  std::string key;            // in jobs_ and the cache: the domain, or "host:<name>:<port>"
  bool host_only = false;     // a configured host (smart host): no MX lookup
  uint16_t tlsa_port = 25;
  std::vector<Callback> callbacks;
  std::shared_ptr<DestinationResult> result = std::make_shared<DestinationResult>();
  size_t outstanding = 0;
  std::vector<size_t> host_pending;
  Clock::time_point expires = Clock::time_point::max();

  Job(DestinationResolver* o, std::string d) : owner(o), domain(std::move(d)), key(domain), tlsa_port(o->options_.tlsa_port) {}

  void launch(const std::string& name, uint16_t type, std::function<void(const LookupResult&)> fn) {
    ++outstanding;
    auto self = shared_from_this();
    owner->resolver_.lookup(name, type, [self, fn = std::move(fn)](const Resolver::Result& r, bool) {
      if (!self->owner) return;  // the DestinationResolver is gone
      self->expires = std::min(self->expires, r->expires);
      fn(*r);
      if (--self->outstanding == 0) self->done();
    });
  }

  void start() {
    result->domain = domain;
    if (host_only) {
      // The host is configured, not taken from DNS: as trustworthy as the configuration. Its
      // addresses and TLSA records are looked up (and validated) as for an MX host.
      result->mx_state = MxState::kNoMx;
      result->mx_security = Security::kSecure;
      MxHost host;
      host.name = domain;
      result->hosts.push_back(std::move(host));
      host_pending.assign(1, 0);
      ++outstanding;  // lookups answered from a cache complete at once: finish only after all started
      begin_host(0);
      if (--outstanding == 0) done();
      return;
    }
    launch(domain, kTypeMx, [this](const LookupResult& r) { on_mx(r); });
  }

  void on_mx(const LookupResult& r) {
    DestinationResult& d = *result;
    d.mx_security = r.security;
    d.why = r.why;
    for (const CnameHop& h : r.answer.cname_chain)
      d.mx_cname_chain.push_back({h.owner, h.target, r.security == Security::kSecure ? Security::kSecure : Security::kFailure});
    resolve_hops(d.mx_cname_chain, r.security, [] {});
    switch (r.security) {
      case Security::kBogus: d.mx_state = MxState::kBogus; return;
      case Security::kFailure: d.mx_state = MxState::kFailure; return;
      default: break;
    }
    if (r.kind == AnswerKind::kNxDomain) {
      d.mx_state = MxState::kNxDomain;
      return;
    }
    if (r.kind == AnswerKind::kNoData || r.answer.mx.empty()) {
      d.mx_state = MxState::kNoMx;
      MxHost host;
      host.name = r.answer.canonical_name.empty() ? domain : r.answer.canonical_name;
      d.hosts.push_back(std::move(host));
    } else {
      std::vector<MxRecord> mx = r.answer.mx;
      const bool only_null = std::all_of(mx.begin(), mx.end(), [](const MxRecord& m) { return m.exchange == "."; });
      if (only_null) {
        d.mx_state = MxState::kNullMx;
        return;
      }
      d.mx_state = MxState::kRecords;
      std::sort(mx.begin(), mx.end(), [](const MxRecord& x, const MxRecord& y) {
        return x.preference != y.preference ? x.preference < y.preference : x.exchange < y.exchange;
      });
      std::map<std::string, bool> seen;
      for (const MxRecord& m : mx) {
        if (m.exchange == "." || !seen.emplace(m.exchange, true).second) continue;
        if (d.hosts.size() == owner->options_.max_mx_hosts) {
          d.hosts_truncated = true;
          break;
        }
        MxHost host;
        host.name = m.exchange;
        host.preference = m.preference;
        d.hosts.push_back(std::move(host));
      }
    }
    host_pending.assign(d.hosts.size(), 0);
    for (size_t i = 0; i < d.hosts.size(); ++i) begin_host(i);
  }

  // Looks up each CNAME hop of an answer that is not secure, to tell where security was lost.
  void resolve_hops(std::vector<HopSecurity>& hops, Security overall, std::function<void()> after) {
    if (overall == Security::kSecure || hops.empty()) return;
    for (size_t i = 0; i < hops.size(); ++i) {
      launch(hops[i].owner, kTypeCname, [&hops, i, after](const LookupResult& r) {
        hops[i].security = r.security;
        after();
      });
    }
  }

  void begin_host(size_t i) {
    MxHost& h = result->hosts[i];
    host_pending[i] = 2;
    for (uint16_t type : {kTypeA, kTypeAaaa}) {
      launch(h.name, type, [this, i, type](const LookupResult& r) {
        MxHost& host = result->hosts[i];
        AddressAnswer& a = type == kTypeA ? host.a : host.aaaa;
        a = to_address_answer(r);
        if (a.security != Security::kSecure) {
          host_pending[i] += a.cname_chain.size();
          resolve_hops(a.cname_chain, a.security, [this, i] { host_step(i); });
        }
        host_step(i);
      });
    }
  }

  void host_step(size_t i) {
    if (--host_pending[i] == 0) addresses_done(i);
  }

  void addresses_done(size_t i) {
    MxHost& h = result->hosts[i];
    const AddressAnswer* fams[] = {&h.a, &h.aaaa};
    bool any_insecure = false, any_secure_data = false, any_bogus = false, all_secure = true;
    std::string why;
    for (const AddressAnswer* f : fams) {
      const char* fam = f == &h.a ? "A" : "AAAA";
      any_insecure |= f->security == Security::kInsecure;
      any_secure_data |= f->security == Security::kSecure && f->kind == AnswerKind::kData;
      any_bogus |= f->security == Security::kBogus;
      if (f->security != Security::kSecure) {
        all_secure = false;
        if (!why.empty()) why += "; ";
        why += std::string(fam) + " " + std::string(to_string(f->security)) + (f->why.empty() ? "" : ": " + f->why);
      }
    }
    if (any_insecure) {
      h.address_security = Security::kInsecure;
    } else if (any_secure_data || all_secure) {
      h.address_security = Security::kSecure;
    } else {
      h.address_security = any_bogus ? Security::kBogus : Security::kFailure;
    }
    h.address_why = why;
    if (h.address_security != Security::kSecure) {
      h.tlsa.why = "addresses are not secure: no TLSA lookup (RFC 7672 §2.2.2)";
      return;
    }
    if (!any_secure_data) {
      h.tlsa.why = "host has no addresses";
      return;
    }
    // TLSA base names: the CNAME-expanded name first, then the original name.
    const AddressAnswer& fam = (h.a.security == Security::kSecure && h.a.kind == AnswerKind::kData) ? h.a : h.aaaa;
    const std::string prefix = "_" + std::to_string(tlsa_port) + "._tcp.";
    std::vector<std::string> names{prefix + (fam.canonical_name.empty() ? h.name : fam.canonical_name)};
    if (names[0] != prefix + h.name) names.push_back(prefix + h.name);
    lookup_tlsa(i, std::move(names), 0);
  }

  void lookup_tlsa(size_t i, std::vector<std::string> names, size_t k) {
    const std::string name = names[k];
    result->hosts[i].tlsa.tried.push_back(name);
    launch(name, kTypeTlsa, [this, i, names = std::move(names), k](const LookupResult& r) {
      TlsaResult& t = result->hosts[i].tlsa;
      t.qname = names[k];
      t.why = r.why;
      switch (r.security) {
        case Security::kBogus: t.state = TlsaState::kBogus; return;
        case Security::kFailure: t.state = TlsaState::kFailure; return;
        case Security::kSecure:
          if (r.kind == AnswerKind::kData && !r.answer.tlsa.empty()) {
            bool usable = false;
            t.records.clear();
            for (const policy::TlsaRecord& rec : r.answer.tlsa) {
              const auto u = policy::classify(rec);
              usable |= u == policy::TlsaUsability::kUsable;
              t.records.push_back({rec, u});
            }
            t.state = usable ? TlsaState::kUsable : TlsaState::kAllUnusable;
            if (!usable) t.why = "every TLSA record is unusable";
            return;
          }
          t.state = TlsaState::kSecureDenial;
          break;
        case Security::kInsecure:
          t.state = TlsaState::kInsecure;
          break;
      }
      if (k + 1 < names.size()) lookup_tlsa(i, names, k + 1);
    });
  }

  void done() {
    const auto now = Clock::now();
    if (expires == Clock::time_point::max()) expires = now;
    // Whole seconds left, rounded up (the cache itself keeps the exact expiry).
    const auto left = std::chrono::ceil<std::chrono::seconds>(expires - now);
    result->ttl = static_cast<uint32_t>(std::max<int64_t>(left.count(), 0));
    auto keep = shared_from_this();  // finish() erases the owner's reference
    owner->finish(key, result, expires);
  }
};

DestinationResolver::DestinationResolver(Resolver& resolver, const DestinationOptions& options)
    : resolver_(resolver), options_(options), cache_(options.cache_bytes) {}

DestinationResolver::~DestinationResolver() {
  for (auto& [domain, job] : jobs_) job->owner = nullptr;
}

DestinationResolver::Result DestinationResolver::cached(std::string_view domain) {
  return cache_.get(domain, Clock::now());
}

void DestinationResolver::resolve(std::string_view domain, Callback callback) {
  const std::string name = normalize_name(domain);
  if (Result hit = cache_.get(name, Clock::now())) {
    callback(hit, true);
    return;
  }
  if (auto it = jobs_.find(name); it != jobs_.end()) {
    it->second->callbacks.push_back(std::move(callback));
    return;
  }
  auto job = std::make_shared<Job>(this, name);
  job->callbacks.push_back(std::move(callback));
  jobs_.emplace(name, job);
  job->start();
}

void DestinationResolver::resolve_host(std::string_view host, uint16_t port, Callback callback) {
  const std::string name = normalize_name(host);
  const std::string key = "host:" + name + ":" + std::to_string(port);
  if (Result hit = cache_.get(key, Clock::now())) {
    callback(hit, true);
    return;
  }
  if (auto it = jobs_.find(key); it != jobs_.end()) {
    it->second->callbacks.push_back(std::move(callback));
    return;
  }
  auto job = std::make_shared<Job>(this, name);
  job->key = key;
  job->host_only = true;
  job->tlsa_port = port;
  job->callbacks.push_back(std::move(callback));
  jobs_.emplace(key, job);
  job->start();
}

void DestinationResolver::finish(const std::string& domain, std::shared_ptr<DestinationResult> result,
                                 std::chrono::steady_clock::time_point expires) {
  auto it = jobs_.find(domain);
  if (it == jobs_.end()) return;
  std::shared_ptr<Job> job = std::move(it->second);
  jobs_.erase(it);
  Result shared = result;
  cache_.put_until(domain, shared, expires, estimate_bytes(*result), Clock::now());
  for (Callback& cb : job->callbacks) cb(shared, false);
}

}  // namespace mxedge::resolver
