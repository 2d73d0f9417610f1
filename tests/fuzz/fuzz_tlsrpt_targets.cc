// Fuzz target: what the TLS-RPT report sender reads from outside (controlplane/tlsrpt/sender.h): the
// TXT records at _smtp._tls.<domain> (rua_from_txt), the mailto: URIs in them (mailto_address, whose
// result becomes an SMTP envelope recipient), and its own job files in state_dir (parse_job), which a
// crash or a full disk may have left damaged.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/tlsrpt/sender.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxedge::tlsrpt;
  const std::string in(reinterpret_cast<const char*>(data), size);

  // Records separated by NUL, as several TXT records at one name.
  std::vector<std::string> txt;
  size_t pos = 0;
  while (pos <= in.size()) {
    size_t nul = in.find('\0', pos);
    if (nul == std::string::npos) nul = in.size();
    txt.push_back(in.substr(pos, nul - pos));
    pos = nul + 1;
  }
  RuaLookup r = rua_from_txt(txt);
  if (r.kind == RuaLookup::Kind::kFound && r.rua.empty()) __builtin_trap();
  if (r.kind == RuaLookup::Kind::kNone && r.detail.empty()) __builtin_trap();
  for (const std::string& uri : r.rua) {
    const std::string to = mailto_address(uri);
    // An address handed to the data plane as an envelope recipient never carries SMTP syntax.
    for (unsigned char c : to)
      if (c <= 0x20 || c == 0x7f || c == '<' || c == '>') __builtin_trap();
    if (!to.empty() && to.find('@') == std::string::npos) __builtin_trap();
  }
  const std::string direct = mailto_address(in);
  for (unsigned char c : direct)
    if (c <= 0x20 || c == 0x7f || c == '<' || c == '>') __builtin_trap();

  if (auto job = parse_job(in)) {
    // What parses is written back in a form that parses to the same thing.
    auto again = parse_job(format_job(*job));
    if (!again || again->day != job->day || again->domain != job->domain || again->targets.size() != job->targets.size())
      __builtin_trap();
  }
  return 0;
}
