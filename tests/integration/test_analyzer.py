"""The connectivity analyzer (controlplane/analyzer, through `mxedge-resolve --check`) against the
delivery lab (lab/delivery.py): every `.dlv.test` case — DANE-EE / DANE-TA matches and mismatches,
MX fallback, MTA-STS enforce with a good and a wrong certificate, an unsigned destination, a
STARTTLS-stripping proxy with and without TLSA, a bogus MX answer — resolved from the signed lab DNS,
its MTA-STS policy fetched from the lab's nginx, and each MX probed live (Postfix receivers).

Each domain is checked once per module (in parallel); the tests read the JSON reports.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess

import pytest

from lab import gateway as gateway_mod
from lab import resolve

CASES = ["dane-ee", "dane-ta", "dane-ta-spki", "dane-fail", "dane-fallback", "sts-ok", "sts-badcert", "insecure",
         "stripped", "dane-stripped", "bogus"]
MODES = ("none", "opportunistic", "mandatory")
EHLO_NAME = "gw.analyzer.test"


@pytest.fixture(scope="module", autouse=True)
def _binary():
    reason = resolve.missing_binary_reason()
    if reason:
        pytest.skip(reason)


def write_config(path: str, dns_lab, mta_sts_server, lab_pki, workdir: str, connectors: list | None = None) -> str:
    cfg = {
        "hostname": EHLO_NAME,
        "listeners": [{"name": "unused", "address": "127.0.0.1:1", "tls_mode": "none"}],
        "accepted_domains": ["lab.test"],
        "next_hop": {"host": "127.0.0.1", "port": 1},
        "spool": {"directory": os.path.join(workdir, "spool-unused")},
        "resolver": {"trust_anchor_file": dns_lab.trust_anchor_file, "root_servers": [dns_lab.nsd_address],
                     "nodefault_zones": ["test."], "ipv6_transport": False, "query_timeout": "3s"},
        "mta_sts": {"ca_file": mta_sts_server.ca_file, "fetch_timeout": "3s", "connect_timeout": "3s",
                    "cache_file": os.path.join(workdir, "mta-sts-unused.db")},
        "outbound": {"ca_file": lab_pki.ca_pem, "connect_timeout": "3s", "command_timeout": "10s"},
    }
    if connectors:
        cfg["connectors"] = connectors
    with open(path, "w") as f:
        f.write(gateway_mod.to_yaml(cfg))
    return path


def run_check(config: str, domain: str, *extra: str, json_out: bool = True, timeout: float = 90):
    argv = [resolve.binary_path(), "--check", domain, "--config", config, *extra]
    if json_out:
        argv.append("--json")
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert "Sanitizer" not in p.stderr and "runtime error:" not in p.stderr, p.stderr  # ASan, LSan, UBSan
    if json_out:
        assert p.stdout.strip(), f"no output (exit {p.returncode}): {p.stderr}"
        return p.returncode, json.loads(p.stdout)
    return p.returncode, p.stdout


@pytest.fixture(scope="module")
def config_file(delivery_lab, dns_lab, mta_sts_server, lab_pki, lab_root):
    workdir = lab_root.unique_sub("analyzer")
    return write_config(os.path.join(workdir, "mxedge.yaml"), dns_lab, mta_sts_server, lab_pki, workdir)


@pytest.fixture(scope="module")
def reports(config_file):
    """case -> (exit status, report), every case checked once, in parallel."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {c: pool.submit(run_check, config_file, f"{c}.dlv.test") for c in CASES}
        out = {c: f.result() for c, f in futures.items()}
    dump = os.environ.get("MXEDGE_ANALYZER_DUMP")  # a directory: keep every report (JSON and text) there
    if dump:
        os.makedirs(dump, exist_ok=True)
        for c, (rc, rep) in out.items():
            with open(os.path.join(dump, f"{c}.json"), "w") as f:
                json.dump({"exit": rc, "report": rep}, f, indent=2)
            with open(os.path.join(dump, f"{c}.txt"), "w") as f:
                f.write(run_check(config_file, f"{c}.dlv.test", json_out=False)[1])
    return out


