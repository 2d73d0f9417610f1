// Outbound TLS verification and the client session cache; see client_verify.h for the policy.
#include "dataplane/tls/client_verify.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace mxedge::tls {

std::string tlsrpt_result_type(long code) {
  switch (code) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return "certificate-host-mismatch";
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return "certificate-expired";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
      return "certificate-not-trusted";
    default:
      return "validation-failure";  // X509_V_ERR_DANE_NO_MATCH among them
  }
}

struct SslSessionFree {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using SessionPtr = std::unique_ptr<SSL_SESSION, SslSessionFree>;

// Sessions by policy key, most recently used first, at most `max` of them.
class SessionCache {
 public:
  explicit SessionCache(size_t max) : max_(max) {}

  // A new reference to the session stored under `key` (TLS 1.3: taken out of the cache), with the
  // outcome it was stored with; null when there is none usable.
  SessionPtr take(const std::string& key, VerifyOutcome* outcome) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    auto entry = it->second;
    SSL_SESSION* s = entry->session.get();
    const long now = static_cast<long>(std::time(nullptr));
    if (SSL_SESSION_is_resumable(s) != 1 || now >= SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s)) {
      index_.erase(it);
      lru_.erase(entry);
      return nullptr;
    }
    *outcome = entry->outcome;
    if (SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION) {
      SessionPtr out = std::move(entry->session);
      index_.erase(it);
      lru_.erase(entry);
      return out;
    }
    if (SSL_SESSION_up_ref(s) != 1) return nullptr;
    lru_.splice(lru_.begin(), lru_, entry);
    return SessionPtr(s);
  }

  void put(const std::string& key, SessionPtr session, const VerifyOutcome& outcome) {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.erase(it->second);
      index_.erase(it);
    }
    lru_.push_front(Entry{key, std::move(session), outcome});
    index_[key] = lru_.begin();
    while (lru_.size() > max_) {
      index_.erase(lru_.back().key);
      lru_.pop_back();
    }
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lru_.size();
  }

 private:
  struct Entry {
    std::string key;
    SessionPtr session;
    VerifyOutcome outcome;
  };
  mutable std::mutex mu_;
  const size_t max_;
  std::list<Entry> lru_;
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

namespace {

using policy::HostPolicy;
using policy::TlsRequirement;

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

// What new_ssl decided for one connection, kept in the SSL's ex_data (freed with the SSL).
struct ConnState {
  std::shared_ptr<SessionCache> cache;  // null: no caching
  std::string key;                      // the policy key (also checks check()'s `host`)
  int tlsa_accepted = 0;
  int tlsa_rejected = 0;
  bool offered = false;           // a cached session was set on the SSL
  VerifyOutcome offered_outcome;  // ... stored with it
  bool checked = false;           // check() ran: `cacheable` and `outcome` are final
  bool cacheable = false;
  VerifyOutcome outcome;
  SessionPtr pending;  // a session OpenSSL delivered before check() ran
};

void free_conn_state(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<ConnState*>(ptr); }

// SSL_dup copies ex_data pointers; the copy must not share (and double-free) ours.
int dup_conn_state(CRYPTO_EX_DATA*, const CRYPTO_EX_DATA*, void** from_d, int, long, void*) {
  *from_d = nullptr;
  return 1;
}

int conn_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, &dup_conn_state, &free_conn_state);
  return index;
}

ConnState* conn_state(const SSL* ssl) {
  return ssl == nullptr ? nullptr : static_cast<ConnState*>(SSL_get_ex_data(ssl, conn_index()));
}

// OpenSSL hands over a new client session (TLS 1.2: during the handshake; TLS 1.3: a ticket, after
// it). Returning 1 keeps the reference.
int on_new_session(SSL* ssl, SSL_SESSION* session) {
  ConnState* st = conn_state(ssl);
  if (st == nullptr || !st->cache) return 0;
  if (!st->checked) {
    st->pending.reset(session);
    return 1;
  }
  if (!st->cacheable) return 0;
  st->cache->put(st->key, SessionPtr(session), st->outcome);
  return 1;
}

const char* requirement_name(TlsRequirement r) {
  switch (r) {
    case TlsRequirement::kMay: return "may";
    case TlsRequirement::kEncrypt: return "encrypt";
    case TlsRequirement::kDane: return "dane";
    case TlsRequirement::kWebPki: return "webpki";
  }
  return "?";
}

const std::string& sni_for(const HostPolicy& host) {
  if (host.tls == TlsRequirement::kDane && !host.dane_names.empty()) return host.dane_names[0];
  return host.name;
}

bool webpki_checked(const HostPolicy& host) {
  return host.tls == TlsRequirement::kWebPki ||
         ((host.tls == TlsRequirement::kMay || host.tls == TlsRequirement::kEncrypt) && host.sts_testing);
}

void append_field(std::string* out, std::string_view field) {
  *out += std::to_string(field.size());
  *out += ':';
  *out += field;
}

std::string hex(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kHex[p[i] >> 4]);
    s.push_back(kHex[p[i] & 15]);
  }
  return s;
}

