// Loads the gateway's YAML configuration onto the protobuf messages of mxedge.config.v1.
//
// YAML keys are the protobuf field names; nested maps are messages, sequences are repeated fields.
// Enum values are written in lower case without the enum's prefix (tls_mode: starttls for
// TLS_MODE_STARTTLS); durations as "300s", "5m", "1h", "250ms" or a plain number of seconds; byte sizes
// as integers or with a unit ("64KiB", "50MiB", "1GiB", "10MB").
//
// Every problem is reported with the file, line and column it comes from: unknown keys, wrong types,
// out-of-range numbers, invalid values, missing required settings. Nothing is silently ignored.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxedge/config/v1/config.pb.h"
#include "policy/config_defaults.h"

namespace mxedge::config {

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when not tied to a place in the file
  int column = 0;  // 1-based
  std::string message;

  std::string to_string() const;  // "file:line:column: message"
};

struct LoadResult {
  std::optional<mxedge::config::v1::Config> config;  // set only when errors is empty
  std::vector<ConfigError> errors;

  bool ok() const { return config.has_value(); }
  std::string error_text() const;  // every error, one per line
};

// Parses, applies defaults and validates. `files` (config_defaults.h): whose files must be readable
// by this process; each daemon passes its own, operators' checks all.
LoadResult load_config_file(const std::string& path, unsigned files = kFilesAll);
LoadResult load_config_text(std::string_view yaml_text, std::string_view file_name, unsigned files = kFilesAll);

// Parsing helpers shared with the CLI and tests.
std::optional<uint64_t> parse_byte_size(std::string_view text);
std::optional<int64_t> parse_duration_ms(std::string_view text);

}  // namespace mxedge::config
