// Unit tests for YAML config loading, defaults and validation (policy/config_loader.h).
#include "policy/config_loader.h"
#include "policy/connectors.h"

#include <gtest/gtest.h>

namespace mxedge::config {
namespace {

const char* kMinimal = R"(hostname: mx.lab.test
listeners:
  - name: smtp
    address: "127.0.0.1:2525"
    tls_mode: none
accepted_domains: [Lab.Test.]
next_hop: {host: 127.0.0.1, port: 2600}
spool: {directory: /tmp/mxedge-spool}
workers: {cores: [0]}
)";

TEST(ConfigLoader, MinimalConfigGetsDefaults) {
  auto r = load_config_text(kMinimal, "t.yaml");
  ASSERT_TRUE(r.ok()) << r.error_text();
  const auto& c = *r.config;
  EXPECT_EQ(c.accepted_domains(0), "lab.test");
  EXPECT_EQ(c.limits().command_line_length(), 2048u);
  EXPECT_EQ(c.limits().text_line_length(), 1000u);
  EXPECT_EQ(c.limits().message_size(), 50ULL << 20);
  EXPECT_EQ(c.limits().command_timeout().seconds(), 300);
  EXPECT_EQ(c.next_hop().tls(), v1::NEXT_HOP_TLS_OPPORTUNISTIC);
  EXPECT_EQ(c.listeners(0).tls_mode(), v1::TLS_MODE_NONE);
  EXPECT_EQ(c.spool().memory_body_limit(), 64u << 10);
}

TEST(ConfigLoader, SizesDurationsAndEnums) {
  std::string y = std::string(kMinimal) + "limits: {message_size: 10MiB, command_timeout: 5m, data_timeout: 1m30s, greeting_delay: 250ms}\n";
  auto r = load_config_text(y, "t.yaml");
  ASSERT_TRUE(r.ok()) << r.error_text();
  EXPECT_EQ(r.config->limits().message_size(), 10u << 20);
  EXPECT_EQ(r.config->limits().command_timeout().seconds(), 300);
  EXPECT_EQ(r.config->limits().data_timeout().seconds(), 90);
  EXPECT_EQ(r.config->limits().greeting_delay().nanos(), 250000000);
}

TEST(ConfigLoader, UnknownKeyReportsFileLineAndChoices) {
  std::string y = std::string(kMinimal) + "limits:\n  message_sise: 10\n";
  auto r = load_config_text(y, "gw.yaml");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 11);
  EXPECT_NE(r.errors[0].to_string().find("gw.yaml:11:3: unknown key 'message_sise' in limits"), std::string::npos) << r.errors[0].to_string();
  EXPECT_NE(r.errors[0].message.find("message_size"), std::string::npos);
}

TEST(ConfigLoader, BadValuesAreReportedWithTheirLine) {
  const char* y = R"(listeners:
  - address: "127.0.0.1:99999"
    tls_mode: sometimes
accepted_domains: [lab.test]
next_hop: {host: 127.0.0.1}
spool: {directory: relative/path}
limits: {message_size: lots, command_timeout: soon}
)";
  auto r = load_config_text(y, "bad.yaml");
  ASSERT_FALSE(r.ok());
  std::string all = r.error_text();
  EXPECT_NE(all.find("bad.yaml:3:15: 'listeners[0].tls_mode': invalid value 'sometimes' (expected one of: starttls, implicit, none)"), std::string::npos) << all;
  EXPECT_NE(all.find("bad.yaml:7:"), std::string::npos) << all;
  EXPECT_NE(all.find("message_size"), std::string::npos);
  EXPECT_NE(all.find("invalid duration 'soon'"), std::string::npos);
}

