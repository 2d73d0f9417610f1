"""The control plane's resolver (mxedge-resolve) against the signed DNS lab (tests/lab/dns.py):
every lab case with the expected status at each step of RFC 7672's ladder, the cache (TTL expiry,
negative caching), timeouts and bounded retries against a server that stops answering, malformed
answers, the three ways of reaching DNS (root server, root hints, forwarder) and bad options.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from lab import resolve


@pytest.fixture(scope="module", autouse=True)
def _binary():
    reason = resolve.missing_binary_reason()
    if reason:
        pytest.skip(reason)


def tlsa_set(lab, host: str) -> set[str]:
    return {f"{u} {s} {m} {h.lower()}" for (u, s, m, h) in lab.tlsa(host)}


def host(dest: dict, name: str) -> dict:
    for h in dest["hosts"]:
        if h["name"] == name:
            return h
    raise KeyError(f"{name} not among {[h['name'] for h in dest['hosts']]}")


def resolve_one(lab, domain: str, **kw) -> dict:
    return resolve.run(lab, [domain], **kw).by_name(domain)


# --------------------------------------------------------------------------------------------------
# the lab cases, step by step


def test_secure_mx_with_usable_tlsa_of_each_kind(dns_lab):
    d = resolve_one(dns_lab, "dane-ok.test")
    assert (d["mx_state"], d["mx_security"]) == ("mx", "secure")
    assert [h["name"] for h in d["hosts"]] == ["mx1.dane-ok.test", "mx2.dane-ok.test", "mx3.dane-ok.test"]
    assert [h["preference"] for h in d["hosts"]] == [10, 20, 30]
    kinds = []
    for h in d["hosts"]:
        assert h["address_security"] == "secure"
        assert h["a"]["security"] == h["aaaa"]["security"] == "secure"
        assert sorted(h["addresses"]) == ["127.0.0.1", "::1"]
        assert h["tlsa"]["state"] == "usable"
        assert h["tlsa"]["qname"] == "_25._tcp." + h["name"]
        assert {r["record"] for r in h["tlsa"]["records"]} == tlsa_set(dns_lab, h["name"])
        assert all(r["usable"] for r in h["tlsa"]["records"])
        assert h["dane"] == "authenticate"
        kinds.append(h["tlsa"]["records"][0]["record"][:5])
    assert kinds == ["3 1 1", "2 1 1", "2 0 1"]


def test_wrong_digest_lengths_are_unusable(dns_lab):
    run = resolve.run(dns_lab, ["mixed.dane-ok.test", "badlen.dane-ok.test"])
    mixed = run.by_name("mixed.dane-ok.test")
    assert mixed["mx_state"] == "no-mx"  # the host itself (implicit MX)
    h = mixed["hosts"][0]
    assert h["tlsa"]["state"] == "usable" and h["dane"] == "authenticate"
    usability = sorted((r["usable"], r["usability"]) for r in h["tlsa"]["records"])
    assert usability == [(False, "digest length does not match the matching type"), (True, "usable")]
    bad = run.by_name("badlen.dane-ok.test")["hosts"][0]
    assert bad["tlsa"]["state"] == "all-unusable"
    assert bad["dane"] == "encrypt-only"
    assert all(not r["usable"] for r in bad["tlsa"]["records"]) and len(bad["tlsa"]["records"]) == 2


@pytest.mark.parametrize("domain", ["no-tlsa.test", "no-tlsa-nsec3.test"])
def test_secure_denial_of_tlsa_with_nsec_and_nsec3(dns_lab, domain):
    d = resolve_one(dns_lab, domain)
    assert (d["mx_state"], d["mx_security"]) == ("mx", "secure")
    h = host(d, "mx." + domain)
    assert h["address_security"] == "secure"
    assert h["tlsa"]["state"] == "secure-denial"
    assert h["tlsa"]["records"] == []
    assert h["dane"] == "no-dane"


def test_insecure_delegation_never_looks_up_tlsa(dns_lab):
    d = resolve_one(dns_lab, "insecure.test")
    assert (d["mx_state"], d["mx_security"]) == ("mx", "insecure")
    h = host(d, "mx.insecure.test")
    assert h["address_security"] == "insecure"
    # The zone publishes TLSA for this host, but an insecure host's TLSA must not be fetched.
    assert dns_lab.tlsa("mx.insecure.test")
    assert h["tlsa"]["state"] == "not-looked-up" and h["tlsa"]["tried"] == []
    assert h["dane"] == "no-dane"


@pytest.mark.parametrize("domain,reason", [
    ("ds-mismatch.test", "DS"),
    ("bad-sig.test", "signature"),
    ("expired.test", "expired"),
])
def test_bogus_mx_defers_with_the_reason(dns_lab, domain, reason):
    d = resolve_one(dns_lab, domain)
    assert (d["mx_state"], d["mx_security"]) == ("bogus", "bogus")
    assert reason in d["why"], d["why"]
    assert d["hosts"] == []
    assert 0 < d["ttl"] <= 60  # remembered only for the bogus TTL


def test_unsupported_algorithm_is_insecure_not_bogus(dns_lab):
    d = resolve_one(dns_lab, "unsupported-alg.test")
    assert (d["mx_state"], d["mx_security"]) == ("mx", "insecure")
    assert host(d, "mx.unsupported-alg.test")["dane"] == "no-dane"


@pytest.mark.parametrize("domain", ["tlsa-servfail.test", "tlsa-timeout.test"])
def test_tlsa_lookup_failure_defers_never_downgrades(dns_lab, domain):
    dns_lab.proxy.reset_counts()
    d = resolve_one(dns_lab, domain, extra=["--timeout-ms", "4000"])
    assert (d["mx_state"], d["mx_security"]) == ("mx", "secure")
    h = host(d, "mx." + domain)
    assert h["address_security"] == "secure"
    assert h["tlsa"]["state"] == "failure", h["tlsa"]
    assert h["dane"] == "defer"
    assert dns_lab.proxy.queries("_25._tcp.mx." + domain, "TLSA") >= 1


def test_cname_secure_to_insecure_tracks_each_hop(dns_lab):
    d = resolve_one(dns_lab, "cname-insecure.test")
    assert d["mx_security"] == "secure"
    h = host(d, "mx.cname-insecure.test")
    assert h["a"]["security"] == "insecure"
    assert h["a"]["canonical_name"] == "host.insecure.test"
    assert h["a"]["cname_chain"] == [
        {"owner": "mx.cname-insecure.test", "target": "host.insecure.test", "security": "secure"}]
    assert h["address_security"] == "insecure"
    assert h["tlsa"]["state"] == "not-looked-up"  # TLSA exists at the original name; not used
    assert h["dane"] == "no-dane"


def test_cname_secure_tlsa_at_expanded_name_first_then_original(dns_lab):
    d = resolve_one(dns_lab, "cname-secure.test")
    first = host(d, "mx.cname-secure.test")
    assert first["a"]["cname_chain"][0]["security"] == "secure"
    assert first["tlsa"]["tried"] == ["_25._tcp.mx1.dane-ok.test"]
    assert first["tlsa"]["qname"] == "_25._tcp.mx1.dane-ok.test"
    assert {r["record"] for r in first["tlsa"]["records"]} == tlsa_set(dns_lab, "mx1.dane-ok.test")
    alt = host(d, "alt.cname-secure.test")
    # The expanded name (mx.no-tlsa.test) has a secure denial: the original name's TLSA applies.
    assert alt["tlsa"]["tried"] == ["_25._tcp.mx.no-tlsa.test", "_25._tcp.alt.cname-secure.test"]
    assert alt["tlsa"]["qname"] == "_25._tcp.alt.cname-secure.test"
    assert alt["tlsa"]["state"] == "usable"
    assert {r["record"] for r in alt["tlsa"]["records"]} == tlsa_set(dns_lab, "alt.cname-secure.test")


def test_secure_mx_to_insecure_host(dns_lab):
    d = resolve_one(dns_lab, "mx-insecure-host.test")
    assert (d["mx_state"], d["mx_security"]) == ("mx", "secure")
    h = host(d, "mx.insecure.test")
    assert h["address_security"] == "insecure" and h["dane"] == "no-dane"


def test_insecure_mx_to_secure_host_keeps_the_hosts_tlsa(dns_lab):
    d = resolve_one(dns_lab, "insecure-mx.test")
    assert (d["mx_state"], d["mx_security"]) == ("mx", "insecure")
    h = host(d, "mx1.dane-ok.test")
    assert h["address_security"] == "secure"
    assert h["tlsa"]["state"] == "usable" and h["dane"] == "authenticate"


def test_only_pkix_usages_means_encrypt_without_authentication(dns_lab):
    d = resolve_one(dns_lab, "unusable-tlsa.test")
    h = host(d, "mx.unusable-tlsa.test")
    assert h["tlsa"]["state"] == "all-unusable"
    assert h["dane"] == "encrypt-only"
    assert {r["usability"] for r in h["tlsa"]["records"]} == {"PKIX usage (0/1) is not usable with SMTP"}
    assert {r["record"] for r in h["tlsa"]["records"]} == tlsa_set(dns_lab, "mx.unusable-tlsa.test")


def test_null_mx_and_nxdomain_and_implicit_mx(dns_lab):
    run = resolve.run(dns_lab, ["null-mx.test", "nosuch.test", "nomx.test"])
    null = run.by_name("null-mx.test")
    assert (null["mx_state"], null["mx_security"], null["hosts"]) == ("null-mx", "secure", [])
    nx = run.by_name("nosuch.test")
    assert (nx["mx_state"], nx["mx_security"]) == ("nxdomain", "secure")
    nomx = run.by_name("nomx.test")
    assert (nomx["mx_state"], nomx["mx_security"]) == ("no-mx", "secure")
    h = host(nomx, "nomx.test")
    assert h["tlsa"]["qname"] == "_25._tcp.nomx.test" and h["dane"] == "authenticate"


def test_nsec3_opt_out(dns_lab):
    run = resolve.run(dns_lab, ["sub.optout.test", "optout.test"])
    sub = run.by_name("sub.optout.test")
    assert (sub["mx_state"], sub["mx_security"]) == ("mx", "insecure")
    assert host(sub, "mx.sub.optout.test")["dane"] == "no-dane"
    top = run.by_name("optout.test")
    assert top["mx_security"] == "secure"
    h = host(top, "mx.optout.test")
    assert h["address_security"] == "secure"
    # The TLSA name falls in an opt-out span: its non-existence cannot be proven, only shown insecure.
    assert h["tlsa"]["state"] == "insecure" and h["dane"] == "no-dane"


def test_equal_preferences_are_shuffled_and_higher_ones_come_last(dns_lab):
    run = resolve.run(dns_lab, ["multi.test"], extra=["--repeat", "30"])
    firsts = set()
    for r in range(30):
        d = run.by_name("multi.test", r)
        order = d["delivery_order"]
        assert sorted(order[:3]) == ["a.multi.test", "b.multi.test", "c.multi.test"]
        assert order[3] == "d.multi.test"
        firsts.add(order[0])
        assert d["from_cache"] == (r > 0)
    assert len(firsts) >= 2, firsts


# --------------------------------------------------------------------------------------------------
# cache


def test_ttl_expiry_of_positive_and_negative_answers(dns_lab):
    run = resolve.run(dns_lab, ["ttl.test"], extra=["--repeat", "3", "--interval", "1.3"])
    rounds = [run.by_name("ttl.test", r) for r in range(3)]
    assert [r["from_cache"] for r in rounds] == [False, True, False]
    assert rounds[0]["ttl"] <= 2
    assert all(r["hosts"][0]["dane"] == "authenticate" for r in rounds)

    neg = resolve.run(dns_lab, ["_25._tcp.none.ttl.test"], rtype="TLSA",
                      extra=["--repeat", "3", "--interval", "1.3"])
    rounds = [neg.by_name("_25._tcp.none.ttl.test", r) for r in range(3)]
    assert all(r["security"] == "secure" and r["kind"] in ("nodata", "nxdomain") for r in rounds)
    assert [r["from_cache"] for r in rounds] == [False, True, False]
    assert rounds[0]["ttl"] <= 2


def test_negative_answers_are_cached_and_counted(dns_lab):
    run = resolve.run(dns_lab, ["_25._tcp.mx.no-tlsa.test", "nosuch.test"], rtype="TLSA", extra=["--repeat", "2"])
    for name in ("_25._tcp.mx.no-tlsa.test", "nosuch.test"):
        first, second = run.by_name(name, 0), run.by_name(name, 1)
        assert first["security"] == "secure" and first["kind"] in ("nodata", "nxdomain")
        assert (first["from_cache"], second["from_cache"]) == (False, True)
        assert first["ttl"] > 2
    last = run.stats[-1]["lookup_cache"]
    assert last["hits"] == 2 and last["misses"] == 2 and last["hit_rate"] == 0.5


def test_many_destinations_in_flight_share_one_cache(dns_lab):
    names = [f"d{i}.bench.test" for i in range(150)] + ["dane-ok.test"] * 3
    run = resolve.run(dns_lab, names)
    assert len(run.results) == len(names)
    for r in run.results:
        assert r["mx_security"] == "secure"
        assert all(h["dane"] == "authenticate" for h in r["hosts"])
    counters = run.stats[0]["resolver"]
    # Started at once: 150 domains of one MX host (MX, A, AAAA, TLSA) and dane-ok.test (MX and three
    # hosts) whose three requests share one resolution.
    assert counters["queries_started"] == 150 * 4 + 1 + 3 * 3
    assert counters["bogus"] == counters["failure"] == 0


# --------------------------------------------------------------------------------------------------
# failures: a server that stops answering, malformed answers


def test_server_that_stops_answering_times_out_with_bounded_retries(dns_lab):
    proxy = dns_lab.proxy
    warm = resolve.run(dns_lab, ["h1.flaky.test"], rtype="A")
    assert warm.by_name("h1.flaky.test")["security"] == "secure"
    proxy.stop_answering()
    try:
        proxy.reset_counts()
        run = resolve.run(dns_lab, ["h2.flaky.test"], rtype="A",
                          extra=["--timeout-ms", "3000", "--retries", "2", "--repeat", "2"])
        first, second = run.by_name("h2.flaky.test", 0), run.by_name("h2.flaky.test", 1)
        assert first["security"] == "failure"
        assert "timeout" in first["why"] or "SERVFAIL" in first["why"], first["why"]
        assert first["elapsed_ms"] < 3000 + 500
        assert second["from_cache"] is True and second["security"] == "failure"  # failure TTL
        sent = proxy.queries("h2.flaky.test")
        assert 1 <= sent <= 12, f"{sent} queries for one name: retries are not bounded"
    finally:
        proxy.resume_answering()
    again = resolve.run(dns_lab, ["h3.flaky.test"], rtype="A")
    assert again.by_name("h3.flaky.test")["security"] == "secure"


@pytest.mark.parametrize("name", ["truncated", "wrongclass", "oversized", "garbage", "compressloop"])
def test_malformed_answers_fail_cleanly(dns_lab, name):
    qname = f"{name}.mangled.test"
    for rtype in ("A", "TLSA"):
        run = resolve.run(dns_lab, [qname], rtype=rtype, extra=["--timeout-ms", "4000"])
        r = run.by_name(qname)
        assert r["security"] in ("failure", "insecure"), r
        if r["security"] == "failure":
            assert r["why"], r
        # The zone is insecure: nothing from it can ever be secure, and garbage never becomes data.
        if name in ("truncated", "garbage", "compressloop"):
            assert r["security"] == "failure", r


# --------------------------------------------------------------------------------------------------
# ways to reach DNS, and bad options


@pytest.mark.parametrize("mode", ["hints", "forward"])
def test_full_recursion_from_hints_and_through_a_forwarder(dns_lab, mode):
    run = resolve.run(dns_lab, ["dane-ok.test", "insecure.test", "bad-sig.test"], mode=mode)
    ok = run.by_name("dane-ok.test")
    assert ok["mx_security"] == "secure" and all(h["dane"] == "authenticate" for h in ok["hosts"])
    assert run.by_name("insecure.test")["mx_security"] == "insecure"
    # Through a validating forwarder the tampered answer arrives as SERVFAIL (or, with CD, is found
    # bogus locally); either way it must never be taken as secure or insecure.
    assert run.by_name("bad-sig.test")["mx_state"] in ("bogus", "failure")


def test_bad_options_give_clear_errors(dns_lab, tmp_path):
    binary = resolve.binary_path()
    missing = subprocess.run([binary, "--trust-anchor", "/nonexistent/anchor", "x.test"], capture_output=True, text=True)
    assert missing.returncode == 1 and "cannot read trust anchor file /nonexistent/anchor" in missing.stderr
    junk = tmp_path / "junk.anchor"
    junk.write_text("this is not a trust anchor\n")
    bad = subprocess.run([binary, "--trust-anchor", str(junk), "x.test"], capture_output=True, text=True)
    assert bad.returncode == 1 and "holds no DS or DNSKEY record" in bad.stderr
    fwd = subprocess.run([binary, "--trust-anchor", dns_lab.trust_anchor_file, "--forwarder", "not-an-address", "x.test"],
                         capture_output=True, text=True)
    assert fwd.returncode == 1 and "forwarder address 'not-an-address'" in fwd.stderr
    typ = subprocess.run([binary, "--type", "SRV", "x.test"], capture_output=True, text=True)
    assert typ.returncode == 2 and "unknown type" in typ.stderr


def test_resolver_settings_from_the_gateway_configuration(dns_lab, tmp_path):
    conf = tmp_path / "mxedge.yaml"
    conf.write_text(f"""hostname: mx.lab.test
