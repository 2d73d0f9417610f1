// `mxedgectl config validate [FILE]`: the configuration loaded and validated exactly as the daemons
// load it (policy/config_loader.h).
#pragma once

#include <string>

#include "controlplane/ctl/offline/report.h"

namespace mxedge::ctl::offline {

// kOk when valid ("FILE: valid"), kNegative otherwise (also when unreadable), every error on its own
// line as "file:line:column: message".
// JSON: {"file", "valid": bool, "errors": [{"file", "line", "column", "message"}]} (line and column 0
// when an error is not tied to a place in the file).
Report run_config_validate(const std::string& path);

}  // namespace mxedge::ctl::offline
