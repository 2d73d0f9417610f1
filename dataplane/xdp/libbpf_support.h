// Glue between libbpf and the data plane: libbpf's own messages go to the structured log, and the bpf
// filesystem that holds pinned maps is checked (and, for tests or a bare host, mounted).
#pragma once

#include <string>

#include "dataplane/xdp/status.h"

namespace mxedge::xdp {

// Installs the libbpf print callback once per process: warnings become `event=libbpf` warning lines
// (the verifier log of a rejected program among them), info lines are logged at debug level.
void route_libbpf_logs();

bool on_bpffs(const std::string& path);

// Creates dir and its missing parents; the nearest existing ancestor must be on a bpf filesystem
// (EOPNOTSUPP otherwise, with the mount command in the context).
Status make_pin_dir(const std::string& dir);

// mount -t bpf bpf <dir>, creating dir. Each mount is a new, empty bpf filesystem instance.
Status mount_bpffs(const std::string& dir);

}  // namespace mxedge::xdp
