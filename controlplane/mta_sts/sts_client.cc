#include "controlplane/mta_sts/sts_client.h"

namespace mxedge::mta_sts {

std::string_view to_string(Discovery::Kind k) {
  switch (k) {
    case Discovery::kNone: return "none";
    case Discovery::kId: return "id";
    case Discovery::kInvalid: return "invalid";
    case Discovery::kTempFail: return "temporary-failure";
  }
  return "?";
}

std::string_view to_string(StsResult::Kind k) {
  switch (k) {
    case StsResult::kNoPolicy: return "no-policy";
    case StsResult::kPolicy: return "policy";
    case StsResult::kTempFail: return "temporary-failure";
  }
  return "?";
}

void StsClient::discover(std::string_view domain, std::function<void(const Discovery&)> callback) {
  const std::string name = "_mta-sts." + resolver::normalize_name(domain);
  resolver_.lookup(name, resolver::kTypeTxt, [name, callback = std::move(callback)](const resolver::Resolver::Result& r, bool) {
    Discovery d;
    switch (r->security) {
      case resolver::Security::kFailure:
      case resolver::Security::kBogus:
        // SERVFAIL, timeout or a validation failure is not "no policy" (RFC 8461 §3.1 and §5).
        d.kind = Discovery::kTempFail;
        d.reason = name + " TXT: " + std::string(resolver::to_string(r->security)) + (r->why.empty() ? "" : " (" + r->why + ")");
        callback(d);
        return;
      default:
        break;
    }
    std::string error;
    auto id = policy::parse_sts_txt(r->answer.txt, &error);
    if (id) {
      d.kind = Discovery::kId;
      d.id = *id;
    } else if (!error.empty()) {
      d.kind = Discovery::kInvalid;  // RFC 8461 §3.1: treated as no policy available
      d.reason = name + ": " + error;
    } else {
      d.kind = Discovery::kNone;
      d.reason = name + ": " + (r->kind == resolver::AnswerKind::kNxDomain ? "NXDOMAIN" : "no v=STSv1 TXT record");
    }
    callback(d);
  });
}

void StsClient::fetch_policy(std::string_view domain, std::string id, std::function<void(const StsResult&)> callback) {
  fetcher_.fetch(domain, [id = std::move(id), callback = std::move(callback)](const FetchResult& f) {
    StsResult r;
    r.domain = f.domain;
    r.id = id;
    if (!f.ok) {
      r.kind = StsResult::kTempFail;
      r.reason = f.url + ": " + f.error;
      callback(r);
      return;
    }
    policy::StsError err;
    auto p = policy::parse_sts_policy(f.body, &err);
    if (!p) {
      r.kind = StsResult::kTempFail;
      r.reason = f.url + ": invalid policy: " + err.to_string();
      callback(r);
      return;
    }
    r.kind = StsResult::kPolicy;
    r.policy = std::move(*p);
    callback(r);
  });
}

void StsClient::lookup(std::string_view domain, std::function<void(const StsResult&)> callback) {
  const std::string d = resolver::normalize_name(domain);
  discover(d, [this, d, callback = std::move(callback)](const Discovery& disc) {
    if (disc.kind == Discovery::kId) {
      fetch_policy(d, disc.id, callback);
      return;
    }
    StsResult r;
    r.domain = d;
    r.kind = disc.kind == Discovery::kTempFail ? StsResult::kTempFail : StsResult::kNoPolicy;
    r.reason = disc.reason;
    callback(r);
  });
}

}  // namespace mxedge::mta_sts
