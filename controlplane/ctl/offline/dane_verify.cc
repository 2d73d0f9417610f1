#include "controlplane/ctl/offline/dane_verify.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <sstream>

#include "controlplane/ctl/offline/x509_util.h"
#include "policy/mta_sts.h"

namespace mxedge::ctl::offline {
namespace {

struct CtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslFree {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct StoreFree {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};
struct StackFree {
  void operator()(STACK_OF(X509)* p) const { sk_X509_free(p); }  // the certificates are not owned
};

// The presentation form, with long association data shortened for the human-readable output.
std::string short_presentation(const policy::TlsaRecord& r) {
  std::string s = policy::to_presentation(r);
  constexpr size_t kMax = 6 + 64;  // "U S M " and 32 bytes of hex
  if (s.size() > kMax + 3) s = s.substr(0, kMax) + "...";
  return s;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

// Lower case, without a trailing dot; empty when not a host name.
std::string normalize_name(std::string name) {
  if (!name.empty() && name.back() == '.') name.pop_back();
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return policy::is_a_label_domain(name) ? name : std::string();
}

}  // namespace

std::string usage_name(uint8_t usage) {
  switch (usage) {
    case 0: return "PKIX-TA";
    case 1: return "PKIX-EE";
    case 2: return "DANE-TA";
    case 3: return "DANE-EE";
  }
  return "usage " + std::to_string(usage);
}

std::string selector_name(uint8_t selector) {
  switch (selector) {
    case 0: return "Cert";
    case 1: return "SPKI";
  }
  return "selector " + std::to_string(selector);
}

std::string mtype_name(uint8_t mtype) {
  switch (mtype) {
    case 0: return "Full";
    case 1: return "SHA2-256";
    case 2: return "SHA2-512";
  }
  return "matching type " + std::to_string(mtype);
}

std::optional<DaneResult> dane_verify(const std::vector<X509*>& chain, const std::string& host,
                                      const std::vector<std::string>& extra_names,
                                      const std::vector<policy::TlsaRecord>& records, std::string* error) {
  auto fail = [&](const std::string& what) -> std::optional<DaneResult> {
    const std::string detail = openssl_errors();
    *error = what + (detail.empty() ? "" : ": " + detail);
    return std::nullopt;
  };
  if (chain.empty() || chain[0] == nullptr) {
    *error = "no certificate to verify";
    return std::nullopt;
  }
  ERR_clear_error();
  DaneResult res;
  res.host = host;
  res.names.push_back(host);
  for (const auto& n : extra_names) {
    if (!n.empty() && std::find(res.names.begin(), res.names.end(), n) == res.names.end()) res.names.push_back(n);
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    DaneCertificate c;
    c.depth = static_cast<int>(i);
    c.subject = subject_of(chain[i]);
    c.issuer = issuer_of(chain[i]);
    c.not_before = not_before_of(chain[i]);
    c.not_after = not_after_of(chain[i]);
    c.dns_names = dns_names_of(chain[i]);
    res.chain.push_back(std::move(c));
  }

  // The same setup as OutboundTls (dataplane/tls/client_verify.cc) for a DANE connection.
  std::unique_ptr<SSL_CTX, CtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return fail("SSL_CTX_new");
  if (SSL_CTX_dane_enable(ctx.get()) <= 0) return fail("SSL_CTX_dane_enable");
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
  if (!ssl) return fail("SSL_new");
  SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_dane_enable(ssl.get(), host.c_str()) <= 0) return fail("SSL_dane_enable " + host);  // also the first name
  SSL_dane_set_flags(ssl.get(), DANE_FLAG_NO_DANE_EE_NAMECHECKS);
  for (size_t i = 1; i < res.names.size(); ++i) {
    if (SSL_add1_host(ssl.get(), res.names[i].c_str()) != 1) return fail("SSL_add1_host " + res.names[i]);
  }
  int usable = 0;
  for (const auto& r : records) {
    DaneRecordReport rep;
    rep.record = r;
    const policy::TlsaUsability u = policy::classify(r);
    if (u != policy::TlsaUsability::kUsable) {
      rep.reason = std::string(policy::to_string(u));
    } else {
      const int rc = SSL_dane_tlsa_add(ssl.get(), r.usage, r.selector, r.mtype, r.data.data(), r.data.size());
      if (rc > 0) {
        rep.usable = true;
        ++usable;
      } else if (rc == 0) {
        // e.g. selector 1 matching type 0 data that is not a public key: "dane tlsa bad public key"
        const char* why = ERR_reason_error_string(ERR_peek_last_error());
        rep.reason = "OpenSSL rejects the record" + (why == nullptr ? std::string() : std::string(" (") + why + ")");
        ERR_clear_error();
      } else {
        return fail("SSL_dane_tlsa_add");
      }
    }
    res.records.push_back(std::move(rep));
  }
  ERR_clear_error();
  if (usable == 0) {
    res.status = DaneStatus::kUnusable;
    res.reason = records.empty() ? "no TLSA record given"
                                 : "no usable TLSA record (" + std::to_string(records.size()) + " rejected)";
    return res;
  }