TEST(ConfigLoader, SemanticErrorsPointAtTheSetting) {
  const char* y = R"(listeners:
  - address: "127.0.0.1:99999"
    tls_mode: starttls
accepted_domains: [bad_domain]
next_hop: {port: 25}
spool: {directory: relative/path}
limits: {command_line_length: 100}
workers: {cores: [0, 0, 4096]}
)";
  auto r = load_config_text(y, "sem.yaml");
  ASSERT_FALSE(r.ok());
  std::string all = r.error_text();
  EXPECT_NE(all.find("sem.yaml:2:14: invalid listen address '127.0.0.1:99999'"), std::string::npos) << all;
  EXPECT_NE(all.find("offers TLS but has no certificates"), std::string::npos);
  EXPECT_NE(all.find("sem.yaml:4:20: invalid domain name 'bad_domain'"), std::string::npos) << all;
  EXPECT_NE(all.find("next_hop.host is required"), std::string::npos);
  EXPECT_NE(all.find("spool.directory must be an absolute path"), std::string::npos);
  EXPECT_NE(all.find("at least 512"), std::string::npos);
  EXPECT_NE(all.find("CPU 0 is listed twice"), std::string::npos);
  EXPECT_NE(all.find("CPU 4096 does not exist"), std::string::npos);
}

TEST(ConfigLoader, TypeMismatchesAndSyntaxErrors) {
  auto r1 = load_config_text("listeners: {a: 1}\n", "x.yaml");
  ASSERT_FALSE(r1.ok());
  EXPECT_NE(r1.error_text().find("must be a list"), std::string::npos);
  auto r2 = load_config_text("listeners: [\n", "x.yaml");
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.error_text().find("YAML syntax error"), std::string::npos);
  auto r3 = load_config_text("", "x.yaml");
  ASSERT_FALSE(r3.ok());
  auto r4 = load_config_text(std::string(kMinimal) + "hostname: [a]\n", "x.yaml");
  ASSERT_FALSE(r4.ok());
  auto r5 = load_config_text(std::string(kMinimal) + "workers: {cores: [0]}\n", "x.yaml");
  ASSERT_FALSE(r5.ok());
  EXPECT_NE(r5.error_text().find("duplicate key 'workers'"), std::string::npos) << r5.error_text();
}

// Each daemon checks only the files it opens itself: the control plane (its own user) must start
// although it cannot read the data plane's private keys, and the reverse.
TEST(ConfigLoader, EachPlaneChecksOnlyTheFilesItReads) {
  std::string y = std::string(kMinimal) +
                  "mta_sts_publish:\n  listen: \"127.0.0.1:8443\"\n"
                  "  certificates: [{cert_file: /nonexistent/sts.pem, key_file: /nonexistent/sts.key}]\n";
  // A TLS listener whose key no one here can read.
  const std::string from = "    tls_mode: none\n";
  y.replace(y.find(from), from.size(),
            "    tls_mode: starttls\n    certificates: [{cert_file: /nonexistent/gw.pem, key_file: /nonexistent/gw.key}]\n");
  auto all = load_config_text(y, "t.yaml");
  ASSERT_FALSE(all.ok());
  EXPECT_NE(all.error_text().find("cannot read key file /nonexistent/gw.key"), std::string::npos) << all.error_text();
  EXPECT_NE(all.error_text().find("cannot read key file /nonexistent/sts.key"), std::string::npos) << all.error_text();

  auto dp = load_config_text(y, "t.yaml", kFilesDataPlane);
  ASSERT_FALSE(dp.ok());
  EXPECT_NE(dp.error_text().find("/nonexistent/gw.key"), std::string::npos);
  EXPECT_EQ(dp.error_text().find("/nonexistent/sts"), std::string::npos) << dp.error_text();

  auto cp = load_config_text(y, "t.yaml", kFilesControlPlane);
  ASSERT_FALSE(cp.ok());
  EXPECT_NE(cp.error_text().find("/nonexistent/sts.key"), std::string::npos);
  EXPECT_EQ(cp.error_text().find("/nonexistent/gw"), std::string::npos) << cp.error_text();

  auto none = load_config_text(y, "t.yaml", kFilesNone);
  EXPECT_TRUE(none.ok()) << none.error_text();
  // Required settings are required whoever reads: an empty key_file is an error for every plane.
  std::string empty = y;
  empty.replace(empty.find("key_file: /nonexistent/gw.key"), 29, "key_file: \"\"");
  auto e = load_config_text(empty, "t.yaml", kFilesNone);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error_text().find("key_file is required"), std::string::npos) << e.error_text();
}

