// Fuzz target: SMTP command-line parsing (verbs, MAIL/RCPT paths and parameters, BDAT arguments).
#include <cstdint>
#include <string_view>

#include "dataplane/smtp/smtp_command.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  using namespace mxedge::smtp;
  Command c = parse_command(line);
  auto m = parse_mail_from(c.args);
  if (m.path_error == PathError::kNone) (void)m.args.sender.address();
  auto r = parse_rcpt_to(c.args);
  if (r.path_error == PathError::kNone) (void)r.args.recipient.address();
  (void)parse_mail_from(line);
  (void)parse_rcpt_to(line);
  (void)parse_bdat(c.args);
  (void)is_xtext(line);
  return 0;
}
