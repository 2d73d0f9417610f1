// JSON views of resolver results, for mxedge-resolve, the management API and tests.
#pragma once

#include <nlohmann/json.hpp>

#include "controlplane/resolver/destination.h"
#include "controlplane/resolver/resolver.h"

namespace mxedge::resolver {

nlohmann::json to_json(const LookupResult& r);
nlohmann::json to_json(const DestinationResult& d);
nlohmann::json to_json(const CacheStats& s);
nlohmann::json to_json(const ResolverCounters& c);

// A few lines for people: one per host with its addresses, security and DANE state.
std::string to_text(const DestinationResult& d);

}  // namespace mxedge::resolver
