#include "controlplane/wizard/checks.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

#include "controlplane/resolver/dnssec_records.h"
#include "controlplane/sts_publish/sts_publish.h"
#include "policy/tlsrpt.h"
#include "policy/mta_sts.h"

namespace mxedge::wizard {

using policy::is_tlsrpt_record;
using policy::parse_tlsrpt_record;
namespace {

using mgmt::v1::WizardPlanItem;
using mgmt::v1::WizardReport;
using mgmt::v1::WizardStep;
using resolver::AnswerKind;
using resolver::Security;

// The policy the wizard proposes while the domain moves to the gateway: testing first (RFC 8461
// §5: a sender reports but delivers), one day; enforce with a longer max_age once reports are clean.
constexpr uint32_t kTestingMaxAge = 86400;
constexpr uint32_t kEnforceMaxAge = 604800;

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  std::istringstream in{std::string(s)};
  std::string t;
  while (in >> t) out.push_back(t);
  return out;
}

std::string join(const std::vector<std::string>& v, std::string_view sep, size_t from = 0) {
  std::string out;
  for (size_t i = from; i < v.size(); ++i) {
    if (i > from) out += sep;
    out += v[i];
  }
  return out;
}

// "owner. TTL IN TYPE rdata" -> "owner. IN TYPE rdata" (records to publish carry no TTL).
std::string without_ttl(std::string_view rr) {
  const auto t = split_ws(rr);
  if (t.size() >= 4 && t[2] == "IN") return t[0] + " IN " + join(t, " ", 3);
  return std::string(rr);
}

bool has_answer(const Answer& a) {
  return a && (a->security == Security::kSecure || a->security == Security::kInsecure);
}
bool has_data(const Answer& a) { return has_answer(a) && a->kind == AnswerKind::kData; }

std::string describe(const Answer& a) {
  if (!a) return "no answer before the wizard's deadline";
  std::string s(resolver::to_string(a->security));
  if (a->security == Security::kSecure || a->security == Security::kInsecure) {
    s += a->kind == AnswerKind::kData ? "" : a->kind == AnswerKind::kNxDomain ? " NXDOMAIN" : " NODATA";
  }
  if (!a->why.empty()) s += " (" + a->why + ")";
  return s;
}

std::string quote_txt(std::string_view text) {
  // Character-strings of at most 255 octets, quotes and backslashes escaped.
  std::string out;
  size_t n = 0;
  out += '"';
  for (char c : text) {
    if (n == 255) {
      out += "\" \"";
      n = 0;
    }
    if (c == '"' || c == '\\') out += '\\';
    out += c;
    ++n;
  }
  out += '"';
  return out;
}

std::string txt_rr(const std::string& name, std::string_view text) { return fqdn(name) + " IN TXT " + quote_txt(text); }

int rank(WizardStep::Status s) {
  switch (s) {
    case WizardStep::STATUS_OK: return 0;
    case WizardStep::STATUS_SKIPPED: return 1;
    case WizardStep::STATUS_ACTION_NEEDED: return 2;
    case WizardStep::STATUS_FAIL: return 3;
    default: return 3;
  }
}

void worsen(WizardStep& s, WizardStep::Status to) {
  if (rank(to) > rank(s.status())) s.set_status(to);
}

void line(WizardStep& s, const std::string& text) {
  if (!s.detail().empty()) s.mutable_detail()->append("\n");
  s.mutable_detail()->append(text);
}

void add_unique(google::protobuf::RepeatedPtrField<std::string>* list, const std::string& v) {
  if (std::find(list->begin(), list->end(), v) == list->end()) *list->Add() = v;
}

WizardStep make_step(WizardStep::Check check, const std::string& title) {
  WizardStep s;
  s.set_check(check);
  s.set_title(title);
  s.set_status(WizardStep::STATUS_OK);
  return s;
}

bool in_zone(const std::string& name, const std::string& zone) {
  if (zone.empty()) return false;
  if (zone == "." || name == zone) return true;
  return name.size() > zone.size() && name.ends_with(zone) && name[name.size() - zone.size() - 1] == '.';
}

// ---- step 1: DNSSEC ------------------------------------------------------------------------------

struct DnsKey {
  std::string text;  // without TTL
  int flags = 0;
  std::string algorithm;
};

std::vector<DnsKey> dnskeys(const Answer& a) {
  std::vector<DnsKey> out;
  if (!has_data(a)) return out;
  for (const std::string& rr : a->answer.other) {
    const auto t = split_ws(rr);
    if (t.size() < 8 || t[3] != "DNSKEY") continue;
    DnsKey k;
    k.text = without_ttl(rr);
    k.flags = std::atoi(t[4].c_str());
    k.algorithm = t[6];
    out.push_back(std::move(k));
  }
  return out;
}

// The DS records (SHA-256) for the zone's SEP keys (flags 257), or every zone key when none has the
// SEP flag. Each "zone. IN DS tag alg 2 HEX".
std::vector<std::string> ds_to_publish(const std::vector<DnsKey>& keys, std::string* error) {
  const bool any_sep = std::any_of(keys.begin(), keys.end(), [](const DnsKey& k) { return k.flags == 257; });
  std::vector<std::string> out;
  for (const DnsKey& k : keys) {
    if (any_sep ? k.flags != 257 : (k.flags & 0x100) == 0) continue;
    std::string err;
    auto ds = resolver::ds_from_dnskey(k.text, resolver::DsDigest::kSha256, &err);
    if (!ds) {
      *error = err;
      continue;
    }
    out.push_back(without_ttl(*ds));
  }
  return out;
}

std::vector<std::string> ds_found(const Answer& a) {
  std::vector<std::string> out;
  if (!has_data(a)) return out;
  for (const std::string& rr : a->answer.other)
    if (split_ws(rr).size() >= 8) out.push_back(without_ttl(rr));
  return out;
}

// "key tag 12345" of a DS record text.
std::string ds_tag(const std::string& ds) {
  const auto t = split_ws(ds);
  return t.size() >= 7 ? "key tag " + t[3] + " (algorithm " + t[4] + ", digest type " + t[5] + ")" : ds;
}

// libunbound's reasons when the DS at the parent matches no DNSKEY of the child.
bool ds_mismatch_reason(const std::string& why) {
  return why.find("DS") != std::string::npos &&
         (why.find("match") != std::string::npos || why.find("no keys") != std::string::npos ||
          why.find("No DNSKEY") != std::string::npos || why.find("no DNSKEY") != std::string::npos);
}

struct DnssecOutcome {
  WizardStep step;
  enum Kind { kSecure, kUnsigned, kNoDs, kBroken, kUnknown } kind = kUnknown;
};

DnssecOutcome check_dnssec(const WizardInputs& in, const ZoneCut& cut) {
  DnssecOutcome o;
  WizardStep& s = o.step;
  s = make_step(WizardStep::CHECK_DNSSEC, "DNSSEC: the zone is signed and validates from the root");
  if (cut.zone.empty()) {
    s.set_status(WizardStep::STATUS_FAIL);
    line(s, "Cannot find the zone of " + in.domain + ": " + cut.why);
    o.kind = DnssecOutcome::kBroken;
    return o;
  }
  // Names in prose without the trailing dot; records and publish_in in zone-file form.
  const std::string& z = cut.zone;
  const std::string& p = cut.parent;
  const std::string publish_in = p.empty() ? std::string() : fqdn(p);
  const Answer& k = in.dnskey;
  for (const std::string& d : ds_found(in.ds)) *s.add_found() = d;
  const auto keys = dnskeys(k);
  for (const DnsKey& key : keys) *s.add_found() = key.text;

  if (!k || k->security == Security::kFailure) {
    s.set_status(WizardStep::STATUS_FAIL);
    line(s, "The DNSKEY lookup for " + z + " failed: " + describe(k) + ". Senders cannot validate the zone either "
            "while this lasts (their mail defers).");
    o.kind = DnssecOutcome::kBroken;
    return o;
  }
  if (k->security == Security::kBogus) {
    s.set_status(WizardStep::STATUS_FAIL);
    o.kind = DnssecOutcome::kBroken;
    line(s, "The DNSKEY RRset of " + z + " does not validate (bogus): " + k->why);
    line(s, "Validating senders treat every record of " + z + " as forged: DANE senders defer all mail to it.");
    const auto found = ds_found(in.ds);
    if (ds_mismatch_reason(k->why) || (!found.empty() && keys.empty())) {
      std::string tags;
      for (const std::string& d : found) tags += (tags.empty() ? "" : "; ") + ds_tag(d);
      line(s, "The DS at " + (p.empty() ? std::string("the parent") : p) + " (" +
                  (tags.empty() ? std::string("none readable") : tags) +
                  ") matches no DNSKEY that " + z + " serves: replace it with the DS of the zone's current KSK.");
      for (const std::string& d : found) *s.add_records_to_remove() = d;
      s.set_publish_in(publish_in);
      *s.add_guidance() = "Compute the DS of the current KSK: `mxedge-resolve --ds-for <signed zone file>` (or "
                          "`ldns-key2ds -n -2 K" + cut.zone + ".+013+<tag>.key`).";
      *s.add_guidance() = "At " + (p.empty() ? std::string("the parent") : p) +
                          " (your registrar): publish that DS and remove the stale one listed here (it matches no "
                          "key, so both can change at once).";
      *s.add_guidance() = "Run the wizard again once the parent serves the new DS.";
    } else {
      *s.add_guidance() = "Re-sign " + z + " (expired or broken signatures) and check that the key the parent's DS "
                          "names still signs the DNSKEY RRset.";
    }
    return o;
  }
  if (k->security == Security::kSecure) {
    if (keys.empty()) {
      s.set_status(WizardStep::STATUS_FAIL);
      o.kind = DnssecOutcome::kBroken;
      line(s, "The DNSKEY lookup for " + z + " is " + describe(k) + ": no keys at the zone apex.");
      return o;
    }
    o.kind = DnssecOutcome::kSecure;
    line(s, "The DNSKEY RRset of " + z + " is secure: it validates from the root" +
                (p.empty() ? std::string(".") : " (DS at " + p + ")."));
    for (const std::string& d : ds_found(in.ds)) line(s, "DS at the parent: " + ds_tag(d));
    return o;
  }
  // Insecure: signed without a chain of trust, or not signed at all.
  s.set_status(WizardStep::STATUS_ACTION_NEEDED);
  if (keys.empty()) {
    o.kind = DnssecOutcome::kUnsigned;
    line(s, z + " is not signed (no DNSKEY records): nothing in it can be validated, so senders do not use "
                "DANE for it.");
    *s.add_guidance() = "Sign " + z + ": turn on DNSSEC at your DNS provider, or BIND `dnssec-policy default;` in "
                        "the zone statement, or Knot DNS `dnssec-signing: on`, or by hand with "
                        "`ldns-keygen -a ECDSAP256SHA256 -k " + cut.zone + "` and "
                        "`ldns-signzone -n <zone file> K" + cut.zone + ".+013+<tag>`.";
    *s.add_guidance() = "Use algorithm 13 (ECDSAP256SHA256) with NSEC or NSEC3 without opt-out, and automatic "
                        "re-signing (signatures expire).";
    *s.add_guidance() = "Then publish the DS of the key-signing key at " + (p.empty() ? std::string("the parent") : p) +
                        ": run this wizard again once the signed zone is served (it prints the exact DS records), or "
                        "`mxedge-resolve --ds-for <signed zone file>`.";
    s.set_publish_in(publish_in);
    return o;
  }
  o.kind = DnssecOutcome::kNoDs;
  std::string err;
  const auto ds = ds_to_publish(keys, &err);
  for (const std::string& d : ds) *s.add_records_to_publish() = d;
  s.set_publish_in(publish_in);
  std::string tags;
  for (const std::string& d : ds) tags += (tags.empty() ? "" : ", ") + ds_tag(d);
  line(s, z + " is signed (" + std::to_string(keys.size()) + " DNSKEY record" + (keys.size() == 1 ? "" : "s") +
              ") but has no chain of trust: validators treat it as unsigned.");
  const Answer& dsa = in.ds;
  if (has_answer(dsa) && dsa->security == Security::kSecure && dsa->kind != AnswerKind::kData) {
    line(s, "The parent " + p + " has no DS record for it (securely denied).");
  } else if (has_answer(dsa) && dsa->security == Security::kInsecure) {
    line(s, "The parent " + p + " is itself not validated (insecure): a DS there counts only once " + p +
                " is signed and has its own DS.");
  } else if (has_data(dsa)) {
    line(s, "The parent " + p + " publishes DS records for it that no validator here can use (unsupported algorithm "
                "or digest type): replace them.");
    for (const std::string& d : ds_found(dsa)) *s.add_records_to_remove() = d;
  } else {
    line(s, "The DS lookup at the parent is " + describe(dsa) + ".");
  }
  if (!err.empty()) line(s, "Could not compute a DS from a DNSKEY: " + err);
  line(s, "Publish at " + (p.empty() ? std::string("the parent") : p) + " the DS for " + tags + ".");
  *s.add_guidance() = "Publish the DS records at " + (p.empty() ? std::string("the parent") : p) +
                      " (your registrar's DNSSEC / DS form: key tag, algorithm, digest type 2 = SHA-256, digest).";
  *s.add_guidance() = "Wait until the parent serves them (its DS TTL) and run the wizard again: this step turns ok once " +
                      z + " validates.";
  *s.add_guidance() = "Keep the key-signing key whose DS is published; before replacing it, publish the new key's DS "
                      "first (RFC 6781 §4.1.2).";
  return o;
}

// ---- step 2: MX ----------------------------------------------------------------------------------

struct MxOutcome {
  WizardStep step;
  std::vector<std::string> other_hosts;  // current MX hosts that are not the gateway
  bool records = false;                  // records to change
};

MxOutcome check_mx(const WizardInputs& in, const ZoneCut& cut, const DnssecOutcome& dnssec) {
  MxOutcome o;
  WizardStep& s = o.step;
  s = make_step(WizardStep::CHECK_MX, "MX: the domain's mail goes to this gateway");
  s.set_publish_in(cut.zone.empty() ? std::string() : fqdn(cut.zone));
  const Answer& a = in.mx;
  const std::string& d = in.domain;
  if (in.mx_names.empty()) {
    s.set_status(WizardStep::STATUS_SKIPPED);
    line(s, "No gateway MX name: give --mx NAME (request.mx_names) or set hostname in the configuration.");
    return o;
  }
  if (!a || a->security == Security::kFailure) {
    s.set_status(WizardStep::STATUS_FAIL);
    line(s, "The MX lookup for " + d + " failed: " + describe(a) + ".");
    return o;
  }
  if (a->security == Security::kBogus) {
    s.set_status(WizardStep::STATUS_FAIL);
    line(s, "The MX RRset of " + d + " does not validate (bogus): " + a->why +
                ". Validating senders defer all mail to the domain until it does (see step 1).");
    return o;
  }
  std::vector<resolver::MxRecord> current = a->answer.mx;
  for (const auto& m : current) *s.add_found() = fqdn(d) + " IN MX " + std::to_string(m.preference) + " " + fqdn(m.exchange);
  if (!a->answer.cname_chain.empty())
    line(s, d + " is a CNAME (to " + a->answer.canonical_name + "): a mail domain should hold its own MX records.");
  std::vector<std::string> missing;
  for (const std::string& n : in.mx_names) {
    if (std::none_of(current.begin(), current.end(), [&](const resolver::MxRecord& m) { return m.exchange == n; }))
      missing.push_back(n);
  }
  std::vector<resolver::MxRecord> extra;
  for (const auto& m : current) {
    if (std::find(in.mx_names.begin(), in.mx_names.end(), m.exchange) == in.mx_names.end()) {
      extra.push_back(m);
      if (m.exchange != ".") o.other_hosts.push_back(m.exchange);
    }
  }
  const bool secure = a->security == Security::kSecure;
  if (missing.empty() && extra.empty()) {
    if (secure) {
      line(s, "The MX RRset of " + d + " is secure and names only this gateway (" + join(in.mx_names, ", ") + ").");
    } else {
      s.set_status(WizardStep::STATUS_ACTION_NEEDED);
      line(s, "The MX RRset of " + d + " names this gateway but is insecure" +
                  (dnssec.kind == DnssecOutcome::kSecure ? std::string(".") : ": it validates once step 1 is done."));
    }
    return o;
  }
  s.set_status(WizardStep::STATUS_ACTION_NEEDED);
  o.records = true;
  if (a->kind == AnswerKind::kNxDomain) {
    line(s, d + " does not exist (" + describe(a) + "): publish its MX records.");
  } else if (current.empty()) {
    line(s, d + " has no MX records (" + describe(a) + "): senders would use its address records, not this gateway.");
  } else if (current.size() == 1 && current[0].exchange == ".") {
    line(s, d + " publishes a null MX (RFC 7505: it accepts no mail).");
  } else {
    std::string hosts;
    for (const auto& m : current) hosts += (hosts.empty() ? "" : ", ") + m.exchange;
    line(s, "The MX RRset of " + d + " (" + std::string(resolver::to_string(a->security)) + ") names " + hosts + ".");
  }
  if (!missing.empty()) line(s, "Missing: " + join(missing, ", ") + " (this gateway).");
  if (!o.other_hosts.empty())
    line(s, "Not this gateway: " + join(o.other_hosts, ", ") + " (remove them at the cutover, once the gateway "
                                                                 "accepts the domain's mail).");
  if (!secure && dnssec.kind != DnssecOutcome::kSecure) line(s, "The MX RRset is insecure until step 1 is done.");
  for (size_t i = 0; i < in.mx_names.size(); ++i) {
    uint16_t pref = static_cast<uint16_t>(10 * (i + 1));
    for (const auto& m : current)
      if (m.exchange == in.mx_names[i]) pref = m.preference;
    *s.add_records_to_publish() = fqdn(d) + " IN MX " + std::to_string(pref) + " " + fqdn(in.mx_names[i]);
  }
  for (const auto& m : extra) *s.add_records_to_remove() = fqdn(d) + " IN MX " + std::to_string(m.preference) + " " + fqdn(m.exchange);
  *s.add_guidance() = "Publish the TLSA records (step 3) and the MTA-STS policy (step 4) before the MX points at the "
                      "gateway: a DANE sender checks TLSA as soon as it sees the new MX.";
  *s.add_guidance() = "After the change, keep the old MX hosts accepting mail for at least the old MX TTL.";
  return o;
}

// ---- step 3: TLSA --------------------------------------------------------------------------------

struct TlsaOutcome {
  WizardStep step;
  std::vector<std::string> hosts_without_address;
  bool records = false;
};

TlsaOutcome check_tlsa(const WizardInputs& in, const ZoneCut& cut) {
  TlsaOutcome o;
  WizardStep& s = o.step;
  s = make_step(WizardStep::CHECK_TLSA, "TLSA: _25._tcp.<mx> matches the gateway's certificates (current and next)");
  if (in.mx_names.empty()) {
    s.set_status(WizardStep::STATUS_SKIPPED);
    line(s, "No gateway MX name to check.");
    return o;
  }
  if (in.current_keys.empty()) {
    s.set_status(WizardStep::STATUS_FAIL);
    line(s, "The gateway's current certificates are unknown: " + in.current_keys_error);
    return o;
  }
  struct Wanted {
    const GatewayKey* key;
    std::string role;
  };
  std::vector<Wanted> wanted;
  for (const GatewayKey& k : in.current_keys) wanted.push_back({&k, "current"});
  if (!in.next_key_error.empty()) {
    worsen(s, WizardStep::STATUS_FAIL);
    line(s, "The next key cannot be used: " + in.next_key_error);
  }
  if (in.next_key) {
    const bool same = std::any_of(in.current_keys.begin(), in.current_keys.end(),
                                  [&](const GatewayKey& k) { return k.spki == in.next_key->spki; });
    if (same) line(s, "The next key (" + in.next_key->source + ") is the current one: nothing to roll to.");
    else wanted.push_back({&*in.next_key, "next"});
  }
  std::set<std::string> zones;
  for (const HostAnswers& h : in.hosts) {
    const std::string tname = "_25._tcp." + h.name;
    const std::string prefix = h.name + ": ";
    // Addresses: DANE applies only to hosts whose addresses validate (RFC 7672 §2.2.2).
    bool any_addr = false, insecure_addr = false, bad_addr = false;
    std::string addr_why;
    for (const Answer* fam : {&h.a, &h.aaaa}) {
      const Answer& x = *fam;
      if (has_data(x)) {
        any_addr = true;
        insecure_addr |= x->security == Security::kInsecure;
      } else if (!has_answer(x)) {
        bad_addr = true;
        addr_why = describe(x);
      }
    }
    if (bad_addr && !any_addr) {
      worsen(s, WizardStep::STATUS_FAIL);
      line(s, prefix + "the address lookup failed: " + addr_why + ".");
    } else if (!any_addr) {
      worsen(s, WizardStep::STATUS_ACTION_NEEDED);
      o.hosts_without_address.push_back(h.name);
      line(s, prefix + "no A or AAAA record: publish the gateway's public addresses for it.");
    } else if (insecure_addr) {
      worsen(s, WizardStep::STATUS_ACTION_NEEDED);
      line(s, prefix + "its addresses are insecure: senders do not look up TLSA for it until its zone validates.");
    }
    const Answer& t = h.tlsa;
    if (!t || t->security == Security::kFailure || t->security == Security::kBogus) {
      worsen(s, WizardStep::STATUS_FAIL);
      line(s, prefix + "the TLSA lookup at " + tname + " is " + describe(t) +
                  ": DANE senders defer mail to this host while it lasts.");
      continue;
    }
    std::vector<bool> matched(wanted.size(), false);
    for (const policy::TlsaRecord& r : t->answer.tlsa) {
      const std::string rr = fqdn(tname) + " IN TLSA " + policy::to_presentation(r);
      *s.add_found() = rr;
      bool any = false;
      for (size_t i = 0; i < wanted.size(); ++i) {
        if (tlsa_matches(r, *wanted[i].key)) {
          matched[i] = true;
          any = true;
        }
      }
      if (!any) {
        add_unique(s.mutable_records_to_remove(), rr);
        line(s, prefix + "TLSA " + policy::to_presentation(r) + " matches none of the gateway's certificates" +
                    (in.next_key ? std::string(".") : std::string(" (keep it only if it is a key you will roll to).")));
      }
    }
    if (t->kind == AnswerKind::kData && !t->answer.canonical_name.empty() && t->answer.canonical_name != tname)
      line(s, prefix + tname + " is a CNAME to " + t->answer.canonical_name + ".");
    bool all = true;
    for (size_t i = 0; i < wanted.size(); ++i) {
      if (matched[i]) continue;
      all = false;
      o.records = true;
      const std::string rr = fqdn(tname) + " IN TLSA " + policy::to_presentation(dane_ee_record(*wanted[i].key));
      add_unique(s.mutable_records_to_publish(), rr);
      line(s, prefix + "no TLSA record matches the " + wanted[i].role + " key (" + wanted[i].key->description +
                  ", " + wanted[i].key->source + ").");
    }
    if (t->kind != AnswerKind::kData) line(s, prefix + "no TLSA records at " + tname + " (" + describe(t) + ").");
    if (!all) worsen(s, WizardStep::STATUS_ACTION_NEEDED);
    if (t->security == Security::kInsecure) {
      worsen(s, WizardStep::STATUS_ACTION_NEEDED);
      if (t->kind == AnswerKind::kData)
        line(s, prefix + "the TLSA RRset is insecure: senders ignore it until its zone validates (step 1 for " +
                    (in_zone(h.name, cut.zone) ? cut.zone : "the zone of " + h.name) + ").");
    }
    if (all && t->security == Security::kSecure && t->kind == AnswerKind::kData)
      line(s, prefix + "the secure TLSA RRset at " + tname + " matches the gateway's " +
                  (wanted.size() > in.current_keys.size() ? "current and next keys." : "current certificates."));
    zones.insert(in_zone(h.name, cut.zone) ? fqdn(cut.zone) : "the zone of " + h.name);
  }
  if (!in.next_key && in.next_key_error.empty() && s.status() == WizardStep::STATUS_OK)
    line(s, "No next key given (--next-cert/--next-key): publish its TLSA record before the gateway's next "
            "certificate or key change.");
  s.set_publish_in(join(std::vector<std::string>(zones.begin(), zones.end()), ", "));
  if (s.records_to_publish_size() > 0) {
    *s.add_guidance() = "Publish every record listed (3 1 1: the SHA-256 of the key, which survives certificate "
                        "renewals with the same key) before the MX points at the gateway and before a key change.";
    *s.add_guidance() = "Remove records of retired keys only after the gateway stopped presenting them and the "
                        "TLSA TTL has passed.";
  }
  return o;
}

// ---- step 4: MTA-STS -----------------------------------------------------------------------------

// The policy text (CRLF, as RFC 8461's ABNF writes it) and its id (SHA-256 based): the same functions
// as the gateway's own policy host, so the same policy gets the same id from both.
using sts_publish::policy_id;
using sts_publish::policy_text;

struct StsOutcome {
  WizardStep step;
  bool publish = false;          // policy + TXT to publish
  std::string enforce_txt;       // when the proposed policy is in testing mode: the TXT for enforce
  std::string enforce_policy;
};

StsOutcome check_sts(const WizardInputs& in, const std::vector<std::string>& other_mx) {
  StsOutcome o;
  WizardStep& s = o.step;
  s = make_step(WizardStep::CHECK_MTA_STS, "MTA-STS: the _mta-sts TXT record and the policy cover the gateway");
  const std::string txt_name = "_mta-sts." + in.domain;
  const std::string url = "https://mta-sts." + in.domain + "/.well-known/mta-sts.txt";
  s.set_publish_in(fqdn(in.domain) + " (TXT) and https://mta-sts." + in.domain + "/ (policy)");
  const Answer& t = in.sts_txt;
  if (!has_answer(t)) {
    s.set_status(WizardStep::STATUS_FAIL);
    line(s, "The TXT lookup at " + txt_name + " is " + describe(t) + ": senders treat this as a temporary failure.");
    return o;
  }
  std::vector<std::string> sts_records;
  if (t->kind == AnswerKind::kData) {
    for (const std::string& r : t->answer.txt) {
      *s.add_found() = txt_rr(txt_name, r);
      if (r.starts_with("v=STSv1")) sts_records.push_back(r);
    }
  }
  std::string txt_error;
  const auto id = policy::parse_sts_txt(t->kind == AnswerKind::kData ? t->answer.txt : std::vector<std::string>{},
                                        &txt_error);
  if (id) line(s, txt_name + ": policy id " + *id + ".");
  else if (!txt_error.empty()) line(s, txt_name + ": " + txt_error + " (senders see no policy).");
  else line(s, txt_name + ": no v=STSv1 TXT record (" + describe(t) + ").");

  std::optional<policy::StsPolicy> current;
  if (!in.sts_fetch) {
    line(s, url + ": no answer before the wizard's deadline.");
  } else if (!in.sts_fetch->ok) {
    line(s, url + ": " + in.sts_fetch->error);
  } else {
    policy::StsError perr;
    current = policy::parse_sts_policy(in.sts_fetch->body, &perr);
    if (!current) line(s, url + ": the policy does not parse: " + perr.to_string());
  }
  std::vector<std::string> uncovered;
  if (current) {
    line(s, url + ": mode " + std::string(policy::to_string(current->mode)) + ", max_age " +
                std::to_string(current->max_age) + ", mx " + (current->mx.empty() ? "(none)" : join(current->mx, ", ")) + ".");
    for (const std::string& n : in.mx_names)
      if (!policy::sts_policy_allows(*current, n)) uncovered.push_back(n);
    if (!uncovered.empty()) line(s, "The policy does not list " + join(uncovered, ", ") + " (this gateway).");
    if (current->mode == policy::StsMode::kNone) line(s, "Mode none withdraws the policy.");
  }
  const bool policy_ok = current && current->mode != policy::StsMode::kNone && uncovered.empty();
  if (id && policy_ok) {
    if (current->mode == policy::StsMode::kTesting)
      line(s, "Mode testing: senders report (TLS-RPT) but still deliver; switch to enforce (with a new id) once the "
              "reports show no failures.");
    return o;
  }
  s.set_status(WizardStep::STATUS_ACTION_NEEDED);
  o.publish = true;
  // The proposed policy: this gateway first, the patterns the current policy lists, and the current
  // MX hosts that are not the gateway (mail still reaches them until the MX cutover).
  std::vector<std::string> mx = in.mx_names;
  auto covered = [&](const std::string& host) {
    return std::any_of(mx.begin(), mx.end(), [&](const std::string& p) { return policy::sts_mx_matches(p, host); });
  };
  if (current)
    for (const std::string& p : current->mx)
      if (std::find(mx.begin(), mx.end(), p) == mx.end()) mx.push_back(p);
  for (const std::string& h : other_mx)
    if (!covered(h) && policy::is_a_label_domain(h)) mx.push_back(h);
  const bool enforce = current && current->mode == policy::StsMode::kEnforce;
  const policy::StsMode mode = enforce ? policy::StsMode::kEnforce : policy::StsMode::kTesting;
  const uint32_t max_age = enforce ? std::max(current->max_age, kTestingMaxAge) : kTestingMaxAge;
  const std::string text = policy_text(mode, mx, max_age);
  const std::string new_id = policy_id(text);
  auto* f = s.add_files_to_publish();
  f->set_url(url);
  f->set_content_type("text/plain");
  f->set_content(text);
  *s.add_records_to_publish() = txt_rr(txt_name, "v=STSv1; id=" + new_id + ";");
  for (const std::string& r : sts_records) *s.add_records_to_remove() = txt_rr(txt_name, r);
  line(s, "Publish the policy below (mode " + std::string(policy::to_string(mode)) + ") and then the TXT record with "
              "its id " + new_id + ".");
  if (!other_mx.empty())
    line(s, "The policy also lists the current MX hosts that are not the gateway (" + join(other_mx, ", ") +
                ") so that mail to them is not refused during the cutover; drop them afterwards (new id).");
  *s.add_guidance() = "Serve the policy at " + url + " over HTTPS with a certificate for mta-sts." + in.domain +
                      " from a public CA (WebPKI), status 200, Content-Type text/plain, no redirect.";
  if (in.sts_fetch && !in.sts_fetch->ok && in.sts_fetch->error.find("has no address") != std::string::npos)
    *s.add_guidance() = "Publish A/AAAA records for mta-sts." + in.domain + " pointing at that web server.";
  *s.add_guidance() = "Publish the TXT record only once the policy is served: its id tells senders to fetch it.";
  if (mode == policy::StsMode::kTesting) {
    const std::string etext = policy_text(policy::StsMode::kEnforce, mx, kEnforceMaxAge);
    o.enforce_policy = etext;
    o.enforce_txt = txt_rr(txt_name, "v=STSv1; id=" + policy_id(etext) + ";");
    *s.add_guidance() = "When TLS-RPT reports show no failures: switch to mode enforce (max_age " +
                        std::to_string(kEnforceMaxAge) + ") and publish " + o.enforce_txt + ".";
  }
  return o;
}

// ---- step 5: TLS-RPT -----------------------------------------------------------------------------

WizardStep check_tlsrpt(const WizardInputs& in) {
  WizardStep s = make_step(WizardStep::CHECK_TLS_RPT, "TLS-RPT: _smtp._tls TXT says where senders report");
  const std::string name = "_smtp._tls." + in.domain;
  s.set_publish_in(fqdn(in.domain));
  const Answer& t = in.tlsrpt_txt;
  if (!has_answer(t)) {
    s.set_status(WizardStep::STATUS_FAIL);
    line(s, "The TXT lookup at " + name + " is " + describe(t) + ".");
    return s;
  }
  std::vector<std::string> records;
  if (t->kind == AnswerKind::kData) {
    for (const std::string& r : t->answer.txt) {
      *s.add_found() = txt_rr(name, r);
      if (is_tlsrpt_record(r)) records.push_back(r);
    }
  }
  const std::string proposal = "v=TLSRPTv1; rua=mailto:tlsrpt@" + in.domain;
  if (records.size() == 1) {
    std::string err;
    if (auto r = parse_tlsrpt_record(records[0], &err)) {
      line(s, name + ": reports go to " + join(r->rua, ", ") + ".");
      return s;
    }
    s.set_status(WizardStep::STATUS_ACTION_NEEDED);
    line(s, name + ": the record does not parse (RFC 8460 §3): " + err + ". Senders ignore it.");
    *s.add_records_to_remove() = txt_rr(name, records[0]);
  } else if (records.empty()) {
    s.set_status(WizardStep::STATUS_ACTION_NEEDED);
    line(s, name + ": no v=TLSRPTv1 record (" + describe(t) + "): senders have nowhere to report TLS failures.");
  } else {
    s.set_status(WizardStep::STATUS_ACTION_NEEDED);
    line(s, name + ": " + std::to_string(records.size()) + " v=TLSRPTv1 records; with more than one, senders use none.");
    for (const std::string& r : records) *s.add_records_to_remove() = txt_rr(name, r);
  }
  // A valid record among several is kept; otherwise the proposal.
  std::string keep = proposal;
  for (const std::string& r : records) {
    std::string err;
    if (parse_tlsrpt_record(r, &err)) {
      keep = r;
      break;
    }
  }
  auto* remove = s.mutable_records_to_remove();
  const std::string keep_rr = txt_rr(name, keep);
  remove->erase(std::remove(remove->begin(), remove->end(), keep_rr), remove->end());
  *s.add_records_to_publish() = keep_rr;
  if (keep == proposal)
    *s.add_guidance() = "Use a mailbox (mailto:) or an https: endpoint that collects the daily reports; "
                        "tlsrpt@" + in.domain + " is a suggestion.";
  return s;
}

WizardPlanItem* plan_item(WizardReport& rep, WizardStep::Check check, const std::string& action) {
  WizardPlanItem* p = rep.add_plan();
  p->set_order(static_cast<uint32_t>(rep.plan_size()));
  p->set_check(check);
  p->set_action(action);
  return p;
}

void copy_records(const WizardStep& s, WizardPlanItem* p) {
  for (const auto& r : s.records_to_publish()) *p->add_records_to_publish() = r;
  for (const auto& r : s.records_to_remove()) *p->add_records_to_remove() = r;
  p->set_publish_in(s.publish_in());
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

std::string fqdn(const std::string& name) {
  if (name.empty() || name == ".") return ".";
  return name.back() == '.' ? name : name + ".";
}

std::vector<std::string> zone_candidates(const std::string& domain) {
  std::vector<std::string> out;
  std::string n = domain;
  while (!n.empty() && n != ".") {
    out.push_back(n);
    const size_t dot = n.find('.');
    n = dot == std::string::npos ? "." : n.substr(dot + 1);
  }
  out.push_back(".");
  return out;
}

ZoneCut find_zone(const std::vector<std::pair<std::string, Answer>>& soa) {
  // The first name with SOA data is the zone apex and the next one its parent. A zone that does not
  // validate answers bogus at every name in it: then its apex is the highest bogus name below the
  // first name that answers (the chain of trust breaks at a zone cut).
  ZoneCut cut;
  std::string top_bogus;
  for (const auto& [name, a] : soa) {
    if (a && a->security == Security::kBogus && cut.zone.empty()) {
      top_bogus = name;
      continue;
    }
    if (!has_answer(a)) {
      if (cut.zone.empty() && top_bogus.empty()) {
        cut.why = "the SOA lookup at " + name + " is " + describe(a);
        return cut;
      }
      continue;  // the parent stays unknown
    }
    if (a->kind != AnswerKind::kData || a->answer.other.empty()) continue;
    if (!top_bogus.empty()) {
      cut.zone = top_bogus;
      cut.parent = name;
      break;
    }
    if (cut.zone.empty()) {
      cut.zone = name;
    } else {
      cut.parent = name;
      break;
    }
  }
  if (cut.zone.empty() && !top_bogus.empty()) cut.zone = top_bogus;
  if (cut.zone.empty()) cut.why = "no SOA record at the domain or any name above it";
  return cut;
}

WizardReport evaluate(const WizardInputs& in) {
  WizardReport rep;
  rep.set_domain(in.domain);
  for (const std::string& n : in.mx_names) *rep.add_mx_names() = n;
  rep.set_checked_at(in.now);
  const ZoneCut cut = find_zone(in.soa);
  if (!cut.zone.empty()) rep.set_zone(fqdn(cut.zone));
  if (!cut.parent.empty()) rep.set_parent_zone(fqdn(cut.parent));

  DnssecOutcome dnssec = check_dnssec(in, cut);
  MxOutcome mx = check_mx(in, cut, dnssec);
  TlsaOutcome tlsa = check_tlsa(in, cut);
  StsOutcome sts = check_sts(in, mx.other_hosts);
  WizardStep rpt = check_tlsrpt(in);

  const bool zone_bogus = in.dnskey && in.dnskey->security == Security::kBogus;
  // The cutover plan: only what is still needed, in the order it must be done.
  const WizardStep& ds = dnssec.step;
  if (dnssec.kind == DnssecOutcome::kUnsigned) {
    WizardPlanItem* p = plan_item(rep, WizardStep::CHECK_DNSSEC, "Sign the zone " + in.domain + " (see step 1).");
    p->set_then_wait("until every name server of the zone serves it signed.");
    p = plan_item(rep, WizardStep::CHECK_DNSSEC,
                  "Publish the DS of the zone's key-signing key in the parent zone (run the wizard again once the "
                  "zone is signed: it prints the exact DS records).");
    p->set_publish_in(ds.publish_in());
    p->set_then_wait("until the parent serves the DS (its TTL) and the wizard shows step 1 ok.");
  } else if (dnssec.kind == DnssecOutcome::kNoDs) {
    WizardPlanItem* p = plan_item(rep, WizardStep::CHECK_DNSSEC,
                                  "Publish the DS records in the parent zone (through the registrar).");
    copy_records(ds, p);
    p->set_then_wait("until the parent serves the DS (its TTL) and the wizard shows step 1 ok.");
  } else if (ds.status() == WizardStep::STATUS_FAIL) {
    WizardPlanItem* p = plan_item(rep, WizardStep::CHECK_DNSSEC, "Fix DNSSEC first: " + first_line(ds.detail()));
    copy_records(ds, p);
    p->set_then_wait("until the wizard shows step 1 ok: nothing else is safe while the zone is bogus.");
  }
  const WizardStep& ts = tlsa.step;
  if (!tlsa.hosts_without_address.empty()) {
    plan_item(rep, WizardStep::CHECK_TLSA,
              "Publish A/AAAA records (the gateway's public addresses) for " + join(tlsa.hosts_without_address, ", ") + ".");
  }
  if (tlsa.records) {
    WizardPlanItem* p = plan_item(rep, WizardStep::CHECK_TLSA,
                                  "Publish the TLSA records for the gateway's MX names (current and next key) before "
                                  "the MX points at the gateway.");
    copy_records(ts, p);
    p->clear_records_to_remove();  // stale records go only after a rollover; the step lists them
    p->set_then_wait("the TLSA TTL, so that senders see the records before mail arrives at the new MX.");
  } else if (ts.status() == WizardStep::STATUS_FAIL && !zone_bogus) {
    plan_item(rep, WizardStep::CHECK_TLSA, "Fix the TLSA check: " + first_line(ts.detail()));
  }
  // TLS-RPT before MTA-STS: the reports are what the testing mode waits for.
  if (rpt.records_to_publish_size() > 0) {
    WizardPlanItem* p = plan_item(rep, WizardStep::CHECK_TLS_RPT, "Publish the TLS-RPT record.");
    copy_records(rpt, p);
  } else if (rpt.status() == WizardStep::STATUS_FAIL && !zone_bogus) {
    plan_item(rep, WizardStep::CHECK_TLS_RPT, "Fix the TLS-RPT check: " + first_line(rpt.detail()));
  }

  const WizardStep& ss = sts.step;
  if (sts.publish) {
    const bool testing = !sts.enforce_txt.empty();
    WizardPlanItem* p = plan_item(rep, WizardStep::CHECK_MTA_STS,
                                  std::string("Serve the MTA-STS policy") + (testing ? " in mode testing" : "") + " at " +
                                      ss.files_to_publish(0).url() + " (step 4), then publish its TXT record.");
    copy_records(ss, p);
    p->set_then_wait(testing ? "a few days of TLS-RPT reports without failures." : "the old policy's max_age.");
    if (testing) {
      p = plan_item(rep, WizardStep::CHECK_MTA_STS,
                    "Switch the MTA-STS policy to mode enforce (max_age " + std::to_string(kEnforceMaxAge) +
                        ", same mx lines) and publish its new id.");
      *p->add_records_to_publish() = sts.enforce_txt;
      p->set_publish_in(ss.publish_in());
    }
  } else if (ss.status() == WizardStep::STATUS_FAIL && !zone_bogus) {
    plan_item(rep, WizardStep::CHECK_MTA_STS, "Fix the MTA-STS check: " + first_line(ss.detail()));
  }
  const WizardStep& ms = mx.step;
  if (mx.records) {
    WizardPlanItem* p = plan_item(rep, WizardStep::CHECK_MX,
                                  "MX cutover: point the MX of " + in.domain + " at the gateway" +
                                      (ms.records_to_remove_size() ? " and remove the old hosts." : "."));
    copy_records(ms, p);
    p->set_then_wait("the old MX TTL; keep the old hosts accepting mail until then" +
                     std::string(mx.other_hosts.empty() ? "." : ", then drop them from the MTA-STS policy (new id)."));
  } else if (ms.status() == WizardStep::STATUS_FAIL && !zone_bogus) {
    plan_item(rep, WizardStep::CHECK_MX, "Fix the MX check: " + first_line(ms.detail()));
  }
  *rep.add_steps() = std::move(dnssec.step);
  *rep.add_steps() = std::move(mx.step);
  *rep.add_steps() = std::move(tlsa.step);
  *rep.add_steps() = std::move(sts.step);
  *rep.add_steps() = std::move(rpt);
  if (zone_bogus) {
    // Everything in a bogus zone is bogus: its steps say so once (step 1), not five times.
    for (int i = 1; i < rep.steps_size(); ++i) {
      WizardStep* s = rep.mutable_steps(i);
      if (s->status() != WizardStep::STATUS_FAIL) continue;
      if (s->check() == WizardStep::CHECK_TLSA &&
          !std::all_of(in.mx_names.begin(), in.mx_names.end(), [&](const std::string& n) { return in_zone(n, cut.zone); }))
        continue;
      WizardStep skipped = make_step(s->check(), s->title());
      skipped.set_status(WizardStep::STATUS_SKIPPED);
      line(skipped, "Not checked: " + cut.zone + " does not validate (step 1), so every answer from it is bogus.");
      *s = std::move(skipped);
    }
  }
  bool ready = true;
  for (const WizardStep& s : rep.steps()) ready &= s.status() == WizardStep::STATUS_OK;
  rep.set_ready(ready);
  return rep;
}

}  // namespace mxedge::wizard