// SHA-256 over the TLSA set (order-insensitive) and the DANE names (in order: the first is the base
// domain). Empty on digest failure, which the caller treats as "do not cache".
std::string tlsa_digest(const HostPolicy& host) {
  std::vector<std::string> records;
  records.reserve(host.tlsa.size());
  for (const auto& r : host.tlsa) {
    std::string s;
    append_field(&s, std::to_string(r.usage) + " " + std::to_string(r.selector) + " " + std::to_string(r.mtype));
    append_field(&s, std::string_view(reinterpret_cast<const char*>(r.data.data()), r.data.size()));
    records.push_back(std::move(s));
  }
  std::sort(records.begin(), records.end());
  std::string material;
  append_field(&material, std::to_string(records.size()));
  for (const auto& s : records) append_field(&material, s);
  append_field(&material, std::to_string(host.dane_names.size()));
  for (const auto& n : host.dane_names) append_field(&material, n);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(material.data(), material.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
  return hex(md, len);
}

// Empty when no key can be made (the connection is then not cached).
std::string policy_key(const HostPolicy& host) {
  std::string key;
  append_field(&key, requirement_name(host.tls));
  append_field(&key, host.name);
  append_field(&key, sni_for(host));
  append_field(&key, std::to_string(host.min_tls_version));
  append_field(&key, host.sts_testing ? "sts-testing" : "");
  if (host.tls == TlsRequirement::kDane) {
    std::string d = tlsa_digest(host);
    if (d.empty()) return {};
    append_field(&key, d);
  }
  if (webpki_checked(host)) append_field(&key, host.name);  // the verify name
  return key;
}

std::string subject_of(X509* cert) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) return {};
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

// Fills failure / result_type from an X509_V_ERR_* code (RFC 8460 §4.3).
void describe_failure(long code, VerifyOutcome* out) {
  out->failure = code == X509_V_ERR_DANE_NO_MATCH ? "no TLSA record matched" : X509_verify_cert_error_string(code);
  out->result_type = tlsrpt_result_type(code);
}

void check_webpki(SSL* ssl, X509* peer, VerifyOutcome* out) {
  out->method = "webpki";
  const long code = SSL_get_verify_result(ssl);
  if (peer == nullptr) {
    out->failure = "no peer certificate";
    out->result_type = "validation-failure";
  } else if (code != X509_V_OK) {
    describe_failure(code, out);
  } else {
    out->verified = true;
  }
}

void check_dane(SSL* ssl, X509* peer, const ConnState& st, VerifyOutcome* out) {
  out->method = "dane";
  out->tlsa_accepted = st.tlsa_accepted;
  out->tlsa_rejected = st.tlsa_rejected;
  if (st.tlsa_accepted == 0) {
    out->failure = "no usable TLSA record (" + std::to_string(st.tlsa_rejected) + " rejected)";
    out->result_type = "tlsa-invalid";
    return;
  }
  uint8_t usage = 0, selector = 0, mtype = 0;
  const unsigned char* data = nullptr;
  size_t dlen = 0;
  const int depth = SSL_get0_dane_tlsa(ssl, &usage, &selector, &mtype, &data, &dlen);
  if (depth >= 0) {
    out->dane_usage = usage;
    out->dane_selector = selector;
    out->dane_mtype = mtype;
    out->match_depth = depth;
  }
  const long code = SSL_get_verify_result(ssl);
  if (peer == nullptr) {
    out->failure = "no peer certificate";
    out->result_type = "validation-failure";
  } else if (code != X509_V_OK) {
    describe_failure(code, out);
  } else if (depth < 0) {  // verified, but not by DANE: never accepted as DANE
    describe_failure(X509_V_ERR_DANE_NO_MATCH, out);
  } else {
    out->verified = true;
  }
}

VerifyOutcome evaluate(SSL* ssl, const HostPolicy& host, const ConnState& st) {
  VerifyOutcome out;
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer != nullptr) out.peer_subject = subject_of(peer);
  switch (host.tls) {
    case TlsRequirement::kDane:
      check_dane(ssl, peer, st, &out);
      out.satisfied = out.verified;
      break;
    case TlsRequirement::kWebPki:
      check_webpki(ssl, peer, &out);
      out.satisfied = out.verified;
      break;
    case TlsRequirement::kMay:
    case TlsRequirement::kEncrypt:
      out.satisfied = true;
      if (host.sts_testing) {
        check_webpki(ssl, peer, &out);
        out.sts_testing_failed = !out.verified;
      } else {
        out.method = "none";
      }
      break;
  }
  return out;
}

}  // namespace

OutboundTls::~OutboundTls() = default;

