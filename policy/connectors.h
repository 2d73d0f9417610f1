// Outbound connectors: which connector serves a recipient domain. The most specific match wins:
// the exact domain, then the longest ".parent" suffix, then "*". Without configured connectors (or
// without a match) the built-in default applies: by MX, DANE and MTA-STS opportunistic, TLS 1.2+,
// cleartext allowed when no policy applies.
#pragma once

#include <string_view>

#include "mxedge/config/v1/config.pb.h"

namespace mxedge::config {

// The built-in connector ("default").
const v1::Connector& default_connector();

// The connector for `domain` (lower case, no trailing dot). Never null.
const v1::Connector& select_connector(const v1::Config& config, std::string_view domain);

}  // namespace mxedge::config
