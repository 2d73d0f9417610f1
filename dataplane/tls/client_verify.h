// TLS client for outbound SMTP: makes each connection's SSL* enforce its policy::HostPolicy (DANE,
// WebPKI or opportunistic) and reports, after the handshake, whether the peer satisfied it and why not.
//
//   auto tls = OutboundTls::create({.ca_file = ""}, &error);   // one per worker/process
//   SSL* ssl = tls->new_ssl(host, &error);                      // before STARTTLS's handshake
//   ... SSL_set_fd / SSL_connect until done ...
//   VerifyOutcome v = tls->check(ssl, host);                     // same `host` as new_ssl
//   if (!v.satisfied) { QUIT, close; v.result_type goes to TLS-RPT; }
//
// Verification never aborts the handshake inside OpenSSL (SSL_VERIFY_NONE; OpenSSL still verifies and
// keeps the first error in SSL_get_verify_result): check() turns it into a precise reason and the
// caller closes on failure. Nothing may be sent over a session before check() returned satisfied.
//
// Per requirement (new_ssl):
//   kDane    SNI and TLSA base domain = dane_names[0] (host.name when dane_names is empty); every
//            TLSA record that policy::classify() and OpenSSL accept is added, the others are skipped
//            and counted (none accepted: check() fails with "tlsa-invalid"). DANE-EE matches skip
//            name checks (DANE_FLAG_NO_DANE_EE_NAMECHECKS) and, in OpenSSL, validity dates; DANE-TA
//            chains must carry one of dane_names (SSL_add1_host).
//   kWebPki  chain to the shared X509_STORE (ca_file, or the system store), name = host.name.
//   kMay / kEncrypt
//            not authenticated; with sts_testing the WebPKI check above runs too, and its failure is
//            reported (sts_testing_failed, result_type) without failing the requirement.
//   All      TLS 1.2 minimum (or host.min_tls_version when higher), tls_context.cc's cipher rules,
//            X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS ("*.example.com" matches exactly one label, and
//            "m*.example.com" nothing).
//
// Session cache (client side, ours, not OpenSSL's internal one): a session is stored under a key made
// of the requirement, host.name, the SNI, min_tls_version, sts_testing, and for kDane a SHA-256 over
// the TLSA records and dane_names (for WebPKI the verify name, host.name), so a session made under
// one requirement is never offered under another. A session is kept only once check() found the
// connection satisfied (kDane / kWebPki: authenticated), together with that VerifyOutcome; when
// OpenSSL resumes it, check() returns the stored outcome (resumed = true), because a resumed
// handshake carries no certificate to process (DANE state is empty then). Sessions arriving before
// check() (TLS 1.2; early TLS 1.3 tickets) wait on the connection until check() decides. TLS 1.3
// tickets are single-use (taken out of the cache when offered, RFC 8446 §C.4); TLS 1.2 sessions stay.
// Expired or non-resumable sessions are dropped at lookup; the map is LRU-bounded. OpenSSL marks a
// session not resumable when its SSL is freed without SSL_shutdown (close_notify): after QUIT, call
// SSL_shutdown once before SSL_free, or the session is never reused.
//
// Lifetime: SSL* from new_ssl are owned by the caller (SSL_free); they keep the SSL_CTX and the cache
// alive, so OutboundTls may be destroyed first. Do not SSL_dup them. Thread safety: create/new_ssl/
// check may run on several threads for different SSL*; the cache has its own lock.
//
// STANDARDS: RFC 7672 (SMTP DANE: §3.1.1 DANE-EE ignores names and dates, §3.2.2 DANE-TA names, §8.1
// SNI), RFC 6698 / RFC 7671 (TLSA), RFC 8461 §4.2 (MTA-STS certificate checks: the MX host name, never
// the policy's "*." pattern), RFC 6125 §6.4.3 (wildcards), RFC 8460 §4.3 (result types), RFC 8446.
// SECURITY: a session is only resumed under the exact requirement, names and TLSA set it was
// authenticated under; unauthenticated sessions are never cached for kDane / kWebPki; records OpenSSL
// cannot use never turn DANE into "anything goes": no accepted record means not verified.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>

#include "dataplane/tls/tls_context.h"
#include "policy/delivery_policy.h"

namespace mxedge::tls {

struct OutboundTlsOptions {
  std::string ca_file;                // PEM trust anchors for WebPKI; empty: the system store
  size_t max_cached_sessions = 1024;  // session cache bound; 0 disables resumption
};

struct VerifyOutcome {
  bool satisfied = false;  // the requirement is met (kMay/kEncrypt: always once TLS is up)
  std::string method;      // "dane", "webpki" (kWebPki, or the sts_testing check), "none"
  bool verified = false;   // the certificate was authenticated (by DANE or WebPKI)
  // kDane, verified: the TLSA record that matched and the chain depth it matched at
  // (SSL_get0_dane_tlsa; OpenSSL reports nothing once the chain failed, e.g. a DANE-TA name mismatch).
  int dane_usage = -1, dane_selector = -1, dane_mtype = -1, match_depth = -1;
  int tlsa_accepted = 0;   // kDane: records handed to OpenSSL's DANE verifier
  int tlsa_rejected = 0;   // kDane: records skipped (classify() or OpenSSL refused them)
  std::string failure;     // why not verified ("certificate has expired", "hostname mismatch", ...)
  std::string result_type; // RFC 8460 result type of that failure, empty when verified
  bool sts_testing_failed = false;  // kMay/kEncrypt with sts_testing: the WebPKI check failed
  std::string peer_subject;         // leaf subject (RFC 2253), for the trace
  bool resumed = false;             // the outcome is the one stored with the resumed session
};

// The RFC 8460 §4.3 result type of an X509_V_ERR_* verification error (the analyzer uses it too).
std::string tlsrpt_result_type(long x509_verify_error);

class SessionCache;

class OutboundTls {
 public:
  // Null with *error set when the context or the trust store cannot be set up.
  static std::unique_ptr<OutboundTls> create(const OutboundTlsOptions& options, std::string* error);
  ~OutboundTls();
  OutboundTls(const OutboundTls&) = delete;
  OutboundTls& operator=(const OutboundTls&) = delete;

  // An SSL* (client mode, no BIO yet) configured for `host` as the top comment says, with a cached
  // session set when one exists for the same key. Null with *error set on failure.
  SSL* new_ssl(const policy::HostPolicy& host, std::string* error);

  // After the handshake: did the peer satisfy host.tls? `host` must be the policy new_ssl was given
  // (otherwise: not satisfied). Also decides whether the connection's session may be cached.
  VerifyOutcome check(SSL* ssl, const policy::HostPolicy& host) const;

  size_t cached_sessions() const;  // sessions currently in the cache (tests, stats)
  SSL_CTX* context() const { return ctx_.get(); }

 private:
  OutboundTls() = default;
  ContextPtr ctx_;
  std::shared_ptr<SessionCache> cache_;  // null when max_cached_sessions == 0
};

}  // namespace mxedge::tls
