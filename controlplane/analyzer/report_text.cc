// The connectivity analyzer's text report: the findings in the order the steps ran, one line each
// with ok / info / warn / FAIL (posttls-finger and the Remote Connectivity Analyzer read this way),
// then the verdict per connector mode.
#include <ctime>
#include <sstream>

#include "controlplane/analyzer/analyzer.h"

namespace mxedge::analyzer {
namespace {

using mgmt::v1::Finding;

const char* tag(Finding::Severity s) {
  switch (s) {
    case Finding::SEVERITY_OK:
      return "ok";
    case Finding::SEVERITY_INFO:
      return "info";
    case Finding::SEVERITY_WARNING:
      return "warn";
    case Finding::SEVERITY_ERROR:
      return "FAIL";
    default:
      return "?";
  }
}

const char* title(const std::string& section) {
  if (section == "dns") return "DNS (DNSSEC-validated)";
  if (section == "mta-sts") return "MTA-STS";
  if (section == "probe") return "SMTP probes";
  if (section == "verdict") return "Configured connector";
  return "Other";
}

std::string pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string utc(int64_t t) {
  const time_t tt = static_cast<time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

void verdict_table(const mgmt::v1::CheckReport& r, std::ostringstream& out) {
  out << "\nVerdicts by connector mode"
      << (r.probed() ? " (given the probes above)" : " (DNS and MTA-STS only, not probed)") << "\n";
  out << "  " << pad("DANE", 14) << pad("MTA-STS", 14) << pad("outcome", 9) << "how / why\n";
  for (const auto& v : r.modes()) {
    std::string how = v.reason();
    if (v.outcome() == "deliver" && !v.authentication().empty()) how = "[" + v.authentication() + "] " + how;
    if (v.outcome() != "deliver" && !v.result_type().empty() && how.find(v.result_type()) == std::string::npos)
      how += " (" + v.result_type() + ")";
    out << "  " << pad(v.dane_mode(), 14) << pad(v.mta_sts_mode(), 14) << pad(v.outcome(), 9) << how << "\n";
  }
}

}  // namespace

std::string render_check_text(const mgmt::v1::CheckReport& r) {
  std::ostringstream out;
  out << "mxedge check " << r.domain() << "  (" << utc(r.checked_at()) << ", EHLO " << r.ehlo_name() << ", "
      << r.elapsed_ms() << " ms)\n";
  std::string section;
  std::string subject;
  bool table = false;
  for (const Finding& f : r.findings()) {
    if (f.section() != section) {
      if (f.section() == "verdict" && !table) {
        verdict_table(r, out);
        table = true;
      }
      section = f.section();
      subject.clear();
      out << "\n" << title(section) << "\n";
    }
    if (section == "probe" && f.subject() != subject) {
      subject = f.subject();
      out << "  " << subject << "\n";
    }
    const std::string indent = section == "probe" ? "    " : "  ";
    out << indent << pad(tag(f.severity()), 6) << f.message() << "\n";
    for (const auto& d : f.details()) out << indent << "      " << d << "\n";
  }
  if (!table && r.modes_size() > 0) verdict_table(r, out);
  if (!r.error().empty()) out << "\nerror: " << r.error() << "\n";
  const auto& c = r.configured();
  out << "\nResult: connector '" << c.connector() << "' would " << (c.outcome().empty() ? "defer" : c.outcome());
  if (c.outcome() == "deliver" && !c.host().empty()) {
    out << " to " << c.host();
    if (!c.authentication().empty()) out << " (" << c.authentication() << ")";
  }
  out << "\n";
  return out.str();
}

}  // namespace mxedge::analyzer
