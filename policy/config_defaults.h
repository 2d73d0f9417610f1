// Defaults and semantic validation of a parsed configuration; see config_loader.h for the syntax layer.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mxedge/config/v1/config.pb.h"

namespace mxedge::config {

// Fills every setting the operator left out with its documented default.
void apply_defaults(mxedge::config::v1::Config& config);

// Reports each semantic problem as (field path, message); the loader maps paths to file positions.
// Paths look like "listeners[1].address".
using ProblemSink = std::function<void(const std::string& path, const std::string& message)>;
void validate(const mxedge::config::v1::Config& config, const ProblemSink& problem);

}  // namespace mxedge::config
