// Fuzz target: YAML configuration loading and validation.
#include <cstdint>
#include <string_view>

#include "policy/config_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = mxedge::config::load_config_text(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
  (void)r.error_text();
  return 0;
}