def report(reports, case: str) -> dict:
    return reports[case][1]


def mode(rep: dict, dane: str, sts: str) -> dict:
    for v in rep["modes"]:
        if v["dane_mode"] == dane and v["mta_sts_mode"] == sts:
            return v
    raise KeyError((dane, sts))


def outcomes(rep: dict) -> dict[tuple[str, str], str]:
    return {(v["dane_mode"], v["mta_sts_mode"]): v["outcome"] for v in rep["modes"]}


def host(rep: dict, name: str) -> dict:
    for h in rep["hosts"]:
        if h["name"] == name:
            return h
    raise KeyError(name)


def probe(rep: dict, name: str) -> dict:
    found = [p for p in rep["probes"] if p["host"] == name]
    assert len(found) == 1, (name, rep["probes"])
    return found[0]


def findings(rep: dict, severity: str | None = None) -> list[str]:
    return [f["message"] for f in rep["findings"] if severity is None or f["severity"] == severity]


# ---- the report's shape -----------------------------------------------------------------------------

def test_every_case_is_checked_with_nine_modes_and_the_configured_connector(reports):
    for case in CASES:
        rc, rep = reports[case]
        assert rep["domain"] == f"{case}.dlv.test" and rep["error"] == "", rep
        assert rep["ehlo_name"] == EHLO_NAME
        assert sorted((v["dane_mode"], v["mta_sts_mode"]) for v in rep["modes"]) == sorted(
            (d, s) for d in MODES for s in MODES)
        c = rep["configured"]
        assert c["connector"] == "default" and c["dane_mode"] == "opportunistic" and c["mta_sts_mode"] == "opportunistic"
        # exit 0 exactly when the configured connector would deliver
        assert rc == (0 if c["outcome"] == "deliver" else 1), (case, rc, c)


def test_expected_outcome_of_the_configured_connector_matches_the_lab_table(reports, delivery_lab):
    want_auth = {"delivered-dane": "dane", "delivered-webpki": "webpki", "delivered-opportunistic": "none",
                 "delivered-cleartext": "cleartext"}
    for case in CASES:
        expect = delivery_lab.cases[case].expect
        c = report(reports, case)["configured"]
        if expect == "deferred":
            assert c["outcome"] == "defer", (case, c)
        else:
            assert c["outcome"] == "deliver" and c["authentication"] == want_auth[expect], (case, c)
            assert c["probed"] is True


# ---- DANE -------------------------------------------------------------------------------------------

def test_dane_ee_is_verified_and_every_mode_without_mandatory_sts_delivers(reports, delivery_lab):
    rep = report(reports, "dane-ee")
    assert rep["mx"]["state"] == "mx" and rep["mx"]["dnssec"] == "secure"
    assert rep["mx"]["records"] == [{"preference": 10, "host": "mx.dane-ee.dlv.test"}]
    h = host(rep, "mx.dane-ee.dlv.test")
    assert h["address_dnssec"] == "secure" and h["addresses"] == [delivery_lab.address("mx.dane-ee.dlv.test")]
    assert h["tlsa_state"] == "usable" and h["dane"] == "authenticate"
    assert h["tlsa_name"] == "_25._tcp.mx.dane-ee.dlv.test"
    assert [(t["usage"], t["selector"], t["matching_type"], t["usability"]) for t in h["tlsa"]] == [(3, 1, 1, "usable")]
    assert rep["mta_sts"]["result"] == "no-policy"

    p = probe(rep, "mx.dane-ee.dlv.test")
    assert p["connected"] and p["ehlo_ok"] and p["starttls_offered"] and p["tls"], p
    assert p["banner"].startswith("220 ")
    assert "STARTTLS" in p["ehlo_keywords"] and "PIPELINING" in p["ehlo_keywords"]
    assert p["tls_version"] in ("TLSv1.2", "TLSv1.3") and p["cipher"]
    assert p["dane"] == "verified" and p["dane_usage"] == 3 and p["dane_depth"] == 0
    # the leaf only names unrelated.example.test under an untrusted CA: WebPKI fails, DANE-EE does not care
    assert p["webpki"] == "failed" and p["mta_sts"] == "no-policy"
    leaf = p["chain"][0]
    assert "unrelated.example.test" in leaf["dns_names"] and leaf["not_after"]
    assert leaf["spki_sha256"] == h["tlsa"][0]["data"]

    for (dane, sts), outcome in outcomes(rep).items():
        assert outcome == ("defer" if sts == "mandatory" else "deliver"), (dane, sts, outcome)
    for sts in ("none", "opportunistic"):
        assert mode(rep, "opportunistic", sts)["authentication"] == "dane"
        assert mode(rep, "mandatory", sts)["authentication"] == "dane"
        assert mode(rep, "none", sts)["authentication"] == "none"
    assert "no MTA-STS policy" in mode(rep, "opportunistic", "mandatory")["reason"]


