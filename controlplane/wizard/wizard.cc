#include "controlplane/wizard/wizard.h"

#include <event2/event.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>

#include "controlplane/mta_sts/mta_sts_config.h"
#include "controlplane/mta_sts/policy_fetcher.h"
#include "controlplane/resolver/resolver.h"
#include "controlplane/resolver/resolver_config.h"
#include "controlplane/wizard/checks.h"
#include "policy/mta_sts.h"

namespace mxedge::wizard {
namespace {

using mgmt::v1::WizardReport;
using mgmt::v1::WizardRequest;
using mgmt::v1::WizardStep;
using Clock = std::chrono::steady_clock;

// Collects answers into slots the caller owns, then dispatches the event base until all are in or the
// deadline passes. Slots left empty mean "no answer in time".
class Collector {
 public:
  Collector(resolver::Resolver& resolver, mta_sts::PolicyFetcher& fetcher) : resolver_(resolver), fetcher_(fetcher) {}
  ~Collector() {
    *alive_ = false;
    if (timer_) event_free(timer_);
  }
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  void lookup(const std::string& name, uint16_t type, Answer* slot) {
    ++outstanding_;
    resolver_.lookup(name, type, [this, slot, alive = alive_](const Answer& r, bool) {
      if (!*alive) return;
      *slot = r;
      --outstanding_;
    });
  }

  void fetch(const std::string& domain, std::optional<mta_sts::FetchResult>* slot) {
    ++outstanding_;
    fetcher_.fetch(domain, [this, slot, alive = alive_](const mta_sts::FetchResult& r) {
      if (!*alive) return;
      *slot = r;
      --outstanding_;
    });
  }

  // True when every answer arrived before `deadline`.
  bool wait(Clock::time_point deadline) {
    if (outstanding_ == 0) return true;
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    if (!timer_) timer_ = evtimer_new(resolver_.event_base(), &Collector::on_deadline, this);
    expired_ = false;
    timeval tv{static_cast<time_t>(left.count() / 1000000), static_cast<suseconds_t>(left.count() % 1000000)};
    evtimer_add(timer_, &tv);
    while (outstanding_ > 0 && !expired_) {
      if (event_base_loop(resolver_.event_base(), EVLOOP_ONCE) != 0) break;
    }
    evtimer_del(timer_);
    return outstanding_ == 0;
  }

 private:
  static void on_deadline(evutil_socket_t, short, void* arg) { static_cast<Collector*>(arg)->expired_ = true; }