TEST(ConfigLoader, MissingFile) {
  auto r = load_config_file("/nonexistent/mxedge.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error_text().find("cannot open"), std::string::npos);
}

TEST(ParseHelpers, SizesAndDurations) {
  EXPECT_EQ(*parse_byte_size("64KiB"), 65536u);
  EXPECT_EQ(*parse_byte_size("10MB"), 10000000u);
  EXPECT_EQ(*parse_byte_size("12"), 12u);
  EXPECT_FALSE(parse_byte_size("12 parsecs"));
  EXPECT_FALSE(parse_byte_size("-1"));
  EXPECT_FALSE(parse_byte_size("99999999999999999999GiB"));
  EXPECT_EQ(*parse_duration_ms("1h2m3s"), 3723000);
  EXPECT_EQ(*parse_duration_ms("15"), 15000);
  EXPECT_FALSE(parse_duration_ms("1m30"));
  EXPECT_FALSE(parse_duration_ms(""));
  EXPECT_FALSE(parse_duration_ms("5 minutes"));
}


}  // namespace
}  // namespace mxedge::config

namespace mxedge::config {
namespace {

// The documented example must stay loadable: its only complaints may be about files that exist only on
// an installed appliance (certificates, CA) and CPUs this machine may lack.
TEST(ConfigLoader, DocumentedExampleIsValidApartFromInstalledFiles) {
  auto r = load_config_file(std::string(MXEDGE_SOURCE_DIR) + "/policy/examples/mxedge.yaml");
  for (const auto& e : r.errors) {
    bool expected = e.message.find("cannot read") != std::string::npos || e.message.find("does not exist") != std::string::npos;
    EXPECT_TRUE(expected) << e.to_string();
  }
}


}  // namespace
}  // namespace mxedge::config

