#include "controlplane/ctl/offline/tlsa_generate.h"

#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include "controlplane/ctl/offline/x509_util.h"
#include "policy/config_loader.h"
#include "policy/mta_sts.h"

namespace mxedge::ctl::offline {
namespace {

using mxedge::config::v1::LISTENER_ROLE_OUTBOUND;
using mxedge::config::v1::TLS_MODE_NONE;

std::string hex_of(const std::vector<uint8_t>& data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : data) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 15]);
  }
  return s;
}

bool issued(X509* issuer, X509* subject) { return X509_check_issued(issuer, subject) == X509_V_OK; }

std::vector<std::string> rollover_guidance(const TlsaGenerateResult& r) {
  const std::string owner = r.owner;
  return {
      "Key rollover without breaking DANE senders (RFC 7672 section 3.1, RFC 7671 section 8):",
      "1. Publish the next key's 3 1 1 record (--next-key or --next-cert) alongside the current records; "
      "keep everything else at " + owner + " as it is.",
      "2. Wait at least two TTLs of the TLSA RRset after every authoritative server serves the new RRset, "
      "so no sender still holds a cached RRset without the next key.",
      "3. Switch the gateway to the certificate for the next key (update cert_file/key_file, then "
      "kill -HUP the data plane) and check it: mxedgectl dane verify --host " + r.mx + " --chain <new chain> "
      "--tlsa '<each record>'.",
      "4. Remove the old key's 3 1 1 record (again only after the new certificate is served everywhere).",
      "The 2 1 1 record pins the issuing CA's key, not the leaf's: a renewal by the same CA (new leaf, new "
      "or old key) still verifies through it, which covers a renewal that skipped step 1. It requires the "
      "served chain to include that CA certificate and the leaf to name the MX host. When the CA or its key "
      "changes, pre-publish the new CA's 2 1 1 record the same way.",
      "Never publish only usage 0/1 (PKIX-TA/PKIX-EE) records: they are unusable for SMTP (RFC 7672 section "
      "3.1.3), and senders then treat the MX host as having no usable TLSA records.",
      "The zone must be DNSSEC-signed; TLSA records in an insecure zone are ignored.",
  };
}

// The MX host name: lower case, no trailing dot; empty when invalid.
std::string normalize_mx(std::string name) {
  if (!name.empty() && name.back() == '.') name.pop_back();
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return policy::is_a_label_domain(name) ? name : std::string();
}

}  // namespace

std::vector<uint8_t> spki_sha256(X509* cert) {
  auto d = tlsa_digest(spki_der(cert), 1);
  return d ? *d : std::vector<uint8_t>();
}

std::vector<std::string> listener_certificate_files(const mxedge::config::v1::Config& config) {
  std::vector<std::string> files;
  for (const auto& l : config.listeners()) {
    if (l.tls_mode() == TLS_MODE_NONE || l.role() == LISTENER_ROLE_OUTBOUND) continue;
    for (const auto& c : l.certificates()) {
      if (!c.cert_file().empty() && std::find(files.begin(), files.end(), c.cert_file()) == files.end())
        files.push_back(c.cert_file());
    }
  }
  return files;
}

