// `mxedgectl dane verify`: offline DANE verification of a certificate chain against TLSA records under
// the SMTP profile of RFC 7672, with OpenSSL's DANE verifier set up the way the data plane's outbound
// TLS sets it up (dataplane/tls/client_verify.cc), run on an X509_STORE_CTX instead of a handshake:
//   - usages 0/1 (PKIX-TA/PKIX-EE) and records policy::classify() rejects are unusable;
//   - DANE-EE (3) matches the leaf, without name checks and regardless of validity dates;
//   - DANE-TA (2) makes the matched certificate a trust anchor; the chain below it must validate
//     (signatures, dates) and the leaf must carry the host name, or one of the extra reference
//     identifiers, without partial wildcards (X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS).
#pragma once

#include <openssl/x509.h>

#include <optional>
#include <string>
#include <vector>

#include "controlplane/ctl/offline/report.h"
#include "policy/tlsa.h"

namespace mxedge::ctl::offline {

enum class DaneStatus { kVerified, kUnusable, kFailed };

struct DaneRecordReport {
  policy::TlsaRecord record;
  bool usable = false;
  std::string reason;  // why it is unusable
};

struct DaneCertificate {
  int depth = 0;
  std::string subject, issuer, not_before, not_after;
  std::vector<std::string> dns_names;
};

struct DaneResult {
  DaneStatus status = DaneStatus::kFailed;
  std::string reason;  // kUnusable / kFailed: one sentence
  std::string host;
  std::vector<std::string> names;  // every reference identifier, the host first
  // The matched record and the depth of the certificate it matched (also set for a DANE-TA match
  // whose chain then failed, e.g. on the name).
  bool matched = false;
  int match_depth = -1;
  policy::TlsaRecord match;
  std::string match_subject;  // the matched certificate's subject; "" for a bare public key TA (2 1 0),
                              // which signed the certificate at match_depth
  // X509_verify_cert's error when it failed.
  long x509_error = 0;
  int x509_error_depth = -1;
  std::string x509_error_text;
  std::vector<DaneRecordReport> records;  // in the order given
  std::vector<DaneCertificate> chain;     // the chain as given, leaf (depth 0) first
};

// Verifies `chain` (leaf first, then intermediates, optionally the trust anchor; not empty) for
// `host` (lower-case, no trailing dot) and the `extra_names`. nullopt with `error` set when OpenSSL
// cannot be set up.
std::optional<DaneResult> dane_verify(const std::vector<X509*>& chain, const std::string& host,
                                      const std::vector<std::string>& extra_names,
                                      const std::vector<policy::TlsaRecord>& records, std::string* error);

std::string usage_name(uint8_t usage);      // "DANE-EE", "DANE-TA", "PKIX-EE", "PKIX-TA", "usage 7"
std::string selector_name(uint8_t selector);  // "Cert", "SPKI"
std::string mtype_name(uint8_t mtype);      // "Full", "SHA2-256", "SHA2-512"

// JSON document of `dane verify --json`:
//   {"result": "verified" | "unusable" | "failed",
//    "reason": "..." (unusable / failed only),
//    "host": "mx.example.com", "names": ["mx.example.com", ...],
//    "chain_file": "<--chain>" (run_dane_verify only),
//    "match": {"usage", "usage_name", "selector", "selector_name", "mtype", "mtype_name", "depth",
//              "record": "2 1 1 <hex>", "certificate": "<subject>"} | null,
//    "x509_error": {"code", "message", "depth"} | null,
//    "records": [{"record": "<presentation>", "usable": bool, "reason": "..." (unusable only)}],
//    "chain": [{"depth", "subject", "issuer", "not_before", "not_after", "dns_names": [...]}]}
nlohmann::ordered_json to_json(const DaneResult& r);
// The first line is "verified: ...", "unusable: ..." or "failed: <reason>", then details.
std::string to_text(const DaneResult& r);

struct DaneVerifyArgs {
  std::string host;
  std::vector<std::string> names;  // --name: extra reference identifiers
  std::vector<std::string> tlsa;   // --tlsa "U S M HEX"
  std::string chain_file;          // --chain
};

// The whole command: parses the arguments (bad TLSA text, host name, unreadable or empty PEM: usage
// errors), verifies, and reports (verified: kOk; unusable, failed: kNegative).
Report run_dane_verify(const DaneVerifyArgs& args);

}  // namespace mxedge::ctl::offline