listeners:
  - {{name: smtp, address: "127.0.0.1:2525", tls_mode: none}}
accepted_domains: [lab.test]
next_hop: {{host: 127.0.0.1, port: 2600}}
spool: {{directory: {tmp_path}}}
workers: {{cores: [0]}}
resolver:
  trust_anchor_file: {dns_lab.trust_anchor_file}
  forwarders: ["{dns_lab.unbound_address}"]
  query_timeout: 4s
""")
    p = subprocess.run([resolve.binary_path(), "--config", str(conf), "--allow-loopback", "--nodefault-zone", "test.",
                        "--no-ipv6", "--json", "dane-ok.test"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    d = [json.loads(line) for line in p.stdout.splitlines()][0]
    assert d["mx_security"] == "secure" and all(h["dane"] == "authenticate" for h in d["hosts"])
    conf.write_text(conf.read_text().replace("query_timeout: 4s", "query_timeout: 4 seconds"))
    bad = subprocess.run([resolve.binary_path(), "--config", str(conf), "dane-ok.test"], capture_output=True, text=True)
    assert bad.returncode == 1 and f"{conf}:11:18:" in bad.stderr and "invalid duration" in bad.stderr, bad.stderr


@pytest.mark.parametrize("edns", ["512", "1232"])
def test_answers_too_large_for_udp_come_over_tcp(dns_lab, edns):
    from lab import dns as dns_mod
    udp = dns_mod.query(dns_lab.nsd_address, "big.dane-ok.test", "A", bufsize=int(edns))
    assert udp is not None and udp.tc  # the server truncates over UDP
    run = resolve.run(dns_lab, ["big.dane-ok.test"], rtype="A", extra=["--edns-buffer-size", edns])
    r = run.by_name("big.dane-ok.test")
    assert r["security"] == "secure" and r["kind"] == "data"
    assert len(r["records"]) == dns_mod.BIG_RRSET


def test_ds_for_the_lab_root_matches_its_trust_anchor(dns_lab):
    p = subprocess.run([resolve.binary_path(), "--ds-for", dns_lab.zone_file(".")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    anchor = open(dns_lab.trust_anchor_file).read().split()
    ds = p.stdout.split()
    # ". TTL IN DS tag alg 2 digest": tag, algorithm, digest type and digest must agree.
    assert ds[3] == "DS" and ds[4:8] == [anchor[4], anchor[5], anchor[6], anchor[7].lower()], (ds, anchor)
    missing = subprocess.run([resolve.binary_path(), "--ds-for", "/nonexistent/zone"], capture_output=True, text=True)
    assert missing.returncode == 1 and "cannot read /nonexistent/zone" in missing.stderr