std::optional<TlsaGenerateResult> generate_tlsa(const TlsaGenerateArgs& args, std::string* error) {
  TlsaGenerateResult res;
  res.mx = normalize_mx(args.mx);
  if (res.mx.empty()) {
    *error = "MX name '" + args.mx + "' is not a host name (A-label form, e.g. mx.example.com)";
    return std::nullopt;
  }
  if (args.port < 1 || args.port > 65535) {
    *error = "port " + std::to_string(args.port) + " is not 1-65535";
    return std::nullopt;
  }
  if (args.cert_files.empty()) {
    *error = "no certificate given";
    return std::nullopt;
  }
  res.port = args.port;
  res.owner = "_" + std::to_string(args.port) + "._tcp." + res.mx + ".";

  std::set<std::string> seen;  // presentation forms already emitted
  auto add = [&](const std::string& role, const std::string& source, X509* cert, const std::vector<uint8_t>& spki) {
    auto digest = tlsa_digest(spki, 1);
    if (!digest || spki.empty()) return false;
    GeneratedTlsa g;
    g.role = role;
    g.source = source;
    if (cert != nullptr) {
      g.subject = subject_of(cert);
      g.not_after = not_after_of(cert);
    }
    g.record = policy::TlsaRecord{static_cast<uint8_t>(role == "issuer" || role == "next-issuer" ? 2 : 3), 1, 1, *digest};
    const std::string rdata = policy::to_presentation(g.record);
    if (!seen.insert(rdata).second) return true;
    g.rr = res.owner + " IN TLSA " + rdata;
    res.records.push_back(std::move(g));
    return true;
  };

  std::vector<X509Ptr> chain_certs;
  if (!args.chain_file.empty()) {
    chain_certs = load_pem_certificates(args.chain_file, error);
    if (chain_certs.empty()) {
      *error = "--chain: " + *error;
      return std::nullopt;
    }
  }

  // The current certificates and their issuers.
  std::vector<X509Ptr> current_leaves;
  for (const auto& file : args.cert_files) {
    std::vector<X509Ptr> certs = load_pem_certificates(file, error);
    if (certs.empty()) return std::nullopt;
    X509* leaf = certs[0].get();
    if (!add("current", file, leaf, spki_der(leaf))) {
      *error = "cannot encode the public key of " + subject_of(leaf) + " in " + file;
      return std::nullopt;
    }
    if (issued(leaf, leaf)) {
      res.notes.push_back(file + ": the certificate is self-signed; only its 3 1 1 record applies");
      current_leaves.push_back(std::move(certs[0]));
      continue;
    }
    X509* issuer = nullptr;
    std::string issuer_source;
    bool served = false;
    for (size_t i = 1; i < certs.size() && issuer == nullptr; ++i) {
      if (issued(certs[i].get(), leaf)) {
        issuer = certs[i].get();
        issuer_source = file;
        served = true;
      }
    }
    for (size_t i = 0; i < chain_certs.size() && issuer == nullptr; ++i) {
      if (issued(chain_certs[i].get(), leaf)) {
        issuer = chain_certs[i].get();
        issuer_source = args.chain_file;
      }
    }
    if (issuer == nullptr) {
      if (certs.size() > 1 || !chain_certs.empty()) {
        *error = "no certificate in " + (chain_certs.empty() ? file : file + " or " + args.chain_file) +
                 " issued " + subject_of(leaf) + " (issuer " + issuer_of(leaf) + ")";
        return std::nullopt;
      }
      res.notes.push_back(file + ": no issuing CA certificate (the file holds only the leaf; give the CA with "
                                 "--chain): no 2 1 1 record");
    } else {
      if (!served)
        res.notes.push_back(file + " does not carry the issuing CA certificate " + subject_of(issuer) +
                            ": the 2 1 1 record verifies only when the served chain includes it (append it to the "
                            "cert_file)");
      if (!add("issuer", issuer_source, issuer, spki_der(issuer))) {
        *error = "cannot encode the public key of " + subject_of(issuer);
        return std::nullopt;
      }
    }
    current_leaves.push_back(std::move(certs[0]));
  }
  auto is_current_key = [&](const std::vector<uint8_t>& spki) {
    for (const auto& c : current_leaves) {
      if (spki_der(c.get()) == spki) return true;
    }
    return false;
  };

  // The next certificate / key.
  std::vector<uint8_t> next_cert_spki;
  if (!args.next_cert_file.empty()) {
    std::vector<X509Ptr> certs = load_pem_certificates(args.next_cert_file, error);
    if (certs.empty()) {
      *error = "--next-cert: " + *error;
      return std::nullopt;
    }
    X509* leaf = certs[0].get();
    next_cert_spki = spki_der(leaf);
    if (is_current_key(next_cert_spki))
      res.notes.push_back("the next certificate " + subject_of(leaf) +
                          " has the same key as a current one: its 3 1 1 record is already published");
    add("next", args.next_cert_file, leaf, next_cert_spki);
    for (size_t i = 1; i < certs.size(); ++i) {
      if (issued(certs[i].get(), leaf)) {
        add("next-issuer", args.next_cert_file, certs[i].get(), spki_der(certs[i].get()));
        break;
      }
    }
  }
  if (!args.next_key_file.empty()) {
    PkeyPtr key = load_pem_key(args.next_key_file, error);
    if (!key) {
      *error = "--next-key: " + *error;
      return std::nullopt;
    }
    const std::vector<uint8_t> spki = spki_der(key.get());
    if (spki.empty()) {
      *error = "--next-key: cannot encode the public key of " + args.next_key_file;
      return std::nullopt;
    }
    if (!next_cert_spki.empty() && spki != next_cert_spki) {
      *error = "--next-key " + args.next_key_file + " is not the key of --next-cert " + args.next_cert_file;
      return std::nullopt;
    }
    if (is_current_key(spki))
      res.notes.push_back("the next key " + args.next_key_file +
                          " is the current key: its 3 1 1 record is already published (generate a new key)");
    add("next", args.next_key_file, nullptr, spki);
  }
  if (args.next_cert_file.empty() && args.next_key_file.empty())
    res.notes.push_back("no --next-key / --next-cert: generate the next key now and pre-publish its 3 1 1 record");
  res.guidance = rollover_guidance(res);
  return res;
}

