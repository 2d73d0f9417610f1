// What an offline command produced, independent of the CLI: a verdict (mapped onto mxedgectl's exit
// codes by offline_commands.cc), the human-readable text and the JSON document for stdout, or an error
// (usage or failure) for print_error. The unit tests check these directly.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>

namespace mxedge::ctl::offline {

enum class Verdict {
  kOk,        // exit 0: verified, valid, match, generated
  kNegative,  // exit 1: not verified, unusable, invalid, no match
  kUsage,     // exit 2: bad arguments, unreadable or unparseable input files
  kFailed,    // exit 6: the operation itself failed (OpenSSL setup)
};

struct Report {
  Verdict verdict = Verdict::kOk;
  std::string text;     // human-readable output (ends with a newline); unused when error is set
  nlohmann::ordered_json json;  // the --json document; unused when error is set
  std::string error_code;  // set for errors: "usage", "failed"
  std::string error;       // the message for print_error

  bool is_error() const { return !error.empty(); }
};

inline Report usage_error(std::string message) {
  Report r;
  r.verdict = Verdict::kUsage;
  r.error_code = "usage";
  r.error = std::move(message);
  return r;
}

inline Report failed_error(std::string message) {
  Report r;
  r.verdict = Verdict::kFailed;
  r.error_code = "failed";
  r.error = std::move(message);
  return r;
}

}  // namespace mxedge::ctl::offline