namespace mxedge::config {
namespace {

TEST(ConfigLoader, XdpSectionDefaultsAndValidation) {
  auto on = load_config_text(std::string(kMinimal) + "xdp: {interfaces: [eth0]}\n", "x.yaml");
  ASSERT_TRUE(on.ok()) << on.error_text();
  const auto& x = on.config->xdp();
  EXPECT_EQ(x.smtp_ports_size(), 3);
  EXPECT_EQ(x.syn_rate(), 20u);
  EXPECT_EQ(x.syn_burst(), 40u);
  EXPECT_TRUE(x.steering());
  EXPECT_EQ(x.pin_dir(), "/sys/fs/bpf/mxedge");
  EXPECT_EQ(x.attach_mode(), v1::XDP_ATTACH_MODE_NATIVE_OR_GENERIC);

  // syn_rate 0 (no limit) and steering false are real settings, distinct from "not given".
  auto explicit_off = load_config_text(std::string(kMinimal) + "xdp: {interfaces: [eth0], syn_rate: 0, steering: false}\n", "x.yaml");
  ASSERT_TRUE(explicit_off.ok()) << explicit_off.error_text();
  EXPECT_EQ(explicit_off.config->xdp().syn_rate(), 0u);
  EXPECT_FALSE(explicit_off.config->xdp().steering());
  // The new-source budget: on by default with the per-source limit, off without it.
  EXPECT_EQ(x.new_source_syn_rate(), 1000u);
  EXPECT_EQ(x.new_source_syn_burst(), 2000u);
  EXPECT_EQ(explicit_off.config->xdp().new_source_syn_rate(), 0u);
  auto ns = load_config_text(std::string(kMinimal) + "xdp: {interfaces: [eth0], new_source_syn_rate: 50}\n", "x.yaml");
  ASSERT_TRUE(ns.ok()) << ns.error_text();
  EXPECT_EQ(ns.config->xdp().new_source_syn_burst(), 100u);
  auto ns_bad = load_config_text(std::string(kMinimal) +
                                     "xdp:\n  interfaces: [eth0]\n  syn_rate: 0\n  new_source_syn_rate: 50\n"
                                     "  new_source_syn_burst: 0\n",
                                 "x.yaml");
  ASSERT_FALSE(ns_bad.ok());
  EXPECT_NE(ns_bad.error_text().find("new_source_syn_burst must be at least 1"), std::string::npos) << ns_bad.error_text();
  EXPECT_NE(ns_bad.error_text().find("needs the per-source limit (syn_rate > 0)"), std::string::npos) << ns_bad.error_text();

  auto bad = load_config_text(std::string(kMinimal) +
                                  "xdp:\n  interfaces: [\"bad/name\"]\n  smtp_ports: [25, 25, 70000]\n  attach_mode: turbo\n",
                              "x.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error_text().find("x.yaml:13:"), std::string::npos) << bad.error_text();
  EXPECT_NE(bad.error_text().find("invalid value 'turbo' (expected one of: native_or_generic, native, generic)"), std::string::npos)
      << bad.error_text();
  auto bad2 = load_config_text(std::string(kMinimal) + "xdp:\n  interfaces: [\"bad/name\"]\n  smtp_ports: [25, 25, 70000]\n", "x.yaml");
  ASSERT_FALSE(bad2.ok());
  std::string all = bad2.error_text();
  EXPECT_NE(all.find("invalid interface name 'bad/name'"), std::string::npos) << all;
  EXPECT_NE(all.find("port 25 is listed twice"), std::string::npos) << all;
  EXPECT_NE(all.find("port must be 1-65535"), std::string::npos) << all;
}


}  // namespace
}  // namespace mxedge::config

namespace mxedge::config {
namespace {

TEST(ConfigLoader, ResolverSectionDefaultsAndValidation) {
  auto def = load_config_text(kMinimal, "r.yaml");
  ASSERT_TRUE(def.ok()) << def.error_text();
  const auto& r = def.config->resolver();
  EXPECT_EQ(r.trust_anchor_file(), "/usr/share/dns/root.key");
  EXPECT_TRUE(r.root_hints_file().empty());
  EXPECT_EQ(r.query_timeout().seconds(), 10);
  EXPECT_EQ(r.retries(), 3u);
  EXPECT_EQ(r.edns_buffer_size(), 1232u);
  EXPECT_EQ(r.cache_size(), 32u << 20);
  EXPECT_EQ(r.max_ttl().seconds(), 86400);
  EXPECT_EQ(r.max_negative_ttl().seconds(), 3600);
  EXPECT_EQ(r.bogus_ttl().seconds(), 60);
  EXPECT_EQ(r.failure_ttl().seconds(), 5);
  EXPECT_EQ(r.max_mx_hosts(), 10u);

  auto good = load_config_text(std::string(kMinimal) +
                                   "resolver: {forwarders: [\"127.0.0.53\", \"::1@5353\"], query_timeout: 2s, cache_size: 1MiB}\n",
                               "r.yaml");
  ASSERT_TRUE(good.ok()) << good.error_text();
  EXPECT_EQ(good.config->resolver().forwarders_size(), 2);
  EXPECT_EQ(good.config->resolver().cache_size(), 1u << 20);

  auto bad = load_config_text(std::string(kMinimal) +
                                  "resolver:\n  trust_anchor_file: root.key\n  forwarders: [\"dns.example\", \"192.0.2.1@99999\"]\n"
                                  "  query_timeout: 10ms\n  retries: 11\n  edns_buffer_size: 100\n",
                              "r.yaml");
  ASSERT_FALSE(bad.ok());
  const std::string all = bad.error_text();
  EXPECT_NE(all.find("r.yaml:11:"), std::string::npos) << all;
  EXPECT_NE(all.find("trust_anchor_file must be an absolute path"), std::string::npos) << all;
  EXPECT_NE(all.find("invalid forwarder 'dns.example'"), std::string::npos) << all;
  EXPECT_NE(all.find("invalid forwarder '192.0.2.1@99999'"), std::string::npos) << all;
  EXPECT_NE(all.find("query_timeout must be at least 100ms"), std::string::npos) << all;
  EXPECT_NE(all.find("retries must be between 1 and 10"), std::string::npos) << all;
  EXPECT_NE(all.find("edns_buffer_size must be between 512 and 4096"), std::string::npos) << all;
}


}  // namespace
}  // namespace mxedge::config

namespace mxedge::config {
namespace {

TEST(ConfigLoader, MtaStsSectionDefaultsAndValidation) {
  auto def = load_config_text(kMinimal, "m.yaml");
  ASSERT_TRUE(def.ok()) << def.error_text();
  const auto& m = def.config->mta_sts();
  EXPECT_EQ(m.cache_file(), "/var/lib/mxedge/mta-sts.db");
  EXPECT_TRUE(m.ca_file().empty());
  EXPECT_EQ(m.connect_timeout().seconds(), 10);
  EXPECT_EQ(m.fetch_timeout().seconds(), 30);
  EXPECT_EQ(m.txt_recheck().seconds(), 300);
  EXPECT_EQ(m.backoff_min().seconds(), 300);
  EXPECT_EQ(m.backoff_max().seconds(), 3600);
  EXPECT_EQ(m.evict_unused().seconds(), 30 * 86400);

  auto bad = load_config_text(std::string(kMinimal) +
                                  "mta_sts:\n  cache_file: sts.db\n  proxy: \"ftp://proxy\"\n  backoff_min: 1m\n"
                                  "  connect_timeout: 20s\n  fetch_timeout: 5s\n",
                              "m.yaml");
  ASSERT_FALSE(bad.ok());
  const std::string all = bad.error_text();
  EXPECT_NE(all.find("cache_file must be an absolute path"), std::string::npos) << all;
  EXPECT_NE(all.find("proxy must be an http://"), std::string::npos) << all;
  EXPECT_NE(all.find("backoff_min must be at least 5m"), std::string::npos) << all;
  EXPECT_NE(all.find("fetch_timeout must not be shorter than connect_timeout"), std::string::npos) << all;
}


TEST(ConfigLoader, ConnectorsDefaultsValidationAndSelection) {
  auto def = load_config_text(std::string(kMinimal) +
                                  "connectors:\n"
                                  "  - {name: partners, domains: [Partner.Example, .partner.example], dane_mode: mandatory}\n"
                                  "  - {name: relay, domains: [\"*\"], smart_host: \"relay.example.net:587\", mta_sts_mode: none,\n"
                                  "     min_tls_version: TLSv1.3, allow_cleartext: false}\n"
                                  "  - {name: banks, domains: [bank.example], mta_sts_mode: mandatory}\n",
                              "c.yaml");
  ASSERT_TRUE(def.ok()) << def.error_text();
  const auto& c = *def.config;
  ASSERT_EQ(c.connectors_size(), 3);
  EXPECT_EQ(c.connectors(0).domains(0), "partner.example");  // lower-cased
  EXPECT_EQ(c.connectors(0).dane_mode(), v1::CONNECTOR_MODE_MANDATORY);
  EXPECT_EQ(c.connectors(0).mta_sts_mode(), v1::CONNECTOR_MODE_OPPORTUNISTIC);
  EXPECT_EQ(c.connectors(0).min_tls_version(), "TLSv1.2");
  EXPECT_TRUE(c.connectors(0).allow_cleartext());
  EXPECT_FALSE(c.connectors(1).allow_cleartext());
  EXPECT_EQ(select_connector(c, "partner.example").name(), "partners");
  EXPECT_EQ(select_connector(c, "mx.partner.example").name(), "partners");   // .suffix
  EXPECT_EQ(select_connector(c, "xpartner.example").name(), "relay");        // not a subdomain
  EXPECT_EQ(select_connector(c, "bank.example").name(), "banks");
  EXPECT_EQ(select_connector(c, "sub.bank.example").name(), "relay");
  EXPECT_EQ(select_connector(c, "other.example").name(), "relay");
  auto none = load_config_text(kMinimal, "m.yaml");
  ASSERT_TRUE(none.ok());
  const auto& d = select_connector(*none.config, "any.example");
  EXPECT_EQ(d.name(), "default");
  EXPECT_EQ(d.dane_mode(), v1::CONNECTOR_MODE_OPPORTUNISTIC);
  EXPECT_EQ(d.mta_sts_mode(), v1::CONNECTOR_MODE_OPPORTUNISTIC);
  EXPECT_TRUE(d.allow_cleartext());

  auto bad = load_config_text(std::string(kMinimal) +
                                  "connectors:\n"
                                  "  - {name: a, domains: [\"exa mple.com\", \"*.example.com\"]}\n"
                                  "  - {name: a, domains: []}\n"
                                  "  - {name: c, domains: [x.example], min_tls_version: TLSv1.1, smart_host: \"bad host\"}\n"
                                  "  - {name: d, domains: [X.example], smart_host: relay.example, mta_sts_mode: mandatory}\n",
                              "c.yaml");
  ASSERT_FALSE(bad.ok());
  const std::string all = bad.error_text();
  EXPECT_NE(all.find("invalid domain 'exa mple.com'"), std::string::npos) << all;
  EXPECT_NE(all.find("invalid domain '*.example.com' (expected example.com, .example.com or *)"), std::string::npos) << all;
  EXPECT_NE(all.find("connector name 'a' is used twice"), std::string::npos) << all;
  EXPECT_NE(all.find("connector 'a' needs at least one domain"), std::string::npos) << all;
  EXPECT_NE(all.find("min_tls_version must be TLSv1.2 or TLSv1.3"), std::string::npos) << all;
  EXPECT_NE(all.find("invalid smart_host 'bad host'"), std::string::npos) << all;
  EXPECT_NE(all.find("domain 'x.example' is served by two connectors"), std::string::npos) << all;
  EXPECT_NE(all.find("mta_sts_mode mandatory needs delivery by MX"), std::string::npos) << all;
  auto badmode = load_config_text(std::string(kMinimal) + "connectors:\n  - {domains: [\"*\"], dane_mode: strict}\n", "c.yaml");
  ASSERT_FALSE(badmode.ok());
  EXPECT_NE(badmode.error_text().find("strict"), std::string::npos) << badmode.error_text();
}

TEST(ConfigLoader, OutboundAndPrivateResolverSettings) {
  auto def = load_config_text(kMinimal, "m.yaml");
  ASSERT_TRUE(def.ok()) << def.error_text();
  const auto& o = def.config->outbound();
  EXPECT_FALSE(o.enabled());
  EXPECT_EQ(o.policy_socket(), "/run/mxedge/policy.sock");
  EXPECT_EQ(o.policy_state_file(), "/var/lib/mxedge/policy.state");
  EXPECT_EQ(o.policy_idle().seconds(), 3600);
  EXPECT_EQ(o.sts_maintenance().seconds(), 60);
  EXPECT_FALSE(def.config->resolver().has_ipv6_transport());

  auto good = load_config_text(std::string(kMinimal) +
                                   "resolver:\n  root_servers: [\"127.53.1.1\", \"::1@5353\"]\n  nodefault_zones: [test.]\n"
                                   "  ipv6_transport: false\noutbound: {enabled: true, policy_idle: 5s}\n",
                               "m.yaml");
  ASSERT_TRUE(good.ok()) << good.error_text();
  EXPECT_EQ(good.config->resolver().root_servers_size(), 2);
  EXPECT_FALSE(good.config->resolver().ipv6_transport());
  EXPECT_TRUE(good.config->outbound().enabled());

  auto bad = load_config_text(std::string(kMinimal) +
                                  "resolver:\n  root_servers: [\"ns.example\"]\n  nodefault_zones: [\"bad zone\"]\n"
                                  "outbound:\n  policy_socket: run/policy.sock\n  policy_state_file: state\n"
                                  "  policy_idle: 500ms\n  sts_maintenance: 10ms\n",
                              "m.yaml");
  ASSERT_FALSE(bad.ok());
  const std::string all = bad.error_text();
  for (const char* want : {"invalid root server 'ns.example'", "invalid zone 'bad zone'", "policy_socket must be an absolute path",
                           "policy_state_file must be an absolute path", "policy_idle must be at least 1s",
                           "sts_maintenance must be at least 1s"})
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  auto long_path = load_config_text(std::string(kMinimal) + "outbound: {policy_socket: /" + std::string(120, 'x') + "}\n", "m.yaml");
  ASSERT_FALSE(long_path.ok());
  EXPECT_NE(long_path.error_text().find("longer than a Unix socket path"), std::string::npos);
}

TEST(ConfigLoader, OutboundIntakeListenerRules) {
  const std::string base =
      "hostname: mx.lab.test\naccepted_domains: [lab.test]\nnext_hop: {host: 127.0.0.1, port: 2600}\n"
      "spool: {directory: /tmp/mxedge-spool}\nworkers: {cores: [0]}\n";
  auto bad = load_config_text(base +
                                  "listeners:\n"
                                  "  - {name: intake, address: \"127.0.0.1:2587\", tls_mode: none, role: outbound,\n"
                                  "     require_client_certificate: true, allowed_networks: [\"10.0.0.0/33\", \"nonsense\"]}\n"
                                  "  - {name: in, address: \"127.0.0.1:2526\", tls_mode: none, allowed_networks: [\"10.0.0.0/8\"]}\n",
                              "m.yaml");
  ASSERT_FALSE(bad.ok());
  const std::string all = bad.error_text();
  for (const char* want : {"is an outbound intake but outbound.enabled is false", "require_client_certificate needs client_ca_file",
                           "require_client_certificate needs tls_mode starttls or implicit", "invalid network '10.0.0.0/33'",
                           "invalid network 'nonsense'", "allowed_networks applies to outbound intake listeners only"})
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  auto none = load_config_text(base +
                                   "outbound: {enabled: true}\nlisteners:\n"
                                   "  - {name: intake, address: \"127.0.0.1:2587\", tls_mode: none, role: outbound}\n",
                               "m.yaml");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error_text().find("needs allowed_networks (never an open relay)"), std::string::npos) << none.error_text();
  auto good = load_config_text(base +
                                   "outbound: {enabled: true}\nlisteners:\n"
                                   "  - {name: intake, address: \"127.0.0.1:2587\", tls_mode: none, role: outbound,\n"
                                   "     allowed_networks: [\"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.1\"]}\n",
                               "m.yaml");
  ASSERT_TRUE(good.ok()) << good.error_text();
  EXPECT_EQ(good.config->listeners(0).role(), v1::LISTENER_ROLE_OUTBOUND);
}

TEST(ConfigLoader, DpdkSectionGetsDefaultsAndItsErrorsAreNamed) {
  auto ok = load_config_text(std::string(kMinimal) + "dpdk:\n  ports: [net_af_packet0]\n  eal_args: [--no-huge, --vdev, \"net_af_packet0,iface=veth0\"]\n", "d.yaml");
  ASSERT_TRUE(ok.ok()) << ok.error_text();
  EXPECT_EQ(ok.config->dpdk().tap_prefix(), "mxtap");
  EXPECT_EQ(ok.config->dpdk().mbufs(), 8191u);
  EXPECT_EQ(ok.config->dpdk().burst(), 32u);
  ASSERT_EQ(ok.config->dpdk().lcores_size(), 1);
  // The classifier settings are the xdp section's, with its defaults, although no interface is set.
  EXPECT_EQ(ok.config->xdp().smtp_ports_size(), 3);
  EXPECT_EQ(ok.config->xdp().syn_rate(), 20u);

  auto bad = load_config_text(std::string(kMinimal) +
                                  "dpdk:\n  ports: [p0, p0]\n  lcores: [0, 0]\n  burst: 999\n  eal_args: [-l, \"0\"]\n"
                                  "xdp:\n  interfaces: [eth0]\n",
                              "d.yaml");
  ASSERT_FALSE(bad.ok());
  const std::string all = bad.error_text();
  for (const char* want : {"fast paths are exclusive", "repeated port name 'p0'", "is listed twice", "burst must be 1-256",
                           "'-l' is set from dpdk.lcores"})
    EXPECT_NE(all.find(want), std::string::npos) << want << " not in:\n" << all;
}

}  // namespace
}  // namespace mxedge::config
