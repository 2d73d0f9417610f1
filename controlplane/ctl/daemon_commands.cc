// mxedgectl's commands that talk to the daemons through the management API.
#include "controlplane/ctl/ctl.h"

namespace mxedge::ctl {

void add_daemon_commands(CLI::App& app, Ctl& ctl) {
  (void)app;
  (void)ctl;
}

}  // namespace mxedge::ctl
