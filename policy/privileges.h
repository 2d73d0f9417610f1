// Capabilities a daemon keeps after start-up. Each daemon needs its privileges to bind ports below
// 1024, load and attach BPF programs and pin maps; once that is done it keeps only what its running
// work still needs (the data plane with an XDP fast path: CAP_BPF for the map reads and writes behind
// its counters and lists, CAP_NET_ADMIN to detach the program at shutdown; otherwise nothing).
//
// drop_capabilities_except() clears the ambient set and reduces the permitted and effective sets of
// the calling thread to `keep`; threads started afterwards inherit that. Call it before any other
// thread exists. It does not touch the bounding set (systemd's CapabilityBoundingSet= and
// NoNewPrivileges= already bound it). Works the same for root (uid 0 without capabilities can still
// open its own files) and for a service user.
#pragma once

#include <string>
#include <vector>

namespace mxedge::privileges {

// `keep`: capability numbers (CAP_BPF, ...) to keep if the process has them. False with *error set
// when the kernel refuses (the daemon then stops: it would run with more than it should).
bool drop_capabilities_except(const std::vector<int>& keep, std::string* error);

// The effective set of the calling thread as names ("cap_bpf,cap_net_admin"), "none" when empty.
std::string effective_capabilities();

}  // namespace mxedge::privileges