@pytest.mark.parametrize("case,usage,depth", [("dane-ta", 2, None), ("dane-ta-spki", 2, 1)])
def test_dane_ta_matches_the_ca_in_the_chain(reports, case, usage, depth):
    rep = report(reports, case)
    p = probe(rep, f"mx.{case}.dlv.test")
    assert p["dane"] == "verified" and p["dane_usage"] == usage, p
    if depth is not None:
        assert p["dane_depth"] == depth
    assert len(p["chain"]) >= 2
    # issued by the lab CA for the MX name: the WebPKI check passes too
    assert p["webpki"] == "verified"
    assert mode(rep, "mandatory", "none")["outcome"] == "deliver"
    assert mode(rep, "mandatory", "none")["authentication"] == "dane"


def test_dane_fail_is_a_mismatch_and_dane_modes_defer(reports):
    rep = report(reports, "dane-fail")
    h = host(rep, "mx.dane-fail.dlv.test")
    assert h["tlsa_state"] == "usable" and h["dane"] == "authenticate"
    p = probe(rep, "mx.dane-fail.dlv.test")
    assert p["tls"] and p["dane"] == "failed" and p["dane_result_type"] == "validation-failure", p
    assert p["dane_usage"] == -1
    for sts in ("none", "opportunistic"):
        for dane in ("opportunistic", "mandatory"):
            v = mode(rep, dane, sts)
            assert v["policy"] == "deliver" and v["outcome"] == "defer" and v["probed"], v
            assert v["result_type"] == "validation-failure"
            assert "DANE" in v["reason"]
        # DANE none ignores the TLSA records: opportunistic TLS delivers
        assert mode(rep, "none", sts)["outcome"] == "deliver"
        assert mode(rep, "none", sts)["authentication"] == "none"
    assert any("DANE:" in m for m in findings(rep, "SEVERITY_ERROR"))


def test_dane_fallback_reaches_the_second_mx(reports):
    rep = report(reports, "dane-fallback")
    assert [r["host"] for r in rep["mx"]["records"]] == ["bad.dane-fallback.dlv.test", "good.dane-fallback.dlv.test"]
    assert probe(rep, "bad.dane-fallback.dlv.test")["dane"] == "failed"
    assert probe(rep, "good.dane-fallback.dlv.test")["dane"] == "verified"
    c = rep["configured"]
    assert c["outcome"] == "deliver" and c["host"] == "good.dane-fallback.dlv.test" and c["authentication"] == "dane"
    assert len(c["attempts"]) == 1 and c["attempts"][0].startswith("bad.dane-fallback.dlv.test")


# ---- MTA-STS ----------------------------------------------------------------------------------------

