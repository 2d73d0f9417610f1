// The TLS-RPT DNS record (RFC 8460 §3): `_smtp._tls.<domain>` TXT "v=TLSRPTv1; rua=<uri>[,<uri>]".
// Pure functions, no I/O: the DNSSEC wizard checks a domain's record with them, TLS-RPT reporting
// (#8) will find its report targets with them; fuzz_tlsrpt_record feeds them arbitrary input.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mxedge::policy {

struct TlsRptRecord {
  std::vector<std::string> rua;  // mailto: and https: URIs, in order
  size_t extensions = 0;         // other fields (ignored by senders)
};

// True when a TXT record is meant as TLS-RPT: it begins with "v=TLSRPTv1" followed by ";" (after
// optional white space) or nothing. Other records at the name are ignored by senders.
bool is_tlsrpt_record(std::string_view txt);

// Parses one record by RFC 8460 §3's ABNF: the version first, exactly one rua field with a
// comma-separated list of mailto: (with an address) and https: (with a host) URIs, optional
// extensions (name=value), fields separated by ";" with optional white space, a trailing ";" allowed.
// nullopt with `error` set when it does not parse.
std::optional<TlsRptRecord> parse_tlsrpt_record(std::string_view txt, std::string* error);

}  // namespace mxedge::policy