  // Offline verification: what ssl_verify_cert_chain() does during a handshake.
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());  // no PKIX trust anchors
  std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
  if (!store || !untrusted) return fail("out of memory");
  for (size_t i = 1; i < chain.size(); ++i) {
    if (sk_X509_push(untrusted.get(), chain[i]) <= 0) return fail("out of memory");
  }
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> sctx(X509_STORE_CTX_new());
  if (!sctx) return fail("X509_STORE_CTX_new");
  if (X509_STORE_CTX_init(sctx.get(), store.get(), chain[0], untrusted.get()) != 1) return fail("X509_STORE_CTX_init");
  X509_STORE_CTX_set0_dane(sctx.get(), SSL_get0_dane(ssl.get()));
  if (X509_STORE_CTX_set_default(sctx.get(), "ssl_server") != 1) return fail("X509_STORE_CTX_set_default");
  if (X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(sctx.get()), SSL_get0_param(ssl.get())) != 1)
    return fail("X509_VERIFY_PARAM_set1");
  const int ok = X509_verify_cert(sctx.get());
  const long code = X509_STORE_CTX_get_error(sctx.get());
  const int error_depth = X509_STORE_CTX_get_error_depth(sctx.get());
  ERR_clear_error();

  // The store context wrote the match into the SSL's DANE state.
  uint8_t usage = 0, selector = 0, mtype = 0;
  const unsigned char* data = nullptr;
  size_t dlen = 0;
  const int depth = SSL_get0_dane_tlsa(ssl.get(), &usage, &selector, &mtype, &data, &dlen);
  if (depth >= 0) {
    res.matched = true;
    res.match_depth = depth;
    res.match = policy::TlsaRecord{usage, selector, mtype, {}};
    if (data != nullptr) res.match.data.assign(data, data + dlen);
    X509* mcert = nullptr;
    EVP_PKEY* mspki = nullptr;
    if (SSL_get0_dane_authority(ssl.get(), &mcert, &mspki) >= 0 && mcert != nullptr) res.match_subject = subject_of(mcert);
  }
  sctx.reset();  // before the SSL whose DANE state it points to

  if (ok == 1 && depth >= 0) {
    res.status = DaneStatus::kVerified;
    return res;
  }
  res.status = DaneStatus::kFailed;
  if (ok == 1) {  // cannot happen without PKIX trust anchors; never accepted as DANE
    res.reason = "the chain verified, but not by a TLSA record";
    return res;
  }
  res.x509_error = code;
  res.x509_error_depth = error_depth;
  res.x509_error_text = X509_verify_cert_error_string(code);
  if (depth < 0) {
    res.reason = "no TLSA record matched the chain";
    if (code != X509_V_ERR_DANE_NO_MATCH && code != X509_V_OK) res.reason += " (" + res.x509_error_text + ")";
  } else if (code == X509_V_ERR_HOSTNAME_MISMATCH) {
    res.reason = usage_name(usage) + " matched but the certificate does not name " + join(res.names, " or ");
  } else {
    res.reason = usage_name(usage) + " matched at depth " + std::to_string(depth) +
                 " but the chain does not validate: " + res.x509_error_text + " (depth " +
                 std::to_string(error_depth) + ")";
  }
  return res;
}

nlohmann::ordered_json to_json(const DaneResult& r) {
  using json = nlohmann::ordered_json;
  json j;
  j["result"] = r.status == DaneStatus::kVerified ? "verified" : r.status == DaneStatus::kUnusable ? "unusable" : "failed";
  if (r.status != DaneStatus::kVerified) j["reason"] = r.reason;
  j["host"] = r.host;
  j["names"] = r.names;
  if (r.matched) {
    j["match"] = {{"usage", r.match.usage},
                  {"usage_name", usage_name(r.match.usage)},
                  {"selector", r.match.selector},
                  {"selector_name", selector_name(r.match.selector)},
                  {"mtype", r.match.mtype},
                  {"mtype_name", mtype_name(r.match.mtype)},
                  {"depth", r.match_depth},
                  {"record", policy::to_presentation(r.match)},
                  {"certificate", r.match_subject}};
  } else {
    j["match"] = nullptr;
  }
  if (r.x509_error != 0) {
    j["x509_error"] = {{"code", r.x509_error}, {"message", r.x509_error_text}, {"depth", r.x509_error_depth}};
  } else {
    j["x509_error"] = nullptr;
  }
  j["records"] = json::array();
  for (const auto& rec : r.records) {
    json e = {{"record", policy::to_presentation(rec.record)}, {"usable", rec.usable}};
    if (!rec.usable) e["reason"] = rec.reason;
    j["records"].push_back(std::move(e));
  }
  j["chain"] = json::array();
  for (const auto& c : r.chain) {
    j["chain"].push_back({{"depth", c.depth},
                          {"subject", c.subject},
                          {"issuer", c.issuer},
                          {"not_before", c.not_before},
                          {"not_after", c.not_after},
                          {"dns_names", c.dns_names}});
  }
  return j;
}

