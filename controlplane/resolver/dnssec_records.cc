#include "controlplane/resolver/dnssec_records.h"

#include <memory>

// ldns' headers redefine bool for C; they come after every C++ header.
#include <ldns/ldns.h>

namespace mxedge::resolver {
namespace {

struct RrDeleter {
  void operator()(ldns_rr* rr) const { ldns_rr_free(rr); }
};
using RrPtr = std::unique_ptr<ldns_rr, RrDeleter>;

}  // namespace

std::optional<std::string> ds_from_dnskey(std::string_view dnskey, DsDigest digest, std::string* error) {
  const std::string text(dnskey);
  ldns_rr* raw = nullptr;
  const ldns_status st = ldns_rr_new_frm_str(&raw, text.c_str(), 3600, nullptr, nullptr);
  RrPtr key(raw);
  if (st != LDNS_STATUS_OK) {
    *error = std::string("not a DNS record: ") + ldns_get_errorstr_by_id(st);
    return std::nullopt;
  }
  if (ldns_rr_get_type(key.get()) != LDNS_RR_TYPE_DNSKEY) {
    *error = "not a DNSKEY record";
    return std::nullopt;
  }
  RrPtr ds(ldns_key_rr2ds(key.get(), digest == DsDigest::kSha256 ? LDNS_SHA256 : LDNS_SHA384));
  if (!ds) {
    *error = "cannot compute a DS from this DNSKEY";
    return std::nullopt;
  }
  std::unique_ptr<char, decltype(&free)> s(ldns_rr2str(ds.get()), &free);
  if (!s) {
    *error = "cannot format the DS record";
    return std::nullopt;
  }
  std::string out(s.get());
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  for (char& c : out) {
    if (c == '\t') c = ' ';
  }
  return out;
}

std::vector<std::string> ds_for_zone_keys(std::string_view zone_text, DsDigest digest, std::string* error) {
  std::vector<std::string> out;
  size_t line_no = 0;
  while (!zone_text.empty()) {
    const size_t nl = zone_text.find('\n');
    std::string_view line = zone_text.substr(0, nl);
    zone_text.remove_prefix(nl == std::string_view::npos ? zone_text.size() : nl + 1);
    ++line_no;
    const size_t semi = line.find(';');
    if (semi != std::string_view::npos) line = line.substr(0, semi);
    // Only SEP keys (flags 257) are published as DS; the DNSKEY type must be a whole token.
    const size_t at = line.find("DNSKEY");
    if (at == std::string_view::npos || (at > 0 && line[at - 1] != ' ' && line[at - 1] != '\t')) continue;
    const std::string_view rest = line.substr(at + 6);
    const size_t f = rest.find_first_not_of(" \t");
    if (f == std::string_view::npos || rest.substr(f, 3) != "257") continue;
    std::string err;
    auto ds = ds_from_dnskey(line, digest, &err);
    if (!ds) {
      *error = "line " + std::to_string(line_no) + ": " + err;
      return {};
    }
    out.push_back(std::move(*ds));
  }
  return out;
}

}  // namespace mxedge::resolver
