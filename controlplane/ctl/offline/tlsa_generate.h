// `mxedgectl tlsa generate`: the TLSA records (RFC 6698, RFC 7672 §3) the gateway's MX host should
// publish, and how to roll its key over without breaking DANE senders:
//   3 1 1  SHA-256 of the current leaf's SubjectPublicKeyInfo (one per certificate: ECDSA and RSA),
//   2 1 1  SHA-256 of the issuing CA's SubjectPublicKeyInfo (survives a leaf renewal by that CA),
//   3 1 1  of the next certificate or next key, pre-published before the rollover.
#pragma once

#include <openssl/x509.h>

#include <optional>
#include <string>
#include <vector>

#include "controlplane/ctl/offline/report.h"
#include "mxedge/config/v1/config.pb.h"
#include "policy/tlsa.h"

namespace mxedge::ctl::offline {

struct TlsaGenerateArgs {
  std::vector<std::string> cert_files;  // --cert: PEM, leaf first; empty: the listeners' (config)
  std::string chain_file;               // --chain: the issuing CA when the cert file does not carry it
  std::string next_cert_file;           // --next-cert
  std::string next_key_file;            // --next-key: private (or public) key, PEM
  std::string mx;                       // --mx; empty: the config's hostname
  int port = 25;                        // --port
  std::string config_file;              // --config: read only when --cert or --mx is missing
};

struct GeneratedTlsa {
  std::string role;    // "current", "issuer", "next", "next-issuer"
  std::string source;  // the file it comes from
  std::string subject;    // the certificate's subject ("" for a bare key)
  std::string not_after;  // the certificate's expiry ("" for a bare key)
  policy::TlsaRecord record;
  std::string rr;  // "_25._tcp.mx.example.com. IN TLSA 3 1 1 <hex>"
};

struct TlsaGenerateResult {
  std::string mx;     // lower case, no trailing dot
  int port = 25;
  std::string owner;  // "_25._tcp.mx.example.com."
  std::vector<GeneratedTlsa> records;  // current, issuer, next, next-issuer; no duplicates
  std::vector<std::string> notes;      // about these inputs (self-signed leaf, CA not served, ...)
  std::vector<std::string> guidance;   // the rollover procedure
};

// The distinct certificate files of the configuration's inbound TLS listeners, in order.
std::vector<std::string> listener_certificate_files(const mxedge::config::v1::Config& config);

// SHA-256 of the DER SubjectPublicKeyInfo: the data of a "3 1 1" / "2 1 1" record.
std::vector<uint8_t> spki_sha256(X509* cert);

// Generates the records for explicit inputs (cert_files and mx set; no configuration read). nullopt
// with `error` set on unreadable or inconsistent input (e.g. a chain whose CA did not issue the leaf).
std::optional<TlsaGenerateResult> generate_tlsa(const TlsaGenerateArgs& args, std::string* error);

// JSON document of `tlsa generate --json`:
//   {"mx", "port", "owner",
//    "records": [{"role", "usage", "selector", "mtype", "data": "<hex>", "rdata": "3 1 1 <hex>",
//                 "rr": "<owner> IN TLSA 3 1 1 <hex>", "source", "subject", "not_after"}],
//    "notes": [...], "guidance": [...]}
nlohmann::ordered_json to_json(const TlsaGenerateResult& r);
// Zone-file text: the RRs, every comment line starting with ';' (pasteable into a zone).
std::string to_text(const TlsaGenerateResult& r);

// The whole command: fills cert files / MX from the configuration when not given, generates, reports.
Report run_tlsa_generate(const TlsaGenerateArgs& args);

}  // namespace mxedge::ctl::offline
