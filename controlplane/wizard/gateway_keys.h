// The gateway's TLS keys as SMTP DANE sees them (RFC 6698, RFC 7672 §3): the certificates its inbound
// listeners present now and the one it rolls to next, loaded from PEM files, and whether a TLSA
// record authenticates one of them. The DNSSEC wizard uses this to tell an operator which
// `_25._tcp.<mx>` records to publish.
//
// SECURITY: reads private key files only to derive their public key; nothing private is kept.
// Encrypted keys are not decrypted (no passphrase prompt): give the certificate instead.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policy/tlsa.h"

namespace mxedge::wizard {

struct GatewayKey {
  std::string source;      // the file(s) it came from
  std::string description; // "EC P-256", "RSA 2048"; the subject when a certificate was given
  std::vector<uint8_t> spki;  // DER SubjectPublicKeyInfo of the leaf
  std::vector<uint8_t> cert;  // DER leaf certificate; empty when only a key was given
  std::vector<std::vector<uint8_t>> issuer_certs;  // the rest of the chain (DER), leaf's issuer first
  std::vector<std::vector<uint8_t>> issuer_spkis;
};

// A PEM chain, leaf first (listeners[].certificates[].cert_file).
std::optional<GatewayKey> load_certificate_chain(const std::string& path, std::string* error);
// A PEM private or public key: only the SPKI is known.
std::optional<GatewayKey> load_key(const std::string& path, std::string* error);

// The record to publish for a key: 3 1 1 (DANE-EE, SPKI, SHA2-256), which survives certificate
// renewals with the same key.
policy::TlsaRecord dane_ee_record(const GatewayKey& key);

// True when `record` authenticates a server presenting `key`'s chain: usage 3 against the leaf,
// usage 2 against an issuer in the chain; selectors 0/1, matching types 0/1/2. Usages 0/1 never
// match (not usable for SMTP, RFC 7672 §3.1.3).
bool tlsa_matches(const policy::TlsaRecord& record, const GatewayKey& key);

std::string to_hex(std::span<const uint8_t> data);
std::string sha256_hex(std::string_view data);

}  // namespace mxedge::wizard
