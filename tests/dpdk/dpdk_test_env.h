// What the DPDK tests share: EAL started once per test process without hugepages or PCI (as the CI
// machines allow), and the classifier config both fast paths get in the differential tests.
#pragma once

#include <string>
#include <vector>

#include "dataplane/dpdk/dpdk_fast_path.h"

namespace mxedge::dpdktest {

// --no-huge --no-pci --no-shconf -m 1024 and a file prefix of this process; no fast-path lcore
// unless `lcores` names one. Returns the status of the (only) EAL initialisation.
inline xdp::Status start_eal(std::vector<unsigned> lcores = {}) {
  static const std::string prefix = "mxtest" + std::to_string(::getpid());
  return dpdk::init_eal({"--no-huge", "--no-pci", "--no-shconf", "-m", "1024", "--file-prefix", prefix, "--log-level", "*:warning"},
                        lcores);
}

}  // namespace mxedge::dpdktest
