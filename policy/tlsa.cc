#include "policy/tlsa.h"

#include <cctype>
#include <charconv>

namespace mxedge::policy {

std::string_view to_string(TlsaUsability u) {
  switch (u) {
    case TlsaUsability::kUsable: return "usable";
    case TlsaUsability::kPkixUsage: return "PKIX usage (0/1) is not usable with SMTP";
    case TlsaUsability::kUnknownUsage: return "unknown certificate usage";
    case TlsaUsability::kUnknownSelector: return "unknown selector";
    case TlsaUsability::kUnknownMatchingType: return "unknown matching type";
    case TlsaUsability::kWrongDigestLength: return "digest length does not match the matching type";
    case TlsaUsability::kEmptyData: return "empty association data";
  }
  return "?";
}

TlsaUsability classify(const TlsaRecord& r) {
  if (r.usage == 0 || r.usage == 1) return TlsaUsability::kPkixUsage;
  if (r.usage != 2 && r.usage != 3) return TlsaUsability::kUnknownUsage;
  if (r.selector > 1) return TlsaUsability::kUnknownSelector;
  switch (r.mtype) {
    case 0:
      if (r.data.empty()) return TlsaUsability::kEmptyData;
      return TlsaUsability::kUsable;
    case 1:
      return r.data.size() == 32 ? TlsaUsability::kUsable : TlsaUsability::kWrongDigestLength;
    case 2:
      return r.data.size() == 64 ? TlsaUsability::kUsable : TlsaUsability::kWrongDigestLength;
    default:
      return TlsaUsability::kUnknownMatchingType;
  }
}

std::optional<TlsaRecord> parse_tlsa_rdata(std::span<const uint8_t> rdata) {
  if (rdata.size() < 3) return std::nullopt;
  TlsaRecord r;
  r.usage = rdata[0];
  r.selector = rdata[1];
  r.mtype = rdata[2];
  r.data.assign(rdata.begin() + 3, rdata.end());
  return r;
}

std::string to_presentation(const TlsaRecord& r) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s = std::to_string(r.usage) + " " + std::to_string(r.selector) + " " + std::to_string(r.mtype) + " ";
  s.reserve(s.size() + 2 * r.data.size());
  for (uint8_t b : r.data) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 15]);
  }
  return s;
}

std::optional<TlsaRecord> parse_tlsa_presentation(std::string_view text, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<TlsaRecord> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  TlsaRecord r;
  size_t pos = 0;
  auto skip_space = [&] {
    while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
  };
  const char* names[] = {"usage", "selector", "matching type"};
  uint8_t* fields[] = {&r.usage, &r.selector, &r.mtype};
  for (int i = 0; i < 3; ++i) {
    skip_space();
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data() + pos, text.data() + text.size(), value);
    if (ec != std::errc() || end == text.data() + pos) return fail(std::string("TLSA ") + names[i] + " is not a number");
    if (value > 255) return fail(std::string("TLSA ") + names[i] + " is larger than 255");
    if (end != text.data() + text.size() && !std::isspace(static_cast<unsigned char>(*end)))
      return fail(std::string("TLSA ") + names[i] + " is not a number");
    *fields[i] = static_cast<uint8_t>(value);
    pos = static_cast<size_t>(end - text.data());
  }
  int nibble = -1;
  for (; pos < text.size(); ++pos) {
    const char c = text[pos];
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    else return fail(std::string("TLSA association data is not hex (found '") + c + "')");
    if (nibble < 0) {
      nibble = v;
    } else {
      r.data.push_back(static_cast<uint8_t>(nibble << 4 | v));
      nibble = -1;
    }
  }
  if (nibble >= 0) return fail("TLSA association data has an odd number of hex digits");
  if (r.data.empty()) return fail("TLSA association data is missing");
  return r;
}

}  // namespace mxedge::policy