def test_sts_ok_policy_and_webpki_match(reports):
    rep = report(reports, "sts-ok")
    s = rep["mta_sts"]
    assert s["txt_records"] == ["v=STSv1; id=stsok1;"] and s["txt_dnssec"] == "secure"
    assert s["result"] == "policy" and s["id"] == "stsok1" and s["mode"] == "enforce" and s["max_age"] == 86400
    assert s["mx"] == ["mx.sts-ok.dlv.test"]
    h = host(rep, "mx.sts-ok.dlv.test")
    assert h["tlsa_state"] == "secure-denial" and h["dane"] == "no-dane" and h["mta_sts"] == "listed"
    p = probe(rep, "mx.sts-ok.dlv.test")
    assert p["webpki"] == "verified" and p["mta_sts"] == "match" and p["dane"] == "not-applicable"
    for dane in ("none", "opportunistic"):
        for sts in ("opportunistic", "mandatory"):
            v = mode(rep, dane, sts)
            assert v["outcome"] == "deliver" and v["requirement"] == "webpki" and v["authentication"] == "webpki", v
    assert mode(rep, "mandatory", "opportunistic")["outcome"] == "defer"  # no TLSA
    assert mode(rep, "mandatory", "opportunistic")["result_type"] == "dane-required"


def test_sts_badcert_mta_sts_match_fails(reports):
    rep = report(reports, "sts-badcert")
    assert rep["mta_sts"]["mode"] == "enforce"
    p = probe(rep, "mx.sts-badcert.dlv.test")
    assert p["tls"] and p["webpki"] == "failed" and p["mta_sts"] == "mismatch", p
    assert p["webpki_result_type"] == "certificate-host-mismatch"
    for dane in ("none", "opportunistic"):
        for sts in ("opportunistic", "mandatory"):
            v = mode(rep, dane, sts)
            assert v["policy"] == "deliver" and v["outcome"] == "defer", v
            assert v["result_type"] == "certificate-host-mismatch"
        assert mode(rep, dane, "none")["outcome"] == "deliver"
    assert any("MTA-STS: mismatch" in m for m in findings(rep, "SEVERITY_ERROR"))


# ---- no DNSSEC, no STARTTLS, bogus --------------------------------------------------------------------

def test_insecure_destination_gets_opportunistic_tls_only(reports):
    rep = report(reports, "insecure")
    assert rep["mx"]["dnssec"] == "insecure"
    h = host(rep, "mx.insecure.dlv.test")
    assert h["address_dnssec"] == "insecure" and h["tlsa_state"] == "not-looked-up" and h["dane"] == "no-dane"
    p = probe(rep, "mx.insecure.dlv.test")
    assert p["tls"] and p["dane"] == "not-applicable" and p["webpki"] == "failed"  # self-signed
    assert p["webpki_result_type"] == "certificate-not-trusted"
    for (dane, sts), outcome in outcomes(rep).items():
        if dane == "mandatory" or sts == "mandatory":
            assert outcome == "defer", (dane, sts)
        else:
            assert outcome == "deliver" and mode(rep, dane, sts)["authentication"] == "none", (dane, sts)
    assert "not DNSSEC-secure" in mode(rep, "mandatory", "none")["reason"]


def test_stripped_starttls_is_not_offered(reports):
    rep = report(reports, "stripped")
    p = probe(rep, "mx.stripped.dlv.test")
    assert p["connected"] and p["ehlo_ok"] and p["starttls_offered"] is False and p["tls"] is False, p
    assert "X-LAB-STRIPPED" in p["ehlo_keywords"] and "STARTTLS" not in p["ehlo_keywords"]
    assert p["dane"] == "not-tested" and p["webpki"] == "not-tested" and p["chain"] == []
    c = rep["configured"]
    assert c["outcome"] == "deliver" and c["authentication"] == "cleartext"


def test_stripped_starttls_with_tlsa_defers(reports):
    rep = report(reports, "dane-stripped")
    assert host(rep, "mx.dane-stripped.dlv.test")["dane"] == "authenticate"
    p = probe(rep, "mx.dane-stripped.dlv.test")
    assert p["starttls_offered"] is False
    v = rep["configured"]
    assert v["outcome"] == "defer" and v["result_type"] == "starttls-not-supported", v
    assert mode(rep, "none", "none")["outcome"] == "deliver"
    assert mode(rep, "none", "none")["authentication"] == "cleartext"