std::unique_ptr<OutboundTls> OutboundTls::create(const OutboundTlsOptions& options, std::string* error) {
  if (conn_index() < 0) {
    *error = "SSL_get_ex_new_index: " + last_error();
    return nullptr;
  }
  ClientOptions client;  // verify = false: verification is ours (check()), not a handshake abort
  ContextPtr ctx = make_client_context(client, error);
  if (!ctx) return nullptr;
  const int ok = options.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                                         : SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr);
  if (ok != 1) {
    *error = "cannot load CA " + (options.ca_file.empty() ? std::string("(system store)") : options.ca_file) + ": " +
             last_error();
    return nullptr;
  }
  if (SSL_CTX_dane_enable(ctx.get()) <= 0) {
    *error = "SSL_CTX_dane_enable: " + last_error();
    return nullptr;
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx.get(), on_new_session);

  std::unique_ptr<OutboundTls> tls(new OutboundTls());
  tls->ctx_ = std::move(ctx);
  if (options.max_cached_sessions > 0) tls->cache_ = std::make_shared<SessionCache>(options.max_cached_sessions);
  return tls;
}

SSL* OutboundTls::new_ssl(const policy::HostPolicy& host, std::string* error) {
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx_.get()));
  if (!ssl) {
    *error = "SSL_new: " + last_error();
    return nullptr;
  }
  auto* st = new ConnState();
  if (SSL_set_ex_data(ssl.get(), conn_index(), st) != 1) {
    delete st;
    *error = "SSL_set_ex_data: " + last_error();
    return nullptr;
  }
  // From here `st` is freed with the SSL.
  auto fail = [&](std::string what) -> SSL* {
    *error = std::move(what);
    const std::string detail = last_error();
    if (detail != "unknown TLS error") *error += ": " + detail;
    return nullptr;
  };

  const std::string& sni = sni_for(host);
  if (sni.empty()) return fail("no host name for " + std::string(requirement_name(host.tls)) + " connection");
  const int min_version = std::max<int>(host.min_tls_version, TLS1_2_VERSION);
  if (SSL_set_min_proto_version(ssl.get(), min_version) != 1)
    return fail("unsupported minimum TLS version " + std::to_string(host.min_tls_version));
  if (SSL_set_tlsext_host_name(ssl.get(), sni.c_str()) != 1) return fail("cannot set SNI " + sni);
  SSL_set_verify(ssl.get(), SSL_VERIFY_NONE, nullptr);
  SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);

  if (host.tls == TlsRequirement::kDane) {
    // Sets the base domain as the first reference identifier too.
    if (SSL_dane_enable(ssl.get(), sni.c_str()) <= 0) return fail("SSL_dane_enable " + sni);
    SSL_dane_set_flags(ssl.get(), DANE_FLAG_NO_DANE_EE_NAMECHECKS);
    for (size_t i = 1; i < host.dane_names.size(); ++i) {
      if (host.dane_names[i].empty() || host.dane_names[i] == sni) continue;
      if (SSL_add1_host(ssl.get(), host.dane_names[i].c_str()) != 1) return fail("SSL_add1_host " + host.dane_names[i]);
    }
    for (const auto& r : host.tlsa) {
      if (policy::classify(r) != policy::TlsaUsability::kUsable) {
        ++st->tlsa_rejected;
        continue;
      }
      const int rc = SSL_dane_tlsa_add(ssl.get(), r.usage, r.selector, r.mtype, r.data.data(), r.data.size());
      if (rc > 0) {
        ++st->tlsa_accepted;
      } else if (rc == 0) {
        ++st->tlsa_rejected;  // e.g. selector 1 matching type 0 data that is not a public key
      } else {
        return fail("SSL_dane_tlsa_add");
      }
    }
    ERR_clear_error();  // the rejected records' reasons
  } else if (webpki_checked(host)) {
    if (SSL_set1_host(ssl.get(), host.name.c_str()) != 1) return fail("SSL_set1_host " + host.name);
  }

  st->key = policy_key(host);
  if (cache_ && !st->key.empty()) {
    st->cache = cache_;
    VerifyOutcome stored;
    if (SessionPtr session = cache_->take(st->key, &stored)) {
      if (SSL_set_session(ssl.get(), session.get()) == 1) {
        st->offered = true;
        st->offered_outcome = std::move(stored);
      } else {
        ERR_clear_error();
      }
    }
  }
  return ssl.release();
}

VerifyOutcome OutboundTls::check(SSL* ssl, const policy::HostPolicy& host) const {
  VerifyOutcome out;
  out.method = "none";
  ConnState* st = conn_state(ssl);
  if (st == nullptr) {
    out.failure = "connection was not made by OutboundTls::new_ssl";
    out.result_type = "validation-failure";
    return out;
  }
  if (policy_key(host) != st->key) {
    out.failure = "host policy differs from the one the connection was made for";
    out.result_type = "validation-failure";
  } else if (SSL_is_init_finished(ssl) != 1) {
    out.failure = "TLS handshake not complete";
    out.result_type = "validation-failure";
  } else if (st->offered && SSL_session_reused(ssl) == 1) {
    out = st->offered_outcome;
    out.resumed = true;
  } else {
    out = evaluate(ssl, host, *st);
  }

  st->checked = true;
  st->outcome = out;
  st->cacheable = out.satisfied && st->cache != nullptr && !st->key.empty();
  if (st->pending && st->cacheable) st->cache->put(st->key, std::move(st->pending), out);
  st->pending.reset();
  return out;
}

size_t OutboundTls::cached_sessions() const { return cache_ ? cache_->size() : 0; }

}  // namespace mxedge::tls
