"""Policy compilation (controlplane/policy_compiler, through mxedge-resolve --policy) against the lab:
the signed lab DNS with every DANE case and the MTA-STS policy host (nginx, lab CA). Each connector
mode against each destination state, resolved for real, in one process per mode set.
"""

from __future__ import annotations

import pytest

from lab import resolve

DOMAINS = [
    "dane-ok.test", "no-tlsa.test", "insecure.test", "ds-mismatch.test", "bad-sig.test", "expired.test",
    "tlsa-servfail.test", "cname-insecure.test", "cname-secure.test", "unusable-tlsa.test", "null-mx.test",
    "nosuch.test", "nomx.test", "mx-insecure-host.test", "insecure-mx.test",
    "valid.sts.test", "testing.sts.test", "notxt.sts.test", "nomx.sts.test", "wildcard.sts.test",
]


@pytest.fixture(scope="module", autouse=True)
def _binary():
    reason = resolve.missing_binary_reason()
    if reason:
        pytest.skip(reason)


def compile_policies(dns_lab, server, *modes: str) -> resolve.ResolveRun:
    extra = ["--policy", "--ca-file", server.ca_file, "--fetch-timeout-ms", "3000", "--timeout-ms", "3000", *modes]
    return resolve.run(dns_lab, DOMAINS, extra=extra, timeout=120)


@pytest.fixture(scope="module")
def default_modes(dns_lab, mta_sts_server):
    return compile_policies(dns_lab, mta_sts_server)


@pytest.fixture(scope="module")
def dane_mandatory(dns_lab, mta_sts_server):
    return compile_policies(dns_lab, mta_sts_server, "--dane-mode", "mandatory")


@pytest.fixture(scope="module")
def sts_mandatory(dns_lab, mta_sts_server):
    return compile_policies(dns_lab, mta_sts_server, "--mta-sts-mode", "mandatory")


@pytest.fixture(scope="module")
def dane_none(dns_lab, mta_sts_server):
    return compile_policies(dns_lab, mta_sts_server, "--dane-mode", "none", "--mta-sts-mode", "none", "--no-cleartext")


def hosts(p: dict) -> dict[str, dict]:
    return {h["name"]: h for h in p["hosts"]}


def test_every_domain_is_compiled_once(default_modes):
    assert sorted(r["domain"] for r in default_modes.results) == sorted(DOMAINS)
    for r in default_modes.results:
        assert r["connector"] == "default" and r["dane_mode"] == "opportunistic" and r["mta_sts_mode"] == "opportunistic"


def test_dane_secure_destination_requires_dane_with_its_tlsa(default_modes, dns_lab):
    p = default_modes.by_name("dane-ok.test")
    assert p["verdict"] == "deliver" and p["dnssec"] == "secure"
    h = hosts(p)
    assert [x["name"] for x in p["hosts"]] == ["mx1.dane-ok.test", "mx2.dane-ok.test", "mx3.dane-ok.test"]
    assert all(x["tls"] == "dane" for x in p["hosts"])
    for name in h:
        want = [f"{u} {s} {m} {d}" for u, s, m, d in dns_lab.tlsa(name)]
        assert h[name]["tlsa"] == want
        assert h[name]["dane_names"] == [name]


def test_cname_expanded_tlsa_base_and_fallback_to_the_original_name(default_modes):
    h = hosts(default_modes.by_name("cname-secure.test"))
    assert h["mx.cname-secure.test"]["tls"] == "dane"
    assert h["mx.cname-secure.test"]["dane_names"] == ["mx1.dane-ok.test", "mx.cname-secure.test"]
    # The expanded name (mx.no-tlsa.test) securely denies TLSA, so the original name's TLSA applies
    # (RFC 7672 §2.2.2), and it is the base domain.
    assert h["alt.cname-secure.test"]["tls"] == "dane"
    assert h["alt.cname-secure.test"]["dane_names"] == ["alt.cname-secure.test"]


@pytest.mark.parametrize("domain", ["no-tlsa.test", "insecure.test", "cname-insecure.test", "mx-insecure-host.test",
                                    "notxt.sts.test", "nomx.sts.test"])
def test_no_policy_means_opportunistic_tls_with_cleartext_fallback(default_modes, domain):
    p = default_modes.by_name(domain)
    assert p["verdict"] == "deliver", p
    assert {x["tls"] for x in p["hosts"]} == {"may"}
    assert all(x["cleartext_allowed"] for x in p["hosts"])


def test_insecure_mx_pointing_at_a_dane_host_still_uses_its_tlsa(default_modes):
    p = default_modes.by_name("insecure-mx.test")
    assert p["dnssec"] == "insecure"
    assert hosts(p)["mx1.dane-ok.test"]["tls"] == "dane"


@pytest.mark.parametrize("domain", ["ds-mismatch.test", "bad-sig.test", "expired.test"])
def test_bogus_destinations_defer(default_modes, domain):
    p = default_modes.by_name(domain)
    assert p["verdict"] == "defer" and p["result_type"] == "dnssec-invalid" and p["hosts"] == []
    assert p["enhanced_status"] == "4.7.5"


