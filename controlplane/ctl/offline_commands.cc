// mxedgectl's offline tools: no daemon needed. The logic lives in controlplane/ctl/offline/ (library
// mxedge_ctl_offline, unit-tested); this file maps it onto CLI11 subcommands and exit codes.
//
//   dane verify --host H --tlsa "U S M HEX"... --chain FILE [--name N]...
//   sts parse FILE | sts match PATTERN HOST | sts txt RECORD...
//   tlsa generate [--cert FILE]... [--chain FILE] [--next-cert FILE] [--next-key FILE] [--mx NAME] [--port N]
//   config validate [FILE]
//
// Output: human-readable text on stdout, or with --json one JSON document (shapes in the help footers
// and in the offline/*.h headers). Errors (bad arguments, unreadable input: exit 2) go through
// print_error.
#include <exception>
#include <functional>
#include <iostream>
#include <memory>

#include "controlplane/ctl/ctl.h"
#include "controlplane/ctl/offline/config_check.h"
#include "controlplane/ctl/offline/dane_verify.h"
#include "controlplane/ctl/offline/sts_check.h"
#include "controlplane/ctl/offline/tlsa_generate.h"

namespace mxedge::ctl {
namespace {

using offline::Report;
using offline::Verdict;

int exit_code_of(Verdict v) {
  switch (v) {
    case Verdict::kOk: return kExitOk;
    case Verdict::kNegative: return kExitNegative;
    case Verdict::kUsage: return kExitUsage;
    case Verdict::kFailed: return kExitFailed;
  }
  return kExitFailed;
}

void emit(Ctl& ctl, const Report& r) {
  ctl.exit_code = exit_code_of(r.verdict);
  if (r.is_error()) {
    print_error(ctl, r.error_code, r.error);
    return;
  }
  if (ctl.json) {
    std::cout << r.json.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  } else {
    std::cout << r.text;
  }
  std::cout.flush();
}

// Runs `body` and emits its report; an exception (never expected) is a failure, not a crash.
template <typename F>
void run(Ctl& ctl, F body) {
  try {
    emit(ctl, body());
  } catch (const std::exception& e) {
    ctl.exit_code = kExitFailed;
    print_error(ctl, "failed", std::string("internal error: ") + e.what());
  }
}

// The group `name`, shared with the daemon commands when both add to it (e.g. "config").
CLI::App* group(CLI::App& app, const std::string& name, const std::string& description) {
  const std::function<bool(CLI::App*)> all = [](CLI::App*) { return true; };
  for (CLI::App* sub : app.get_subcommands(all)) {
    if (sub->get_name() == name) return sub;
  }
  CLI::App* sub = app.add_subcommand(name, description);
  sub->require_subcommand(1);
  sub->fallthrough();
  return sub;
}

void add_dane(CLI::App& app, Ctl& ctl) {
  CLI::App* dane = group(app, "dane", "DANE (RFC 7672) checks, offline");
  auto args = std::make_shared<offline::DaneVerifyArgs>();
  CLI::App* verify = dane->add_subcommand(
      "verify",
      "Verify a certificate chain (PEM, leaf first, then intermediates, optionally the trust anchor) against "
      "TLSA records for an MX host, as the gateway's outbound DANE verification does (RFC 7672): usages 0/1 "
      "are unusable; DANE-EE (3) matches the leaf without name or date checks; DANE-TA (2) needs a valid chain "
      "to the matched CA and the host name (or a --name) in the leaf, no partial wildcards.");
  verify->add_option("--host", args->host, "MX host name (the TLSA owner's host; first reference identifier)")->required();
  verify->add_option("--tlsa", args->tlsa, "TLSA record \"USAGE SELECTOR MTYPE HEX\" (repeatable)")->required();
  verify->add_option("--chain", args->chain_file, "PEM certificate chain, leaf first")->required();
  verify->add_option("--name", args->names, "Extra reference identifier for DANE-TA, e.g. the TLSA base domain (repeatable)");
  verify->footer(
      "Exit: 0 verified, 1 unusable (no usable record) or failed, 2 bad arguments or unreadable chain.\n"
      "--json: {\"result\": \"verified\"|\"unusable\"|\"failed\", \"reason\" (not verified), \"host\", \"names\",\n"
      "  \"chain_file\", \"match\": {\"usage\", \"usage_name\", \"selector\", \"selector_name\", \"mtype\",\n"
      "  \"mtype_name\", \"depth\", \"record\", \"certificate\"} | null, \"x509_error\": {\"code\", \"message\",\n"
      "  \"depth\"} | null, \"records\": [{\"record\", \"usable\", \"reason\"}], \"chain\": [{\"depth\", \"subject\",\n"
      "  \"issuer\", \"not_before\", \"not_after\", \"dns_names\"}]}");
  verify->callback([&ctl, args] { run(ctl, [&] { return offline::run_dane_verify(*args); }); });
}

void add_sts(CLI::App& app, Ctl& ctl) {
  CLI::App* sts = group(app, "sts", "MTA-STS (RFC 8461) checks, offline, with the gateway's strict parsers");

  auto file = std::make_shared<std::string>();
  CLI::App* parse = sts->add_subcommand("parse", "Validate an MTA-STS policy file (mta-sts.txt) and print the policy");
  parse->add_option("FILE", *file, "The policy file")->required();
  parse->footer(
      "Exit: 0 valid, 1 invalid, 2 unreadable file.\n"
      "--json: {\"file\", \"valid\": true, \"policy\": {\"version\", \"mode\", \"max_age\", \"mx\": [...], \"extensions\"}}\n"
      "     or {\"file\", \"valid\": false, \"error\": {\"line\" (0: not tied to a line), \"message\"}}");
  parse->callback([&ctl, file] { run(ctl, [&] { return offline::run_sts_parse(*file); }); });

  auto pattern = std::make_shared<std::string>();
  auto host = std::make_shared<std::string>();
  CLI::App* match = sts->add_subcommand("match", "Does an MTA-STS mx pattern (\"mx.example.com\", \"*.example.com\") match an MX host?");
  match->add_option("PATTERN", *pattern, "The mx pattern, as in a policy file")->required();
  match->add_option("HOST", *host, "The MX host name")->required();
  match->footer(
      "Exit: 0 match, 1 no match (also for an invalid pattern or host, with the reason).\n"
      "--json: {\"pattern\", \"host\", \"match\": bool, \"reason\" (invalid input, or why a wildcard does not cover)}");
  match->callback([&ctl, pattern, host] { run(ctl, [&] { return offline::run_sts_match(*pattern, *host); }); });

  auto records = std::make_shared<std::vector<std::string>>();
  CLI::App* txt = sts->add_subcommand(
      "txt", "Validate the _mta-sts TXT record (\"v=STSv1; id=20240101T000000;\"); several arguments are several records");
  txt->add_option("RECORD", *records, "The TXT record text, its strings joined")->required();
  txt->footer(
      "Exit: 0 valid, 1 invalid.\n"
      "--json: {\"valid\": bool, \"id\": \"...\" | null, \"error\" (invalid only)}");
  txt->callback([&ctl, records] { run(ctl, [&] { return offline::run_sts_txt(*records); }); });
}

void add_tlsa(CLI::App& app, Ctl& ctl) {
  CLI::App* tlsa = group(app, "tlsa", "TLSA records for the gateway's own MX host");
  auto args = std::make_shared<offline::TlsaGenerateArgs>();
  CLI::App* gen = tlsa->add_subcommand(
      "generate",
      "Print the TLSA records to publish for the gateway (3 1 1 per current certificate, 2 1 1 for the issuing "
      "CA, 3 1 1 for the next key or certificate) in zone-file form, with key-rollover guidance. Without --cert "
      "the certificates of the configuration's inbound TLS listeners are used; without --mx its hostname.");
  gen->add_option("--cert", args->cert_files, "Current certificate chain, PEM, leaf first (repeatable)");
  gen->add_option("--chain", args->chain_file, "The issuing CA certificate (PEM) when --cert carries only the leaf");
  gen->add_option("--next-cert", args->next_cert_file, "The certificate that will replace the current one (PEM)");
  gen->add_option("--next-key", args->next_key_file, "The next private key (or public key), PEM: pre-publish its 3 1 1");
  gen->add_option("--mx", args->mx, "The MX host name (default: the configuration's hostname)");
  gen->add_option("--port", args->port, "The SMTP port of the TLSA owner name _PORT._tcp.MX")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  gen->footer(
      "Exit: 0 generated, 2 bad arguments, unreadable or inconsistent input (e.g. a chain whose CA did not\n"
      "issue the leaf), or an unusable configuration.\n"
      "--json: {\"mx\", \"port\", \"owner\", \"records\": [{\"role\": \"current\"|\"issuer\"|\"next\"|\"next-issuer\",\n"
      "  \"usage\", \"selector\", \"mtype\", \"data\", \"rdata\", \"rr\", \"source\", \"subject\", \"not_after\"}],\n"
      "  \"notes\": [...], \"guidance\": [...]}");
  gen->callback([&ctl, args] {
    run(ctl, [&] {
      args->config_file = ctl.config_file;
      return offline::run_tlsa_generate(*args);
    });
  });
}

void add_config(CLI::App& app, Ctl& ctl) {
  CLI::App* cfg = group(app, "config", "The gateway's configuration");
  auto file = std::make_shared<std::string>();
  CLI::App* validate = cfg->add_subcommand(
      "validate", "Load and validate a configuration file as the daemons do (default: the --config file)");
  validate->add_option("FILE", *file, "The configuration file");
  validate->footer(
      "Exit: 0 valid, 1 invalid or unreadable (every error as file:line:column: message).\n"
      "--json: {\"file\", \"valid\": bool, \"errors\": [{\"file\", \"line\", \"column\", \"message\"}]}");
  validate->callback([&ctl, file] {
    run(ctl, [&] { return offline::run_config_validate(file->empty() ? ctl.config_file : *file); });
  });
}

}  // namespace

void add_offline_commands(CLI::App& app, Ctl& ctl) {
  add_dane(app, ctl);
  add_sts(app, ctl);
  add_tlsa(app, ctl);
  add_config(app, ctl);
}

}  // namespace mxedge::ctl
