// Fuzz target: the TLS-RPT report parser and gunzip (controlplane/tlsrpt/report.h), fed what another
// MTA could mail or POST us as a report: JSON, or a gzip stream (first bytes 1f 8b) that is inflated
// under a bound and then parsed. A report that parses must survive to_json and parse again unchanged.
#include <cstdint>
#include <string>
#include <string_view>

#include "controlplane/tlsrpt/report.h"

namespace {

constexpr size_t kMaxOut = 1 << 20;

void check_report(std::string_view json) {
  using namespace mxedge::tlsrpt;
  std::string err;
  const auto r = parse_json(json, &err);
  if (!r) {
    if (err.empty()) __builtin_trap();  // every rejection says why
    return;
  }
  if (!parse_datetime(r->date_range.start_datetime) || !parse_datetime(r->date_range.end_datetime)) __builtin_trap();
  std::string err2;
  const auto back = parse_json(to_json(*r), &err2);
  if (!back || !(*back == *r)) __builtin_trap();  // round trip
  (void)report_filename("submitter.example", r->policies.empty() ? "" : r->policies[0].policy.policy_domain, 0, 1,
                        r->report_id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxedge::tlsrpt;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  check_report(in);
  std::string err;
  if (auto out = gunzip(in, kMaxOut, &err)) {
    if (out->size() > kMaxOut) __builtin_trap();
    check_report(*out);
  } else if (err.empty()) {
    __builtin_trap();
  }
  (void)parse_datetime(in);
  return 0;
}