  resolver::Resolver& resolver_;
  mta_sts::PolicyFetcher& fetcher_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  size_t outstanding_ = 0;
  bool expired_ = false;
  struct event* timer_ = nullptr;
};

WizardReport error_report(const std::string& domain, const std::string& error) {
  WizardReport r;
  r.set_domain(domain);
  r.set_error(error);
  r.set_checked_at(static_cast<int64_t>(::time(nullptr)));
  return r;
}

// The configuration's resolver settings; unset values (a configuration that did not go through
// apply_defaults) take the resolver's defaults.
resolver::ResolverOptions resolver_settings(const config::v1::Config& cfg) {
  resolver::ResolverOptions o = resolver::resolver_options(cfg.resolver());
  const resolver::ResolverOptions d;
  if (o.trust_anchor_file.empty()) o.trust_anchor_file = d.trust_anchor_file;
  if (o.query_timeout.count() <= 0) o.query_timeout = d.query_timeout;
  if (o.retries < 1) o.retries = d.retries;
  if (o.edns_buffer_size < 512) o.edns_buffer_size = d.edns_buffer_size;
  if (o.cache_bytes == 0) o.cache_bytes = d.cache_bytes;
  if (o.max_ttl.count() <= 0) o.max_ttl = d.max_ttl;
  if (o.max_negative_ttl.count() <= 0) o.max_negative_ttl = d.max_negative_ttl;
  if (o.bogus_ttl.count() <= 0) o.bogus_ttl = d.bogus_ttl;
  return o;
}

// The control plane's MTA-STS fetch settings; the CA file falls back to outbound.ca_file.
mta_sts::FetchOptions fetch_settings(const config::v1::Config& cfg) {
  mta_sts::FetchOptions o = mta_sts::fetch_options(cfg.mta_sts());
  const mta_sts::FetchOptions d;
  if (o.ca_file.empty()) o.ca_file = cfg.outbound().ca_file();
  if (o.total_timeout.count() <= 0) o.total_timeout = d.total_timeout;
  if (o.connect_timeout.count() <= 0) o.connect_timeout = d.connect_timeout;
  o.connect_timeout = std::min(o.connect_timeout, o.total_timeout);
  return o;
}

void load_keys(const config::v1::Config& cfg, const WizardRequest& req, WizardInputs* in) {
  std::vector<std::string> errors;
  for (const auto& l : cfg.listeners()) {
    if (l.role() == config::v1::LISTENER_ROLE_OUTBOUND || l.tls_mode() == config::v1::TLS_MODE_NONE) continue;
    for (const auto& c : l.certificates()) {
      std::string err;
      auto key = load_certificate_chain(c.cert_file(), &err);
      if (!key) {
        errors.push_back(err);
        continue;
      }
      const bool dup = std::any_of(in->current_keys.begin(), in->current_keys.end(),
                                   [&](const GatewayKey& k) { return k.spki == key->spki; });
      if (!dup) in->current_keys.push_back(std::move(*key));
    }
  }
  for (const std::string& e : errors) in->current_keys_error += (in->current_keys_error.empty() ? "" : "; ") + e;
  if (in->current_keys.empty() && errors.empty())
    in->current_keys_error = "the configuration has no inbound listener with certificates (listeners[].certificates)";

  std::string err;
  std::optional<GatewayKey> cert, key;
  if (!req.next_cert_file().empty()) {
    cert = load_certificate_chain(req.next_cert_file(), &err);
    if (!cert) in->next_key_error = err;
  }
  if (!req.next_key_file().empty() && in->next_key_error.empty()) {
    key = load_key(req.next_key_file(), &err);
    if (!key) in->next_key_error = err;
  }
  if (!in->next_key_error.empty()) return;
  if (cert && key && cert->spki != key->spki) {
    in->next_key_error = req.next_key_file() + " is not the key of " + req.next_cert_file();
    return;
  }
  if (cert) {
    if (key) cert->source += " + " + key->source;
    in->next_key = std::move(cert);
  } else if (key) {
    in->next_key = std::move(key);
  }
}

}  // namespace

WizardReport run_wizard(const config::v1::Config& cfg, const WizardRequest& request) {
  WizardInputs in;
  in.now = static_cast<int64_t>(::time(nullptr));
  in.domain = resolver::normalize_name(request.domain());
  if (in.domain.empty() || in.domain == "." || !policy::is_a_label_domain(in.domain))
    return error_report(request.domain(), "'" + request.domain() + "' is not a domain name (A-labels, no trailing dot needed)");
  std::vector<std::string> names(request.mx_names().begin(), request.mx_names().end());
  if (names.empty() && !cfg.hostname().empty()) names.push_back(cfg.hostname());
  for (const std::string& raw : names) {
    const std::string n = resolver::normalize_name(raw);
    if (!policy::is_a_label_domain(n))
      return error_report(in.domain, "gateway MX name '" + raw + "' is not a host name");
    if (std::find(in.mx_names.begin(), in.mx_names.end(), n) == in.mx_names.end()) in.mx_names.push_back(n);
  }
  load_keys(cfg, request, &in);

  const resolver::ResolverOptions ropt = resolver_settings(cfg);
  std::string error;
  auto res = resolver::Resolver::create(ropt, &error);
  if (!res) return error_report(in.domain, "resolver: " + error);
  const mta_sts::FetchOptions fopt = fetch_settings(cfg);
  mta_sts::PolicyFetcher fetcher(*res, fopt);
  // Two rounds of lookups and one fetch, each bounded by its own timeout; this is a backstop.
  const auto deadline = Clock::now() + 2 * ropt.query_timeout + fopt.total_timeout + std::chrono::seconds(5);

  {
    Collector io(*res, fetcher);
    // Round 1: everything whose name is known now. DNSKEY and DS at the domain on the guess that it
    // is its zone's apex (it usually is); round 2 asks at the real apex otherwise.
    for (const std::string& n : zone_candidates(in.domain)) in.soa.emplace_back(n, nullptr);
    in.hosts.resize(in.mx_names.size());
    for (size_t i = 0; i < in.mx_names.size(); ++i) in.hosts[i].name = in.mx_names[i];
    for (auto& [name, slot] : in.soa) io.lookup(name, resolver::kTypeSoa, &slot);
    io.lookup(in.domain, kTypeDnskey, &in.dnskey);
    io.lookup(in.domain, kTypeDs, &in.ds);
    io.lookup(in.domain, resolver::kTypeMx, &in.mx);
    for (HostAnswers& h : in.hosts) {
      io.lookup(h.name, resolver::kTypeA, &h.a);
      io.lookup(h.name, resolver::kTypeAaaa, &h.aaaa);
      io.lookup("_25._tcp." + h.name, resolver::kTypeTlsa, &h.tlsa);
    }
    io.lookup("_mta-sts." + in.domain, resolver::kTypeTxt, &in.sts_txt);
    io.lookup("_smtp._tls." + in.domain, resolver::kTypeTxt, &in.tlsrpt_txt);
    io.fetch(in.domain, &in.sts_fetch);
    io.wait(deadline);

    const ZoneCut cut = find_zone(in.soa);
    if (!cut.zone.empty() && cut.zone != in.domain) {
      in.dnskey = nullptr;
      in.ds = nullptr;
      io.lookup(cut.zone, kTypeDnskey, &in.dnskey);
      io.lookup(cut.zone, kTypeDs, &in.ds);
      io.wait(deadline);
    }
  }
  return evaluate(in);
}

// ---- text ----------------------------------------------------------------------------------------

namespace {

std::string status_text(WizardStep::Status s) {
  switch (s) {
    case WizardStep::STATUS_OK: return "OK";
    case WizardStep::STATUS_ACTION_NEEDED: return "ACTION NEEDED";
    case WizardStep::STATUS_FAIL: return "FAIL";
    case WizardStep::STATUS_SKIPPED: return "SKIPPED";
    default: return "?";
  }
}

void indent_lines(std::string* out, const std::string& text, const std::string& pad) {
  size_t start = 0;
  while (start <= text.size()) {
    const size_t nl = text.find('\n', start);
    std::string l = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (!l.empty() && l.back() == '\r') l.pop_back();  // policy files end lines with CRLF
    if (!(nl == std::string::npos && l.empty())) *out += pad + l + "\n";
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
}

std::string utc(int64_t t) {
  const time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

}  // namespace

std::string render_wizard_text(const WizardReport& r) {
  std::string out = "DNSSEC enablement wizard for " + r.domain() + "\n";
  if (!r.error().empty()) {
    out += "  cannot run: " + r.error() + "\n";
    return out;
  }
  std::string names;
  for (const auto& n : r.mx_names()) names += (names.empty() ? "" : ", ") + n;
  out += "  zone " + (r.zone().empty() ? std::string("(unknown)") : r.zone()) +
         (r.parent_zone().empty() ? std::string() : ", parent " + r.parent_zone()) + "; gateway MX " +
         (names.empty() ? std::string("(none)") : names) + "; checked " + utc(r.checked_at()) + "\n";
  int i = 0;
  for (const WizardStep& s : r.steps()) {
    out += "\n" + std::to_string(++i) + ". " + s.title() + ": " + status_text(s.status()) + "\n";
    indent_lines(&out, s.detail(), "   ");
    if (s.status() != WizardStep::STATUS_OK) {
      if (s.found_size() > 0) {
        out += "   Found:\n";
        for (const auto& f : s.found()) out += "     " + f + "\n";
      }
      if (s.records_to_publish_size() > 0) {
        out += "   Publish" + (s.publish_in().empty() ? std::string() : " in " + s.publish_in()) + ":\n";
        for (const auto& rr : s.records_to_publish()) out += "     " + rr + "\n";
      }
      if (s.records_to_remove_size() > 0) {
        out += "   Remove:\n";
        for (const auto& rr : s.records_to_remove()) out += "     " + rr + "\n";
      }
      for (const auto& f : s.files_to_publish()) {
        out += "   Serve " + f.url() + " (" + f.content_type() + "):\n";
        indent_lines(&out, f.content(), "     | ");
      }
      if (s.guidance_size() > 0) {
        out += "   How:\n";
        for (const auto& g : s.guidance()) out += "     - " + g + "\n";
      }
    }
  }
  out += "\n";
  if (r.ready()) {
    out += "Ready: every check passed; " + r.domain() + " can take mail through this gateway with DNSSEC, DANE, "
           "MTA-STS and TLS-RPT.\n";
    return out;
  }
  out += "Cutover plan (only what is still needed, in this order):\n";
  for (const auto& p : r.plan()) {
    out += "  " + std::to_string(p.order()) + ". " + p.action() + "\n";
    if (p.records_to_publish_size() > 0) {
      out += "     publish" + (p.publish_in().empty() ? std::string() : " in " + p.publish_in()) + ":\n";
      for (const auto& rr : p.records_to_publish()) out += "       " + rr + "\n";
    }
    if (p.records_to_remove_size() > 0) {
      out += "     remove:\n";
      for (const auto& rr : p.records_to_remove()) out += "       " + rr + "\n";
    }
    if (!p.then_wait().empty()) out += "     then wait: " + p.then_wait() + "\n";
  }
  int action = 0, fail = 0;
  for (const WizardStep& s : r.steps()) {
    action += s.status() == WizardStep::STATUS_ACTION_NEEDED;
    fail += s.status() == WizardStep::STATUS_FAIL;
  }
  out += "Not ready: " + std::to_string(action) + " step" + (action == 1 ? "" : "s") + " need action, " +
         std::to_string(fail) + " failed. Run the wizard again after each change.\n";
  return out;
}

}  // namespace mxedge::wizard