std::string to_text(const DaneResult& r) {
  std::ostringstream o;
  switch (r.status) {
    case DaneStatus::kVerified:
      o << "verified: " << usage_name(r.match.usage) << " (" << int{r.match.usage} << ") selector "
        << selector_name(r.match.selector) << " (" << int{r.match.selector} << ") matching type "
        << mtype_name(r.match.mtype) << " (" << int{r.match.mtype} << "), match depth " << r.match_depth << "\n";
      break;
    case DaneStatus::kUnusable:
      o << "unusable: " << r.reason << "\n";
      break;
    case DaneStatus::kFailed:
      o << "failed: " << r.reason << "\n";
      break;
  }
  o << "  host: " << r.host;
  if (r.names.size() > 1) o << " (names: " << join(r.names, ", ") << ")";
  o << "\n";
  if (r.matched) {
    o << "  matched record: " << short_presentation(r.match) << "\n";
    if (r.match_subject.empty())  // a bare public key (2 1 0): the key that signed the certificate at match_depth
      o << "  matched key: a trust anchor public key not in the chain, issuer of depth " << r.match_depth << "\n";
    else
      o << "  matched certificate: depth " << r.match_depth << " " << r.match_subject << "\n";
  }
  if (r.x509_error != 0)
    o << "  X509 error: " << r.x509_error_text << " (" << r.x509_error << ") at depth " << r.x509_error_depth << "\n";
  o << "  chain:\n";
  for (const auto& c : r.chain) {
    o << "    " << c.depth << " " << c.subject << "\n";
    o << "      issuer " << c.issuer << "; valid " << c.not_before << " to " << c.not_after;
    if (!c.dns_names.empty()) o << "; DNS " << join(c.dns_names, ", ");
    o << "\n";
  }
  int usable = 0;
  for (const auto& rec : r.records) usable += rec.usable ? 1 : 0;
  o << "  TLSA records: " << usable << " usable, " << (r.records.size() - static_cast<size_t>(usable)) << " unusable\n";
  for (const auto& rec : r.records) {
    o << "    " << (rec.usable ? "usable   " : "unusable ") << short_presentation(rec.record);
    if (!rec.usable) o << ": " << rec.reason;
    o << "\n";
  }
  return o.str();
}

Report run_dane_verify(const DaneVerifyArgs& args) {
  const std::string host = normalize_name(args.host);
  if (host.empty()) return usage_error("--host '" + args.host + "' is not a host name (A-label form, e.g. mx.example.com)");
  std::vector<std::string> names;
  for (const auto& n : args.names) {
    const std::string name = normalize_name(n);
    if (name.empty()) return usage_error("--name '" + n + "' is not a domain name (A-label form)");
    names.push_back(name);
  }
  if (args.tlsa.empty()) return usage_error("at least one --tlsa \"USAGE SELECTOR MTYPE HEX\" is required");
  std::vector<policy::TlsaRecord> records;
  for (const auto& t : args.tlsa) {
    std::string err;
    auto r = policy::parse_tlsa_presentation(t, &err);
    if (!r) return usage_error("--tlsa '" + t + "': " + err);
    records.push_back(std::move(*r));
  }
  std::string err;
  std::vector<X509Ptr> certs = load_pem_certificates(args.chain_file, &err);
  if (certs.empty()) return usage_error("--chain: " + err);
  std::vector<X509*> chain;
  for (const auto& c : certs) chain.push_back(c.get());
  auto res = dane_verify(chain, host, names, records, &err);
  if (!res) return failed_error("DANE verification could not run: " + err);
  Report rep;
  rep.verdict = res->status == DaneStatus::kVerified ? Verdict::kOk : Verdict::kNegative;
  rep.text = to_text(*res);
  rep.json = to_json(*res);
  rep.json["chain_file"] = args.chain_file;
  return rep;
}

}  // namespace mxedge::ctl::offline
