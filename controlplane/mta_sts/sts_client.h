// MTA-STS discovery and policy retrieval for one domain (RFC 8461 §3): the _mta-sts TXT record
// through mxedge's resolver, then the policy fetch and the strict parse. No cache here: the policy
// cache (persistent, with refresh, grace and back-off) builds on this.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "controlplane/mta_sts/policy_fetcher.h"
#include "controlplane/resolver/resolver.h"
#include "policy/mta_sts.h"

namespace mxedge::mta_sts {

// What the _mta-sts TXT lookup says.
struct Discovery {
  enum Kind { kNone, kId, kInvalid, kTempFail } kind = kTempFail;
  std::string id;      // kId
  std::string reason;  // kInvalid, kTempFail (and kNone: which answer)
};
std::string_view to_string(Discovery::Kind k);

// The result per domain for the delivery engine and TLS-RPT.
struct StsResult {
  enum Kind { kNoPolicy, kPolicy, kTempFail } kind = kTempFail;
  std::string domain;
  std::string id;
  policy::StsPolicy policy;  // kPolicy
  std::string reason;        // kNoPolicy, kTempFail: why
};
std::string_view to_string(StsResult::Kind k);

class StsClient {
 public:
  StsClient(resolver::Resolver& resolver, PolicyFetcher& fetcher) : resolver_(resolver), fetcher_(fetcher) {}

  void discover(std::string_view domain, std::function<void(const Discovery&)> callback);
  // Fetches and parses the policy of `domain` (whose TXT id is `id`).
  void fetch_policy(std::string_view domain, std::string id, std::function<void(const StsResult&)> callback);
  // discover() then fetch_policy().
  void lookup(std::string_view domain, std::function<void(const StsResult&)> callback);

 private:
  resolver::Resolver& resolver_;
  PolicyFetcher& fetcher_;
};

}  // namespace mxedge::mta_sts
