"""The DNSSEC enablement wizard (controlplane/wizard, through `mxedge-resolve --wizard`) against the
signed lab DNS: one `<state>.wiz.test` zone per state the wizard tells apart (tests/lab/dns.py
WIZARD_CASES) and nginx serving the all-good domain's MTA-STS policy (WIZARD_STS_CASES). The gateway
is described by a configuration whose inbound listener carries the lab's ECDSA certificate and whose
hostname (the MX name checked unless --mx is given) is mx.<state>.wiz.test.

Each state: every step's status, the records the wizard tells the operator to publish (the DS equals
the one the lab computed from the zone's key, the TLSA digest the SHA-256 of the gateway
certificate's SPKI, the MTA-STS id the policy's content hash), the cutover plan's order, the exit
status; the text output of two states.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from lab import dns as dns_lab_mod
from lab import mta_sts as sts_lab
from lab import resolve

W = dns_lab_mod.WIZ_ZONE
OK, ACTION, FAIL, SKIPPED = "STATUS_OK", "STATUS_ACTION_NEEDED", "STATUS_FAIL", "STATUS_SKIPPED"
CHECKS = ["CHECK_DNSSEC", "CHECK_MX", "CHECK_TLSA", "CHECK_MTA_STS", "CHECK_TLS_RPT"]


@pytest.fixture(scope="module", autouse=True)
def _binary():
    reason = resolve.missing_binary_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def wizard_sts(dns_lab, lab_root, lab_pki, request):
    """nginx on the lab's https_address serving only the wizard's MTA-STS policy host."""
    failed_before = request.session.testsfailed
    srv = sts_lab.StsHttpsServer(lab_root.unique_sub("wizsts"), dns_lab, lab_pki,
                                 cases=dns_lab_mod.WIZARD_STS_CASES, bench_domains=0)
    try:
        srv.start()
        yield srv
    finally:
        if request.session.testsfailed > failed_before:
            print(f"\n----- wizard MTA-STS nginx: error log -----\n{srv.log_tail(40)}")
        srv.stop()


@pytest.fixture(scope="module")
def config_for(dns_lab, lab_pki, wizard_sts, lab_root):
    """config_for(hostname) -> path of a gateway configuration pointing the resolver at the lab."""
    d = lab_root.unique_sub("wizcfg")
    os.makedirs(d, exist_ok=True)

    def make(hostname: str) -> str:
        path = os.path.join(d, f"{hostname}.yaml")
        with open(path, "w") as f:
            f.write(
                f"hostname: {hostname}\n"
                "listeners:\n"
                f"  - {{name: smtp, address: \"127.0.0.1:2525\", tls_mode: starttls, certificates: "
                f"[{{cert_file: {lab_pki.ecdsa.chain}, key_file: {lab_pki.ecdsa.key}}}]}}\n"
                "accepted_domains: [lab.test]\n"
                "next_hop: {host: 127.0.0.1, port: 2600}\n"
                f"spool: {{directory: {d}/spool}}\n"
                f"resolver: {{trust_anchor_file: {dns_lab.trust_anchor_file}, root_servers: [{dns_lab.nsd_address}], "
                "nodefault_zones: [test.], ipv6_transport: false, query_timeout: 5s}\n"
                f"mta_sts: {{ca_file: {wizard_sts.ca_file}, connect_timeout: 5s, fetch_timeout: 5s}}\n")
        return path

    return make


def run_wizard(config_for, domain: str, *extra: str, json_out: bool = True, hostname: str | None = None):
    argv = [resolve.binary_path(), "--wizard", domain, "--config", config_for(hostname or f"mx.{domain}"), *extra]
    if json_out:
        argv.append("--json")
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if not json_out:
        return p
    assert p.stdout.strip(), p.stderr
    return json.loads(p.stdout), p


def steps(report: dict) -> dict[str, dict]:
    out = {s["check"]: s for s in report["steps"]}
    assert list(out) == CHECKS, list(out)
    return out


def statuses(report: dict) -> list[str]:
    return [s["status"] for s in report["steps"]]


def spki_sha256(cert_pem: str) -> str:
    return hashlib.sha256(dns_lab_mod.spki_der(cert_pem)).hexdigest()


def ds_fields(rr: str) -> tuple[str, ...]:
    """("zone.", tag, alg, digest type, digest in lower case) of "zone. IN DS tag alg type HEX"."""
    t = rr.split()
    assert t[1:3] == ["IN", "DS"], rr
    return (t[0].lower(), t[3], t[4], t[5], "".join(t[6:]).lower())


# --------------------------------------------------------------------------------------------------
# the states


def test_all_good_is_ready(config_for, lab_pki):
    domain = f"good.{W}"
    rep, p = run_wizard(config_for, domain)
    assert p.returncode == 0, p.stdout + p.stderr
    assert rep["ready"] is True and rep["error"] == ""
    assert rep["zone"] == f"{domain}." and rep["parent_zone"] == f"{W}."
    assert rep["mx_names"] == [f"mx.{domain}"]
    assert statuses(rep) == [OK] * 5, json.dumps(rep, indent=1)
    s = steps(rep)
    for step in rep["steps"]:
        assert step["records_to_publish"] == [] and step["records_to_remove"] == []
    assert rep["plan"] == []
    assert f"_25._tcp.mx.{domain}. IN TLSA 3 1 1 {spki_sha256(lab_pki.ecdsa.cert)}" in s["CHECK_TLSA"]["found"]
    assert "policy id good1" in s["CHECK_MTA_STS"]["detail"]
    assert "mode enforce" in s["CHECK_MTA_STS"]["detail"]
    assert f"mailto:tlsrpt@{domain}" in s["CHECK_TLS_RPT"]["detail"]
    assert "secure" in s["CHECK_DNSSEC"]["detail"]


def test_all_good_text(config_for):
    domain = f"good.{W}"
    p = run_wizard(config_for, domain, json_out=False)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert out.startswith(f"DNSSEC enablement wizard for {domain}\n")
    for n, title in enumerate(["DNSSEC", "MX", "TLSA", "MTA-STS", "TLS-RPT"], 1):
        assert f"\n{n}. {title}: " in out
    assert out.count(": OK\n") == 5
    assert "Ready: every check passed" in out
    assert "Cutover plan" not in out


def test_ds_missing_prints_the_ds_the_parent_must_publish(config_for, dns_lab):
    domain = f"nods.{W}"
    rep, p = run_wizard(config_for, domain)
    assert p.returncode == 1 and rep["ready"] is False
    s = steps(rep)
    d = s["CHECK_DNSSEC"]
    assert d["status"] == ACTION
    assert d["publish_in"] == f"{W}."
    assert [ds_fields(r) for r in d["records_to_publish"]] == [ds_fields(dns_lab.ds_record(domain))]
    assert "no DS record" in d["detail"]
    assert any(f"{domain}. IN DNSKEY 257 3 13 " in f for f in d["found"])
    # MX and TLSA are right but insecure until the DS is there: nothing to publish for them.
    assert s["CHECK_MX"]["status"] == ACTION and s["CHECK_MX"]["records_to_publish"] == []
    assert "insecure" in s["CHECK_MX"]["detail"]
    assert s["CHECK_TLSA"]["status"] == ACTION and s["CHECK_TLSA"]["records_to_publish"] == []
    assert "insecure" in s["CHECK_TLSA"]["detail"]
    assert s["CHECK_MTA_STS"]["status"] == ACTION and s["CHECK_TLS_RPT"]["status"] == ACTION
    plan = rep["plan"]
    assert [i["check"] for i in plan] == ["CHECK_DNSSEC", "CHECK_TLS_RPT", "CHECK_MTA_STS", "CHECK_MTA_STS"]
    assert [i["order"] for i in plan] == [1, 2, 3, 4]
    assert plan[0]["records_to_publish"] == d["records_to_publish"] and plan[0]["publish_in"] == f"{W}."


def test_ds_missing_text(config_for, dns_lab):
    domain = f"nods.{W}"
    p = run_wizard(config_for, domain, json_out=False)
    assert p.returncode == 1
    out = p.stdout
    assert "1. DNSSEC: the zone is signed and validates from the root: ACTION NEEDED" in out
    ds = dns_lab.ds_record(domain)
    tag = ds.split()[3]
    printed = [line.strip() for line in out.splitlines() if " IN DS " in line]
    assert printed and all(ds_fields(x) == ds_fields(ds) for x in printed), printed
    assert f"Publish in {W}.:" in out
    assert "Cutover plan (only what is still needed, in this order):\n  1. Publish the DS records" in out
    assert f"key tag {tag}" in out
    assert "Not ready: 5 steps need action, 0 failed." in out


def test_unsigned_zone_must_be_signed_first(config_for, lab_pki):
    domain = f"unsigned.{W}"
    rep, p = run_wizard(config_for, domain)
    assert p.returncode == 1
    s = steps(rep)
    d = s["CHECK_DNSSEC"]
    assert d["status"] == ACTION and d["records_to_publish"] == [] and d["found"] == []
    assert "not signed" in d["detail"]
    assert any("ldns-signzone" in g for g in d["guidance"]) and any("DS" in g for g in d["guidance"])
    t = s["CHECK_TLSA"]
    assert t["status"] == ACTION
    assert t["records_to_publish"] == [f"_25._tcp.mx.{domain}. IN TLSA 3 1 1 {spki_sha256(lab_pki.ecdsa.cert)}"]
    plan = rep["plan"]
    assert [i["check"] for i in plan] == ["CHECK_DNSSEC", "CHECK_DNSSEC", "CHECK_TLSA", "CHECK_TLS_RPT",
                                          "CHECK_MTA_STS", "CHECK_MTA_STS"]
    assert plan[0]["action"].startswith("Sign the zone") and "DS" in plan[1]["action"]


def test_tlsa_not_matching_and_mx_elsewhere(config_for, lab_pki, dns_lab):
    domain = f"mismatch.{W}"
    rep, p = run_wizard(config_for, domain)
    assert p.returncode == 1
    s = steps(rep)
    assert statuses(rep) == [OK, ACTION, ACTION, ACTION, ACTION]
    mx = s["CHECK_MX"]
    assert mx["records_to_publish"] == [f"{domain}. IN MX 10 mx.{domain}."]
    assert mx["records_to_remove"] == [f"{domain}. IN MX 10 old-mx.{domain}."]
    assert mx["publish_in"] == f"{domain}."
    t = s["CHECK_TLSA"]
    leaf = spki_sha256(lab_pki.ecdsa.cert)
    assert t["records_to_publish"] == [f"_25._tcp.mx.{domain}. IN TLSA 3 1 1 {leaf}"]
    ca = dns_lab.tlsa_data.ca_spki_sha256
    assert t["records_to_remove"] == [f"_25._tcp.mx.{domain}. IN TLSA 3 1 1 {ca}"]
    assert "matches none of the gateway's certificates" in t["detail"]
    # MTA-STS: the TXT exists, the policy host does not serve it; the fetch error is reported and a
    # testing policy proposed that keeps the current MX host until the cutover.
    sts = s["CHECK_MTA_STS"]
    assert "policy id mismatch1" in sts["detail"]
    assert f"https://mta-sts.{domain}/.well-known/mta-sts.txt: " in sts["detail"]
    [f] = sts["files_to_publish"]
    assert f["url"] == f"https://mta-sts.{domain}/.well-known/mta-sts.txt" and f["content_type"] == "text/plain"
    assert f["content"] == sts_lab.policy_text("testing", [f"mx.{domain}", f"old-mx.{domain}"], eol="\r\n")
    new_id = hashlib.sha256(f["content"].encode()).hexdigest()[:20]
    assert sts["records_to_publish"] == [f'_mta-sts.{domain}. IN TXT "v=STSv1; id={new_id};"']
    assert sts["records_to_remove"] == [f'_mta-sts.{domain}. IN TXT "v=STSv1; id=mismatch1;"']
    rpt = s["CHECK_TLS_RPT"]
    assert "neither a mailto: nor an https: URI" in rpt["detail"]
    assert rpt["records_to_publish"] == [f'_smtp._tls.{domain}. IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"']
    # TLSA, then TLS-RPT (the reports MTA-STS testing waits for), MTA-STS (testing, then enforce),
    # and the MX cutover last.
    assert [i["check"] for i in rep["plan"]] == ["CHECK_TLSA", "CHECK_TLS_RPT", "CHECK_MTA_STS", "CHECK_MTA_STS",
                                                 "CHECK_MX"]
    assert rep["plan"][2]["records_to_publish"] == sts["records_to_publish"]
    enforce = sts_lab.policy_text("enforce", [f"mx.{domain}", f"old-mx.{domain}"], max_age=604800, eol="\r\n")
    assert rep["plan"][3]["records_to_publish"] == [
        f'_mta-sts.{domain}. IN TXT "v=STSv1; id={hashlib.sha256(enforce.encode()).hexdigest()[:20]};"']
    assert rep["plan"][4]["records_to_remove"] == mx["records_to_remove"]


def test_ds_mismatch_is_a_failure_naming_the_stale_ds(config_for, dns_lab):
    domain = f"dsbad.{W}"
    rep, p = run_wizard(config_for, domain)
    assert p.returncode == 1
    assert statuses(rep) == [FAIL, SKIPPED, SKIPPED, SKIPPED, SKIPPED]
    d = steps(rep)["CHECK_DNSSEC"]
    assert "does not validate (bogus)" in d["detail"]
    assert "no keys have a DS" in d["detail"]          # the validator's reason
    assert "matches no DNSKEY" in d["detail"]
    # The stale DS is the one to remove; it is not the DS of the key the zone signs with.
    [stale] = d["records_to_remove"]
    assert ds_fields(stale)[0] == f"{domain}."
    assert ds_fields(stale)[1] != ds_fields(dns_lab.ds_record(domain))[1]
    m = dns_lab_mod.query(dns_lab.nsd_address, domain, "DS", rd=False)
    assert m.answers("DS"), "the lab publishes a DS for dsbad"
    assert d["publish_in"] == f"{W}."
    assert [i["check"] for i in rep["plan"]] == ["CHECK_DNSSEC"]


# --------------------------------------------------------------------------------------------------
# rollover, MX names, errors


def test_next_key_needs_its_tlsa_before_the_rollover(config_for, lab_pki):
    domain = f"good.{W}"
    nxt = spki_sha256(lab_pki.rsa.cert)
    want = [f"_25._tcp.mx.{domain}. IN TLSA 3 1 1 {nxt}"]
    for extra in (["--next-cert", lab_pki.rsa.chain], ["--next-key", lab_pki.rsa.key],
                  ["--next-cert", lab_pki.rsa.chain, "--next-key", lab_pki.rsa.key]):
        rep, p = run_wizard(config_for, domain, *extra)
        assert p.returncode == 1
        assert statuses(rep) == [OK, OK, ACTION, OK, OK], extra
        t = steps(rep)["CHECK_TLSA"]
        assert t["records_to_publish"] == want and t["records_to_remove"] == []
        assert "next key" in t["detail"]
        assert [i["check"] for i in rep["plan"]] == ["CHECK_TLSA"]
    # The current key as "next": nothing to roll to.
    rep, p = run_wizard(config_for, domain, "--next-key", lab_pki.ecdsa.key)
    assert p.returncode == 0 and rep["ready"] is True
    # A key that is not the certificate's.
    rep, p = run_wizard(config_for, domain, "--next-cert", lab_pki.rsa.chain, "--next-key", lab_pki.ecdsa.key)
    t = steps(rep)["CHECK_TLSA"]
    assert t["status"] == FAIL and "is not the key of" in t["detail"]


def test_mx_names_from_the_command_line(config_for):
    domain = f"good.{W}"
    # the configuration's hostname is not the MX, --mx names the right one
    rep, p = run_wizard(config_for, domain, "--mx", f"MX.{domain}.", hostname="gw.elsewhere.test")
    assert p.returncode == 0 and rep["mx_names"] == [f"mx.{domain}"]
    # a second gateway name: MX, TLSA and MTA-STS must cover it too
    rep, p = run_wizard(config_for, domain, "--mx", f"mx.{domain}", "--mx", f"mx2.{domain}")
    assert p.returncode == 1
    s = steps(rep)
    assert statuses(rep) == [OK, ACTION, ACTION, ACTION, OK]
    assert s["CHECK_MX"]["records_to_publish"] == [f"{domain}. IN MX 10 mx.{domain}.", f"{domain}. IN MX 20 mx2.{domain}."]
    assert "mx2" in s["CHECK_TLSA"]["detail"] and "no A or AAAA record" in s["CHECK_TLSA"]["detail"]
    assert f"mx: mx2.{domain}" in s["CHECK_MTA_STS"]["files_to_publish"][0]["content"]
    # the existing policy is enforce: the proposal stays enforce
    assert "mode: enforce" in s["CHECK_MTA_STS"]["files_to_publish"][0]["content"]


def test_bad_domain_is_an_error(config_for):
    rep, p = run_wizard(config_for, "not a domain", hostname="mx.lab.test")
    assert p.returncode == 1
    assert rep["error"] and rep["steps"] == [] and rep["ready"] is False
    assert "not a domain name" in p.stderr
