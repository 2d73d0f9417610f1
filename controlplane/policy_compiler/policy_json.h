// JSON and text views of a compiled destination policy, for mxedge-resolve --policy, the management
// API (`mxedgectl policy show`) and tests.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "policy/delivery_policy.h"

namespace mxedge::policy_compiler {

nlohmann::json to_json(const policy::DestinationPolicy& p);
std::string to_text(const policy::DestinationPolicy& p);

}  // namespace mxedge::policy_compiler
