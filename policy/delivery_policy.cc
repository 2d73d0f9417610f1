#include "policy/delivery_policy.h"

namespace mxedge::policy {

std::string_view to_string(ConnectorMode m) {
  switch (m) {
    case ConnectorMode::kNone: return "none";
    case ConnectorMode::kOpportunistic: return "opportunistic";
    case ConnectorMode::kMandatory: return "mandatory";
  }
  return "?";
}

std::string_view to_string(TlsRequirement r) {
  switch (r) {
    case TlsRequirement::kMay: return "may";
    case TlsRequirement::kEncrypt: return "encrypt";
    case TlsRequirement::kDane: return "dane";
    case TlsRequirement::kWebPki: return "webpki";
  }
  return "?";
}

std::string_view to_string(PolicyVerdict v) {
  switch (v) {
    case PolicyVerdict::kDeliver: return "deliver";
    case PolicyVerdict::kDefer: return "defer";
    case PolicyVerdict::kBounce: return "bounce";
  }
  return "?";
}

}  // namespace mxedge::policy
