// Record-level DNSSEC helpers on ldns: the DS record that publishes a DNSKEY (RFC 4034 §5, RFC 4509),
// in presentation format. The DNSSEC wizard and the lab's checks use it to tell an operator exactly
// what the parent zone must hold.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mxedge::resolver {

enum class DsDigest { kSha256 = 2, kSha384 = 4 };

// `dnskey`: one DNSKEY record in presentation format ("example. 3600 IN DNSKEY 257 3 13 ...").
// Returns "example. 3600 IN DS <tag> <alg> <digest type> <HEX>", or nullopt with `error` set.
std::optional<std::string> ds_from_dnskey(std::string_view dnskey, DsDigest digest, std::string* error);

// The DS records for every DNSKEY with the SEP flag (257) in zone-file text (comments and other
// records are skipped). Errors name the line.
std::vector<std::string> ds_for_zone_keys(std::string_view zone_text, DsDigest digest, std::string* error);

}  // namespace mxedge::resolver
