// mxedgectl's offline tools: no daemon needed. (Filled in by the offline-tools work.)
#include "controlplane/ctl/ctl.h"

namespace mxedge::ctl {

void add_offline_commands(CLI::App& app, Ctl& ctl) {
  (void)app;
  (void)ctl;
}

}  // namespace mxedge::ctl