def test_bogus_mx_nothing_probed_every_mode_defers(reports, delivery_lab):
    rep = report(reports, "bogus")
    assert rep["mx"]["state"] == "bogus" and rep["mx"]["dnssec"] == "bogus"
    assert rep["probes"] == [] and rep["probed"] is False
    for v in rep["modes"]:
        assert v["outcome"] == "defer" and v["result_type"] == "dnssec-invalid", v
    assert delivery_lab.connections("mx.bogus.dlv.test") == 0


# ---- text, --no-probe, configured connectors ------------------------------------------------------------

def test_text_report(config_file):
    rc, text = run_check(config_file, "dane-fail.dlv.test", json_out=False)
    assert rc == 1
    assert text.startswith("mxedge check dane-fail.dlv.test")
    for needle in ["DNS (DNSSEC-validated)", "MX dane-fail.dlv.test: 1 host(s), DNSSEC secure",
                   "SMTP probes", "mx.dane-fail.dlv.test [", "STARTTLS: TLSv1.", "FAIL  DANE:",
                   "Verdicts by connector mode", "Configured connector", "Result: connector 'default' would defer"]:
        assert needle in text, (needle, text)
    rows = [line.split() for line in text.splitlines() if line.startswith("  none ") or line.startswith("  opportunistic ")
            or line.startswith("  mandatory ")]
    assert len(rows) == 9 and all(r[2] in ("deliver", "defer", "bounce") for r in rows), rows


def test_no_probe_reports_dns_and_policy_only(config_file, delivery_lab):
    delivery_lab.reset_connections()
    rc, rep = run_check(config_file, "dane-ee.dlv.test", "--no-probe")
    assert rc == 0
    assert rep["probed"] is False and rep["probes"] == []
    assert host(rep, "mx.dane-ee.dlv.test")["tlsa_state"] == "usable"
    c = rep["configured"]
    assert c["outcome"] == "deliver" and c["probed"] is False and c["requirement"] == "dane"
    assert all(v["probed"] is False for v in rep["modes"])
    assert delivery_lab.connections("mx.dane-ee.dlv.test") == 0


def test_configured_connector_modes_decide_the_exit_status(dns_lab, mta_sts_server, lab_pki, lab_root):
    workdir = lab_root.unique_sub("analyzer-conn")
    cfg = write_config(os.path.join(workdir, "mxedge.yaml"), dns_lab, mta_sts_server, lab_pki, workdir, connectors=[
        {"name": "strict", "domains": ["insecure.dlv.test"], "dane_mode": "mandatory"},
        {"name": "relaxed", "domains": ["dane-fail.dlv.test"], "dane_mode": "none", "allow_cleartext": False},
        {"name": "via-smart", "domains": ["sts-badcert.dlv.test"], "smart_host": "mx.dane-ee.dlv.test"}])
    rc, rep = run_check(cfg, "insecure.dlv.test")
    assert rc == 1 and rep["configured"]["connector"] == "strict" and rep["configured"]["outcome"] == "defer"
    assert rep["configured"]["result_type"] == "dane-required"
    rc, rep = run_check(cfg, "dane-fail.dlv.test")
    c = rep["configured"]
    assert rc == 0 and c["connector"] == "relaxed" and c["outcome"] == "deliver" and c["requirement"] == "encrypt", c
    assert c["allow_cleartext"] is False
    # A smart host is resolved and probed like an MX host (its TLSA applies); the mode table still
    # describes the domain's own MX.
    rc, rep = run_check(cfg, "sts-badcert.dlv.test")
    c = rep["configured"]
    assert rc == 0 and c["connector"] == "via-smart" and c["outcome"] == "deliver", c
    assert c["host"] == "mx.dane-ee.dlv.test" and c["authentication"] == "dane"
    assert {p["host"] for p in rep["probes"]} == {"mx.sts-badcert.dlv.test", "mx.dane-ee.dlv.test"}
    assert mode(rep, "opportunistic", "opportunistic")["outcome"] == "defer"
