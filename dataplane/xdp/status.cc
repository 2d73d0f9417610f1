// Status text; see status.h.
#include "dataplane/xdp/status.h"

#include <cstring>

namespace mxedge::xdp {

std::string Status::to_string() const {
  if (ok()) return "ok";
  char buf[128];
  const char* text = strerror_r(err_, buf, sizeof buf);  // GNU variant
  return context_ + ": " + text + " (errno " + std::to_string(err_) + ")";
}

}  // namespace mxedge::xdp
