"""Self-tests of the DNS lab (lab/dns.py): every case zone as a validating resolver (unbound, asked with
drill) sees it, the proxy's misbehaviour and counters, TLSA data against openssl, clean stop.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/lab/test_dns_lab.py
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

import pytest

from lab import dns, util


@dataclass
class Drill:
    rcode: str
    flags: set[str]
    answers: list[tuple[str, str, str, int]]     # (owner, type, rdata text, ttl)
    text: str

    @property
    def ad(self) -> bool:
        return "ad" in self.flags

    def data(self, rtype: str) -> list[str]:
        return [rdata for _, t, rdata, _ in self.answers if t == rtype]


def drill(lab, name: str, rtype: str = "A", *opts: str, timeout: float = 15) -> Drill:
    cp = subprocess.run(["drill", "-D", *opts, f"@{lab.unbound_address}", name, rtype],
                        capture_output=True, text=True, timeout=timeout)
    text = cp.stdout
    m = re.search(r"rcode: (\w+)", text)
    assert m, f"drill {name} {rtype}: no header in\n{text}\n{cp.stderr}"
    flags = set(re.search(r";; flags: ([a-z ]*);", text).group(1).split())
    answers = []
    section = None
    for line in text.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            section = "answer"
            continue
        if line.startswith(";;"):
            section = None if line.startswith(";; AUTHORITY") or line.startswith(";; ADDITIONAL") else section
            continue
        if section == "answer" and line.strip():
            f = line.split(None, 4)
            answers.append((f[0].lower(), f[3], f[4].strip() if len(f) > 4 else "", int(f[1])))
    return Drill(m.group(1), flags, answers, text)


def secure(r: Drill, rcode: str = "NOERROR") -> Drill:
    assert r.rcode == rcode and r.ad, r.text
    return r


def insecure(r: Drill) -> Drill:
    assert r.rcode == "NOERROR" and not r.ad and r.answers, r.text
    return r


def tlsa_rdata(records) -> set[str]:
    return {f"{u} {s} {m} {h}" for u, s, m, h in records}


# --------------------------------------------------------------------------------------------------
# secure


def test_dane_ok(dns_lab):
    r = secure(drill(dns_lab, "dane-ok.test", "MX"))
    assert sorted(r.data("MX")) == ["10 mx1.dane-ok.test.", "20 mx2.dane-ok.test.", "30 mx3.dane-ok.test."]
    expected = {"mx1": {(3, 1, 1)}, "mx2": {(2, 1, 1)}, "mx3": {(2, 0, 1)}}
    for host in ("mx1", "mx2", "mx3", "mixed", "badlen"):
        name = f"{host}.dane-ok.test"
        t = secure(drill(dns_lab, f"_25._tcp.{name}", "TLSA"))
        assert set(t.data("TLSA")) == tlsa_rdata(dns_lab.tlsa(name)), t.text
        if host in expected:
            assert {tuple(x[:3]) for x in dns_lab.tlsa(name)} == expected[host]
        assert secure(drill(dns_lab, name, "A")).data("A") == ["127.0.0.1"]
        assert secure(drill(dns_lab, name, "AAAA")).data("AAAA") == ["::1"]
    digests = [len(h) // 2 for *_, h in dns_lab.tlsa("badlen.dane-ok.test")]
    assert sorted(digests) == [20, 32]
    assert sorted(len(h) // 2 for *_, h in dns_lab.tlsa("mixed.dane-ok.test")) == [20, 32]


def test_secure_denials(dns_lab):
    # no TLSA: the TLSA owner does not exist (NXDOMAIN); asking the host name itself is NODATA
    for zone in ("no-tlsa.test", "no-tlsa-nsec3.test"):
        secure(drill(dns_lab, zone, "MX"))
        r = secure(drill(dns_lab, f"_25._tcp.mx.{zone}", "TLSA"), "NXDOMAIN")
        assert not r.answers
        r = secure(drill(dns_lab, f"mx.{zone}", "TLSA"))
        assert not r.answers, r.text
    secure(drill(dns_lab, "nosuch.test", "A"), "NXDOMAIN")
    secure(drill(dns_lab, "nosuch.dane-ok.test", "MX"), "NXDOMAIN")
    secure(drill(dns_lab, "_25._tcp.none.ttl.test", "TLSA"), "NXDOMAIN")
    secure(drill(dns_lab, "_25._tcp.a.multi.test", "TLSA"), "NXDOMAIN")


def test_other_secure_cases(dns_lab):
    assert secure(drill(dns_lab, "null-mx.test", "MX")).data("MX") == ["0 ."]
    # no MX: NODATA, but address and TLSA at the domain itself
    assert not secure(drill(dns_lab, "nomx.test", "MX")).answers
    secure(drill(dns_lab, "nomx.test", "A"))
    t = secure(drill(dns_lab, "_25._tcp.nomx.test", "TLSA"))
    assert set(t.data("TLSA")) == tlsa_rdata(dns_lab.tlsa("nomx.test"))
    assert sorted(secure(drill(dns_lab, "multi.test", "MX")).data("MX")) == [
        "10 a.multi.test.", "10 b.multi.test.", "10 c.multi.test.", "20 d.multi.test."]
    secure(drill(dns_lab, "optout.test", "MX"))
    secure(drill(dns_lab, "mx.optout.test", "A"))
    # TLSA only with PKIX usages
    t = secure(drill(dns_lab, "_25._tcp.mx.unusable-tlsa.test", "TLSA"))
    assert sorted(x.split()[0] for x in t.data("TLSA")) == ["0", "1"]
    # secure MX pointing at an insecure host
    assert secure(drill(dns_lab, "mx-insecure-host.test", "MX")).data("MX") == ["10 mx.insecure.test."]
    insecure(drill(dns_lab, "mx.insecure.test", "A"))
    # CNAME secure -> secure; TLSA at both the expanded and the original name
    r = secure(drill(dns_lab, "mx.cname-secure.test", "A"))
    assert r.data("CNAME") == ["mx1.dane-ok.test."] and r.data("A") == ["127.0.0.1"]
    t = secure(drill(dns_lab, "_25._tcp.mx.cname-secure.test", "TLSA"))
    assert set(t.data("TLSA")) == tlsa_rdata(dns_lab.tlsa("mx.cname-secure.test"))
    assert dns_lab.tlsa("mx.cname-secure.test") != dns_lab.tlsa("mx1.dane-ok.test")
    r = secure(drill(dns_lab, "alt.cname-secure.test", "A"))
    assert r.data("CNAME") == ["mx.no-tlsa.test."]
    secure(drill(dns_lab, "_25._tcp.mx.no-tlsa.test", "TLSA"), "NXDOMAIN")
    secure(drill(dns_lab, "_25._tcp.alt.cname-secure.test", "TLSA"))
    # short TTLs
    r = secure(drill(dns_lab, "ttl.test", "MX"))
    assert all(ttl <= 2 for *_, ttl in r.answers), r.text
    # benchmark names, first and last
    for i in (0, dns_lab.bench_domains - 1):
        d = f"d{i}.bench.test"
        assert secure(drill(dns_lab, d, "MX")).data("MX") == [f"10 mx.{d}."]
        t = secure(drill(dns_lab, f"_25._tcp.mx.{d}", "TLSA"))
        assert set(t.data("TLSA")) == tlsa_rdata(dns_lab.tlsa(f"mx.{d}"))
    # proxy zones answer normally for what the proxy does not break
    secure(drill(dns_lab, "flaky.test", "MX"))
    secure(drill(dns_lab, "h50.flaky.test", "A"))


# --------------------------------------------------------------------------------------------------
# insecure and bogus


def test_insecure_cases(dns_lab):
    insecure(drill(dns_lab, "insecure.test", "MX"))
    insecure(drill(dns_lab, "_25._tcp.mx.insecure.test", "TLSA"))
    insecure(drill(dns_lab, "unsupported-alg.test", "MX"))     # DS algorithm 200: insecure, not bogus
    insecure(drill(dns_lab, "sub.optout.test", "MX"))          # opt-out NSEC3: insecure delegation
    assert insecure(drill(dns_lab, "insecure-mx.test", "MX")).data("MX") == ["10 mx1.dane-ok.test."]
    r = insecure(drill(dns_lab, "mx.cname-insecure.test", "A"))  # secure CNAME -> insecure target
    assert r.data("CNAME") == ["host.insecure.test."] and r.data("A") == ["127.0.0.1"]
    # the MX itself is secure, and the TLSA at the original name exists (must not be used)
    secure(drill(dns_lab, "cname-insecure.test", "MX"))
    secure(drill(dns_lab, "_25._tcp.mx.cname-insecure.test", "TLSA"))


def test_bogus_cases(dns_lab):
    for name in ("ds-mismatch.test", "bad-sig.test", "expired.test"):
        r = drill(dns_lab, name, "MX")
        assert r.rcode == "SERVFAIL" and not r.answers, r.text
        # with checking disabled the data is there: it is the validation that fails
        r = drill(dns_lab, name, "MX", "-o", "CD")
        assert r.rcode == "NOERROR" and r.data("MX") == [f"10 mx.{name}."], r.text
    # bad-sig only breaks the MX RRSIG
    secure(drill(dns_lab, "mx.bad-sig.test", "A"))
    log = dns_lab.unbound_log()
    assert "validation failure <ds-mismatch.test. MX IN>" in log
    assert "validation failure <bad-sig.test. MX IN>: signature crypto failed" in log
    assert "validation failure <expired.test. MX IN>: signature expired" in log


def test_tlsa_servfail(dns_lab):
    dns_lab.proxy.reset_counts()
    r = drill(dns_lab, "_25._tcp.mx.tlsa-servfail.test", "TLSA")
    assert r.rcode == "SERVFAIL", r.text
    assert dns_lab.proxy.queries("_25._tcp.mx.tlsa-servfail.test", "TLSA") >= 1
    secure(drill(dns_lab, "tlsa-servfail.test", "MX"))
    secure(drill(dns_lab, "mx.tlsa-servfail.test", "A"))
    # the proxy's answer itself
    m = dns.query(dns_lab.proxy_address, "_25._tcp.mx.tlsa-servfail.test", "TLSA", rd=False)
    assert m.rcode_name == "SERVFAIL" and m.question.qname == "_25._tcp.mx.tlsa-servfail.test."


def test_tlsa_timeout(dns_lab):
    secure(drill(dns_lab, "mx.tlsa-timeout.test", "A"))
    dns_lab.proxy.reset_counts()
    try:
        r = drill(dns_lab, "_25._tcp.mx.tlsa-timeout.test", "TLSA", timeout=3)
        assert r.rcode == "SERVFAIL", r.text
    except subprocess.TimeoutExpired:
        pass    # unbound gives up after about 10 s
    assert dns_lab.proxy.queries("_25._tcp.mx.tlsa-timeout.test", "TLSA") >= 1
    assert dns.query(dns_lab.proxy_address, "_25._tcp.mx.tlsa-timeout.test", "TLSA", timeout=0.5) is None


# --------------------------------------------------------------------------------------------------
# the proxy


def test_proxy_counters_and_flaky(dns_lab):
    p = dns_lab.proxy
    addr = dns_lab.proxy_address
    # (unbound may still be retrying the dropped TLSA query of test_tlsa_timeout: only flaky names
    # are counted here)
    p.reset_counts()
    assert p.queries("h7.flaky.test") == 0
    m = dns.query(addr, "h7.flaky.test", "A", rd=False)
    assert m.rcode == 0 and m.aa and [r.rdata for r in m.answers("A")] == [bytes([127, 0, 0, 1])]
    assert dns.query(addr, "H7.Flaky.Test.", "A", tcp=True, rd=False).rcode == 0
    assert p.queries("h7.flaky.test") == 2
    assert p.queries("h7.flaky.test.", "A") == 2 and p.queries("H7.FLAKY.TEST", 1) == 2
    assert p.queries("h7.flaky.test", "AAAA") == 0
    assert sum(n for (name, t), n in p.query_log().items() if name.endswith("flaky.test") and t == 1) == 2
    p.stop_answering()
    try:
        assert dns.query(addr, "h8.flaky.test", "A", timeout=0.5) is None
        assert dns.query(addr, "h8.flaky.test", "A", timeout=0.5, tcp=True) is None
        # other proxy zones are not affected
        assert dns.query(addr, "mx.tlsa-servfail.test", "A", timeout=2).rcode == 0
    finally:
        p.resume_answering()
    assert dns.query(addr, "h8.flaky.test", "A").rcode == 0
    assert p.queries("h8.flaky.test") == 3
    p.reset_counts()
    assert p.queries("h8.flaky.test") == 0 and p.queries("h7.flaky.test") == 0


def test_proxy_mangles(dns_lab):
    addr = dns_lab.proxy_address

    def raw(name, rtype, tcp=False):
        reply = dns.exchange(addr, dns.build_query(name, rtype, rd=False), tcp=tcp)
        assert reply is not None
        return reply

    for name, rtype in (("truncated.mangled.test", "A"), ("_25._tcp.truncated.mangled.test", "TLSA")):
        r = raw(name, rtype)
        assert not dns.parse_question(r).flags & dns.FLAG_TC
        with pytest.raises(dns.DnsFormatError):
            dns.parse_message(r)
    for rtype in ("A", "TLSA"):
        name = ("_25._tcp." if rtype == "TLSA" else "") + "wrongclass.mangled.test"
        m = dns.parse_message(raw(name, rtype))
        assert m.answer and all(r.rclass == 3 for r in m.answer)
    r = raw("oversized.mangled.test", "A")
    assert len(r) > 4096 and not dns.parse_question(r).flags & dns.FLAG_TC
    assert len(dns.parse_message(r).answers("A")) > 100
    assert len(dns.parse_message(raw("oversized.mangled.test", "A", tcp=True)).answers("A")) == 1
    for name, rtype in (("garbage.mangled.test", "A"), ("_25._tcp.garbage.mangled.test", "TLSA"),
                        ("compressloop.mangled.test", "A")):
        for tcp in (False, True):
            with pytest.raises(dns.DnsFormatError):
                dns.parse_message(raw(name, rtype, tcp))
    with pytest.raises(dns.DnsFormatError, match="loop"):
        dns.parse_message(raw("compressloop.mangled.test", "A"))
    # a validating resolver refuses all of these
    for kind in ("truncated", "garbage", "compressloop"):
        assert drill(dns_lab, f"{kind}.mangled.test", "A").rcode == "SERVFAIL"


# --------------------------------------------------------------------------------------------------
# artifacts


def _sha256_of(shell: str) -> str:
    out = subprocess.run(["sh", "-c", shell + " | sha256sum"], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def test_tlsa_data_match_openssl(dns_lab, lab_pki):
    leaf, ca = lab_pki.ecdsa.cert, lab_pki.ca_pem
    leaf_spki = _sha256_of(f"openssl x509 -in {leaf} -pubkey -noout | openssl pkey -pubin -outform DER")
    ca_spki = _sha256_of(f"openssl x509 -in {ca} -pubkey -noout | openssl pkey -pubin -outform DER")
    ca_cert = _sha256_of(f"openssl x509 -in {ca} -outform DER")
    assert dns_lab.tlsa("mx1.dane-ok.test") == [(3, 1, 1, leaf_spki)]
    assert dns_lab.tlsa("MX2.dane-ok.test.") == [(2, 1, 1, ca_spki)]
    assert dns_lab.tlsa("mx3.dane-ok.test") == [(2, 0, 1, ca_cert)]
    assert dns_lab.tlsa("mx.unusable-tlsa.test") == [(0, 0, 1, ca_cert), (1, 1, 1, leaf_spki)]
    assert (3, 1, 1, leaf_spki) in dns_lab.tlsa("mixed.dane-ok.test")
    assert dns_lab.tlsa("mx.no-tlsa.test") == []
    # and what is served is what lab.tlsa() says
    t = secure(drill(dns_lab, "_25._tcp.mx1.dane-ok.test", "TLSA"))
    assert t.data("TLSA") == [f"3 1 1 {leaf_spki}"]


def test_artifacts(dns_lab):
    prefix = dns_lab.prefix
    assert re.fullmatch(r"127\.53\.\d{1,3}", prefix)
    assert (dns_lab.nsd_address, dns_lab.proxy_address, dns_lab.unbound_address) == (
        f"{prefix}.1", f"{prefix}.2", f"{prefix}.3")
    anchor = util.read_text(dns_lab.trust_anchor_file)
    assert len(anchor.splitlines()) == 1
    f = anchor.split()
    assert f[0] == "." and f[3] == "DS" and f[5] == "13" and f[6] == "2"
    # the anchor matches the root's DNSKEY as served
    cp = subprocess.run(["drill", "-s", "-D", f"@{dns_lab.nsd_address}", ".", "DNSKEY"], capture_output=True,
                        text=True, check=True)
    assert f[7].lower() in cp.stdout.lower()
    hints = util.read_text(dns_lab.root_hints_file)
    assert "ns.nic.test." in hints and dns_lab.nsd_address in hints
    assert dns_lab.resolver_config() == {"trust_anchor_file": dns_lab.trust_anchor_file,
                                         "root_hints_file": dns_lab.root_hints_file,
                                         "stub_address": dns_lab.nsd_address}
    assert dns_lab.resolv_conf_text() == f"nameserver {dns_lab.unbound_address}\n"
    assert os.path.isdir(dns_lab.zone_dir) and os.path.exists(dns_lab.zone_file("dane-ok.test"))
    for zone in ("dane-ok.test", "bad-sig.test", "tlsa-timeout.test", "mangled.test", "bench.test"):
        assert zone in dns_lab.cases
    assert "is running" in dns_lab.unbound_control("status")
    dns_lab.unbound_control("flush_zone", ".")
    secure(drill(dns_lab, "dane-ok.test", "MX"))
    dns_lab.unbound_control("reload")
    util.wait_until(lambda: "is running" in dns_lab.unbound_control("status", check=False), 10)
    secure(drill(dns_lab, "dane-ok.test", "MX"))
    assert dns_lab.startup_seconds < 20


def test_stop_frees_everything(lab_root, lab_pki):
    d = lab_root.unique_sub("dns-stop")
    lab = dns.DnsLab(d, leaf_cert=lab_pki.ecdsa.cert, ca_cert=lab_pki.ca_pem, bench_domains=10)
    try:
        lab.start()
        lab.start_unbound()
        pids = lab.pids()
        assert len(pids) == 3 and all(util.pid_alive(p) for p in pids)
        assert not dns.addresses_free(lab.prefix)
        secure(drill(lab, "dane-ok.test", "MX"))
        lab.stop()
        assert not any(util.pid_alive(p) for p in pids)
        assert dns.addresses_free(lab.prefix)
        lab.stop()                       # idempotent
        # nothing of their process groups either (NSD's xfrd/main/server processes), not even zombies
        left = [(p, comm) for p, comm, fields in util.proc_stats() if int(fields[2]) in pids]
        assert left == []
    finally:
        lab.cleanup()
    assert not os.path.exists(os.path.join(d, "zones")) and not os.path.exists(os.path.join(d, "keys"))


def test_wire_helpers():
    assert dns.encode_name("a.b.") == b"\x01a\x01b\x00" and dns.encode_name(".") == b"\x00"
    q = dns.build_query("Example.Test", "TLSA", qid=7)
    parsed = dns.parse_question(q)
    assert (parsed.id, parsed.qname, parsed.qtype) == (7, "Example.Test.", 52)
    with pytest.raises(dns.DnsFormatError, match="loop"):
        dns.read_name(b"\x00" * 12 + b"\x01x\xc0\x0c", 12)