nlohmann::ordered_json to_json(const TlsaGenerateResult& r) {
  nlohmann::ordered_json j;
  j["mx"] = r.mx;
  j["port"] = r.port;
  j["owner"] = r.owner;
  j["records"] = nlohmann::ordered_json::array();
  for (const auto& g : r.records) {
    j["records"].push_back({{"role", g.role},
                            {"usage", g.record.usage},
                            {"selector", g.record.selector},
                            {"mtype", g.record.mtype},
                            {"data", hex_of(g.record.data)},
                            {"rdata", policy::to_presentation(g.record)},
                            {"rr", g.rr},
                            {"source", g.source},
                            {"subject", g.subject},
                            {"not_after", g.not_after}});
  }
  j["notes"] = r.notes;
  j["guidance"] = r.guidance;
  return j;
}

namespace {

// `text` as zone-file comment lines of at most ~100 columns; continuation lines indented.
void comment(std::ostringstream& o, const std::string& text) {
  constexpr size_t kWidth = 98;
  std::string line = ";";
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(pos, end - pos);
    if (line.size() + 1 + word.size() > kWidth && line.size() > 4) {
      o << line << "\n";
      line = ";   ";
    }
    line += line == ";   " ? word : " " + word;
    pos = end + 1;
  }
  o << line << "\n";
}

}  // namespace

std::string to_text(const TlsaGenerateResult& r) {
  std::ostringstream o;
  o << "; TLSA records for " << r.mx << " port " << r.port << " (publish in its DNSSEC-signed zone)\n";
  for (const auto& g : r.records) {
    o << ";\n; ";
    if (g.role == "current") o << "current certificate " << g.subject << " (" << g.source << "), expires " << g.not_after;
    else if (g.role == "issuer") o << "issuing CA " << g.subject << " (" << g.source << "), expires " << g.not_after;
    else if (g.role == "next-issuer") o << "issuing CA of the next certificate " << g.subject << " (" << g.source << ")";
    else if (g.subject.empty()) o << "next key (" << g.source << "): publish before the rollover";
    else o << "next certificate " << g.subject << " (" << g.source << "): publish before the rollover";
    o << "\n" << g.rr << "\n";
  }
  if (!r.notes.empty()) {
    o << ";\n";
    for (const auto& n : r.notes) comment(o, "note: " + n);
  }
  o << ";\n";
  for (const auto& g : r.guidance) comment(o, g);
  return o.str();
}

Report run_tlsa_generate(const TlsaGenerateArgs& in) {
  TlsaGenerateArgs args = in;
  if (args.cert_files.empty() || args.mx.empty()) {
    const config::LoadResult loaded = config::load_config_file(args.config_file);
    if (!loaded.ok()) {
      std::string first = loaded.errors.empty() ? "unknown error" : loaded.errors[0].to_string();
      if (loaded.errors.size() > 1) first += " (and " + std::to_string(loaded.errors.size() - 1) + " more; see mxedgectl config validate)";
      return usage_error("cannot take the " + std::string(args.cert_files.empty() ? "certificates" : "MX name") +
                         " from the configuration (give --cert and --mx, or a valid --config): " + first);
    }
    if (args.mx.empty()) args.mx = loaded.config->hostname();
    if (args.cert_files.empty()) {
      args.cert_files = listener_certificate_files(*loaded.config);
      if (args.cert_files.empty())
        return usage_error(args.config_file + " has no inbound TLS listener with certificates (give --cert)");
    }
  }
  std::string error;
  auto res = generate_tlsa(args, &error);
  if (!res) return usage_error(error);
  Report rep;
  rep.text = to_text(*res);
  rep.json = to_json(*res);
  return rep;
}

}  // namespace mxedge::ctl::offline
