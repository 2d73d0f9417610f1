// The DNSSEC wizard's judgement, without I/O: from the answers run_wizard() collected (validated
// lookups, the MTA-STS policy fetch, the gateway's keys) to the report's steps, the records to
// publish and the cutover plan. Separate from the lookups so that every state can be unit-tested.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/mta_sts/policy_fetcher.h"
#include "controlplane/resolver/resolver.h"
#include "controlplane/wizard/gateway_keys.h"
#include "mxedge/mgmt/v1/wizard.pb.h"

namespace mxedge::wizard {

using Answer = resolver::Resolver::Result;  // nullptr: no answer before the wizard's deadline

// The DNSKEY and DS types (the resolver hands their records over as text).
inline constexpr uint16_t kTypeDs = 43;
inline constexpr uint16_t kTypeDnskey = 48;

struct HostAnswers {
  std::string name;  // a gateway MX name
  Answer a, aaaa, tlsa;
};

struct WizardInputs {
  std::string domain;                  // normalized
  std::vector<std::string> mx_names;   // normalized, in the operator's order
  std::vector<GatewayKey> current_keys;
  std::string current_keys_error;      // why there are none (no listener certificates, unreadable)
  std::optional<GatewayKey> next_key;
  std::string next_key_error;
  // SOA at the domain and at each ancestor up to the root, nearest first: the first with data is the
  // domain's zone, the next its parent.
  std::vector<std::pair<std::string, Answer>> soa;
  Answer dnskey, ds;  // at the zone apex
  Answer mx;
  std::vector<HostAnswers> hosts;
  Answer sts_txt;     // _mta-sts.<domain> TXT
  std::optional<mta_sts::FetchResult> sts_fetch;
  Answer tlsrpt_txt;  // _smtp._tls.<domain> TXT
  int64_t now = 0;
};

struct ZoneCut {
  std::string zone;    // normalized; empty when not found
  std::string parent;  // normalized; empty for the root or when not found
  std::string why;     // why the zone was not found
};
ZoneCut find_zone(const std::vector<std::pair<std::string, Answer>>& soa);

// The names SOA is asked for: `domain` and every ancestor up to the root.
std::vector<std::string> zone_candidates(const std::string& domain);

mgmt::v1::WizardReport evaluate(const WizardInputs& in);

// "name." (zone-file form of a normalized name).
std::string fqdn(const std::string& name);

}  // namespace mxedge::wizard