def test_tlsa_servfail_defers_instead_of_downgrading(default_modes):
    p = default_modes.by_name("tlsa-servfail.test")
    assert p["verdict"] == "defer" and p["hosts"] == []
    assert "DANE cannot be decided" in p["reason"]


def test_unusable_tlsa_requires_encryption(default_modes):
    p = default_modes.by_name("unusable-tlsa.test")
    assert p["verdict"] == "deliver" and p["hosts"][0]["tls"] == "encrypt"


def test_null_mx_and_nxdomain_bounce(default_modes):
    assert default_modes.by_name("null-mx.test")["verdict"] == "bounce"
    assert default_modes.by_name("null-mx.test")["enhanced_status"] == "5.1.10"
    assert default_modes.by_name("nosuch.test")["enhanced_status"] == "5.1.2"


def test_implicit_mx_host_uses_its_tlsa(default_modes):
    p = default_modes.by_name("nomx.test")
    assert [x["name"] for x in p["hosts"]] == ["nomx.test"] and p["hosts"][0]["tls"] == "dane"


def test_sts_enforce_requires_webpki_for_listed_hosts(default_modes):
    p = default_modes.by_name("valid.sts.test")
    assert p["mta_sts"] == "enforce" and p["mta_sts_id"] == "valid1"
    assert p["hosts"][0]["name"] == "mx.valid.sts.test" and p["hosts"][0]["tls"] == "webpki"
    w = default_modes.by_name("wildcard.sts.test")
    assert w["hosts"][0]["name"] == "mx.wildcard.sts.test" and w["hosts"][0]["tls"] == "webpki"


def test_sts_testing_delivers_and_marks_hosts_for_reporting(default_modes):
    p = default_modes.by_name("testing.sts.test")
    assert p["mta_sts"] == "testing"
    assert p["hosts"][0]["tls"] == "may" and p["hosts"][0]["mta_sts_testing"] is True


def test_dane_mandatory_defers_everything_without_usable_tlsa(dane_mandatory):
    assert dane_mandatory.by_name("dane-ok.test")["verdict"] == "deliver"
    for domain in ["no-tlsa.test", "insecure.test", "unusable-tlsa.test", "valid.sts.test"]:
        p = dane_mandatory.by_name(domain)
        assert p["verdict"] == "defer" and p["result_type"] == "dane-required", (domain, p)
    # An insecure MX pointing at a DANE host: the MX could be forged, so the destination is not
    # DANE-protected.
    redirected = dane_mandatory.by_name("insecure-mx.test")
    assert redirected["verdict"] == "defer" and "MX records are not DNSSEC-secure" in redirected["reason"]


def test_sts_mandatory_needs_an_enforce_policy(sts_mandatory):
    assert sts_mandatory.by_name("valid.sts.test")["verdict"] == "deliver"
    assert "mode testing, not enforce" in sts_mandatory.by_name("testing.sts.test")["reason"]
    assert "publishes no MTA-STS policy" in sts_mandatory.by_name("notxt.sts.test")["reason"]
    fetch = sts_mandatory.by_name("nomx.sts.test")
    assert fetch["verdict"] == "defer" and fetch["result_type"] == "sts-policy-fetch-error"
    assert sts_mandatory.by_name("dane-ok.test")["verdict"] == "defer"  # DANE alone does not satisfy it


def test_modes_none_ignore_tlsa_and_sts_but_no_cleartext_requires_tls(dane_none):
    p = dane_none.by_name("tlsa-servfail.test")
    assert p["verdict"] == "deliver" and p["hosts"][0]["tls"] == "encrypt"
    v = dane_none.by_name("valid.sts.test")
    assert v["mta_sts"] == "ignored" and v["hosts"][0]["tls"] == "encrypt"
    assert dane_none.by_name("dane-ok.test")["hosts"][0]["tls"] == "encrypt"
    # A forged MX is never used, whatever the modes.
    assert dane_none.by_name("bad-sig.test")["verdict"] == "defer"


def test_connector_from_the_gateway_config(dns_lab, mta_sts_server, tmp_path):
    cfg = tmp_path / "mxedge.yaml"
    cfg.write_text(
        "listeners: [{address: \"127.0.0.1:2525\", tls_mode: none}]\n"
        "accepted_domains: [lab.test]\nnext_hop: {host: 127.0.0.1, port: 2600}\n"
        "spool: {directory: /tmp/mxedge-policy-spool}\n"
        f"resolver: {{trust_anchor_file: {dns_lab.trust_anchor_file}}}\n"
        "connectors:\n"
        "  - {name: partners, domains: [.dane-ok.test, dane-ok.test], dane_mode: mandatory}\n"
        "  - {name: everything, domains: [\"*\"], mta_sts_mode: none, allow_cleartext: false}\n")
    run = resolve.run(dns_lab, ["dane-ok.test", "valid.sts.test"],
                      extra=["--policy", "--config", str(cfg), "--ca-file", mta_sts_server.ca_file])
    d = run.by_name("dane-ok.test")
    assert d["connector"] == "partners" and d["dane_mode"] == "mandatory" and d["verdict"] == "deliver"
    v = run.by_name("valid.sts.test")
    assert v["connector"] == "everything" and v["mta_sts"] == "ignored" and v["hosts"][0]["tls"] == "encrypt"
