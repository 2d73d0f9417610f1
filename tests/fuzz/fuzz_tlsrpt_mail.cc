// Fuzz target: inbound TLS-RPT mail (controlplane/tlsrpt/intake.h), fed what another MTA could send to
// the organisation's reporting mailbox: an RFC 5322 message whose headers, MIME structure, transfer
// encoding, gzip and JSON are all the sender's. Checked: an answer is either a report or an error
// that says why; every string handed back is bounded, valid UTF-8 without control characters; a
// report found survives to_json and parse_json unchanged.
#include <cstdint>
#include <string>
#include <string_view>

#include "controlplane/tlsrpt/intake.h"

namespace {

bool clean_utf8(const std::string& s) {
  if (s.size() > 998) return false;
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return mxedge::tlsrpt::clean_text(s) == s;  // cleaning clean text changes nothing
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxedge::tlsrpt;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  ExtractOptions o;
  o.max_json = 1 << 20;
  const ReceivedReport r = extract_report(in, o);
  if (r.report.has_value() == !r.error.empty()) __builtin_trap();  // exactly one of the two
  for (const std::string* s : {&r.from, &r.subject, &r.message_id, &r.report_domain, &r.report_submitter})
    if (!clean_utf8(*s)) __builtin_trap();
  if (r.report) {
    if (r.content_type.empty()) __builtin_trap();
    std::string err;
    const auto back = parse_json(to_json(*r.report), &err);
    if (!back || !(*back == *r.report)) __builtin_trap();
  }
  std::string err;
  if (auto d = base64_decode(in, &err)) {
    if (d->size() > size) __builtin_trap();
  } else if (err.empty()) {
    __builtin_trap();
  }
  (void)parse_content_type(in);
  return 0;
}
