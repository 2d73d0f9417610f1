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

// Whose files must be readable by this process: each daemon runs as its own user and checks only the
// files it opens itself (the control plane cannot, and need not, read the data plane's private keys).
// kFilesAll is for operators' checks (--check-config as root, mxedgectl config validate).
enum Files : unsigned {
  kFilesNone = 0,
  kFilesDataPlane = 1,     // listener certificates, keys and client CAs; next hop and outbound CAs
  kFilesControlPlane = 2,  // the MTA-STS policy host's certificates and keys; the TLS-RPT sender's CA
  kFilesAll = 3,
};
void validate(const mxedge::config::v1::Config& config, const ProblemSink& problem, unsigned files = kFilesAll);

}  // namespace mxedge::config
