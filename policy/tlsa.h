// TLSA records (RFC 6698) and their usability for SMTP (RFC 7672 §3). Shared by the control plane,
// which resolves and classifies them, and the data plane, which hands the usable ones to OpenSSL's
// DANE verifier (SSL_dane_tlsa_add).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mxedge::policy {

struct TlsaRecord {
  uint8_t usage = 0;     // 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE
  uint8_t selector = 0;  // 0 full certificate, 1 SubjectPublicKeyInfo
  uint8_t mtype = 0;     // 0 exact, 1 SHA2-256, 2 SHA2-512
  std::vector<uint8_t> data;

  bool operator==(const TlsaRecord&) const = default;
};

// Why a record cannot be used to authenticate an SMTP server; kUsable when it can.
enum class TlsaUsability {
  kUsable,
  kPkixUsage,        // usages 0 and 1 are not usable with SMTP (RFC 7672 §3.1.3)
  kUnknownUsage,
  kUnknownSelector,
  kUnknownMatchingType,
  kWrongDigestLength,  // SHA2-256 data that is not 32 bytes, SHA2-512 not 64
  kEmptyData,
};

std::string_view to_string(TlsaUsability u);

TlsaUsability classify(const TlsaRecord& r);

// Parses TLSA rdata (wire format: usage, selector, matching type, data). nullopt when shorter than
// the three fixed octets. An empty association data field parses (and is classified kEmptyData).
std::optional<TlsaRecord> parse_tlsa_rdata(std::span<const uint8_t> rdata);

// "3 1 1 a1b2..." (presentation format, lower-case hex).
std::string to_presentation(const TlsaRecord& r);

// Parses the presentation format ("3 1 1 A1B2..."; white space inside the hex allowed). Used for
// configured records and the CLI; nullopt with `error` set on bad input.
std::optional<TlsaRecord> parse_tlsa_presentation(std::string_view text, std::string* error);

}  // namespace mxedge::policy
