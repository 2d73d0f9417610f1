"""Self-tests of the MTA-STS lab (lab/mta_sts.py, the sts.test/stsbench.test zones of lab/dns.py): every
case's policy host as curl sees it, every case's DNS records as the validating resolver (unbound) sees
them, the knobs (set_sts_id/remove_sts_txt, set_policy/set_down), request counters, clean stop.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/lab/test_mta_sts_lab.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pytest

from lab import dns, mta_sts, util
from lab.mta_sts import STS_CASES, policy_text

CURL = "/usr/bin/curl"


@dataclass
class Fetch:
    rc: int
    status: int
    headers: dict[str, list[str]]      # lower-case names
    body: bytes
    stderr: str
    starttransfer: float               # seconds until the first response octet

    def header(self, name: str) -> str | None:
        v = self.headers.get(name.lower())
        return v[-1] if v else None


def fetch(srv: mta_sts.StsHttpsServer, case: str, *opts: str, max_time: float = 5) -> Fetch:
    with tempfile.TemporaryDirectory(prefix="sts-curl-") as d:
        hdr, body = os.path.join(d, "h"), os.path.join(d, "b")
        cp = subprocess.run([CURL, "-sS", "--max-time", str(max_time), *srv.curl_args(case), *opts,
                             "-D", hdr, "-o", body, "-w", "%{http_code} %{time_starttransfer}", srv.url(case)],
                            capture_output=True, text=True, timeout=max_time + 10)
        headers: dict[str, list[str]] = {}
        for line in util.read_text(hdr).split("\r\n")[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.setdefault(k.strip().lower(), []).append(v.strip())
        try:
            with open(body, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
    code, start = (cp.stdout.split() + ["0", "0"])[:2]
    return Fetch(cp.returncode, int(code), headers, data, cp.stderr, float(start))


def txt_strings(rdata: bytes) -> list[str]:
    out, i = [], 0
    while i < len(rdata):
        n = rdata[i]
        out.append(rdata[i + 1:i + 1 + n].decode())
        i += 1 + n
    return out


def ask(lab, name: str, rtype: str, server: str | None = None) -> dns.Message:
    m = dns.query(server or lab.unbound_address, name, rtype, rd=server is None)
    assert m is not None, f"no answer for {name} {rtype}"
    return m


def txts(m: dns.Message) -> list[list[str]]:
    return sorted(txt_strings(r.rdata) for r in m.answers("TXT"))


def a_records(m: dns.Message) -> list[str]:
    return [".".join(str(b) for b in r.rdata) for r in m.answers("A")]


# --------------------------------------------------------------------------------------------------
# HTTPS


@pytest.mark.parametrize("name", list(STS_CASES))
def test_policy_host(mta_sts_server, name):
    srv, c = mta_sts_server, STS_CASES[name]
    body = (c.policy_body() or "").encode()
    if c.tls != "ok":
        f = fetch(srv, name)
        assert f.rc == 60 and f.status == 0, f
        reason = {"expired": "certificate has expired",
                  "wrongsan": f"no alternative certificate subject name matches target host name '{c.policy_host}'",
                  "untrusted": "self-signed certificate in certificate chain"}[c.tls]
        assert reason in f.stderr, f.stderr
        # without verification (or, for untrusted, trusting its CA) the policy is there
        opts = ("--cacert", srv.pki.other_ca.pem) if c.tls == "untrusted" else ("-k",)
        f = fetch(srv, name, *opts)
        assert f.rc == 0 and f.status == 200 and f.body == body, f
        return
    if c.http == "slow":
        f = fetch(srv, name, max_time=2)
        assert f.rc == 28 and f.status == 200, f
        assert f.starttransfer < 1.5 and f.header("content-length") == str(len(body))
        assert 50 < len(f.body) < 600 and body.startswith(f.body), len(f.body)
        return
    f = fetch(srv, name)
    assert f.rc == 0, f
    if c.http in ("ok", "wrongtype", "typeparams", "oversize"):
        ctype = {"wrongtype": "text/html", "typeparams": "text/plain; charset=utf-8"}.get(c.http, "text/plain")
        assert (f.status, f.header("content-type"), f.body) == (200, ctype, body)
        assert f.header("content-length") == str(len(body)) and f.header("transfer-encoding") is None
        if c.http == "oversize":
            assert len(body) == mta_sts.OVERSIZE > mta_sts.MAX_POLICY_SIZE
            assert body.startswith(policy_text("enforce", [c.mx_host]).encode())
    elif c.http == "oversizechunked":
        assert (f.status, f.header("content-type"), f.body) == (200, "text/plain", body)
        assert f.header("content-length") is None and f.header("transfer-encoding") == "chunked"
        assert len(body) == mta_sts.OVERSIZE
        f = fetch(srv, name, "--http1.0")            # HTTP/1.0: the end of the body is the EOF
        assert f.status == 200 and f.body == body and f.header("content-length") is None
        assert f.header("transfer-encoding") is None
    elif c.http == "notfound":
        assert f.status == 404
    elif c.http == "redirect":
        assert f.status == 301 and f.header("location") == f"https://mta-sts.valid.sts.test{mta_sts.POLICY_PATH}"
    elif c.http == "servererror":
        assert f.status == 500
    else:
        pytest.fail(f"untested behaviour {c.http}")


def test_bench_hosts_and_unknown_names(mta_sts_server):
    srv = mta_sts_server
    for i in (0, 99, 100, srv.bench_domains - 1):
        f = fetch(srv, f"b{i}")
        assert (f.rc, f.status, f.header("content-type")) == (0, 200, "text/plain"), f
        assert f.body.decode() == mta_sts.bench_policy(i) == srv.policy(f"b{i}")
    try:
        srv.set_policy("b3", "version: STSv1\n")                  # a file overrides the generated policy
        assert fetch(srv, "b3").body == b"version: STSv1\n"
    finally:
        srv.set_policy("b3", None)
    assert fetch(srv, "b3").body.decode() == mta_sts.bench_policy(3)
    # an SNI name nobody serves: the handshake is refused
    f = fetch(srv, "nosuch.sts.test")
    assert f.rc == 35 and f.status == 0, f


# --------------------------------------------------------------------------------------------------
# DNS


def test_sts_records(dns_lab):
    lab = dns_lab
    for c in STS_CASES.values():
        d = c.domain
        m = ask(lab, f"mta-sts.{d}", "A")
        assert m.ad and a_records(m) == [lab.https_address], (d, m)
        m = ask(lab, d, "MX")
        assert m.ad and len(m.answers("MX")) == 1 and m.answers("MX")[0].rdata[:2] == b"\x00\x0a"
        assert a_records(ask(lab, f"mx.{d}", "A")) == ["127.0.0.1"]
        m = ask(lab, c.txt_name, "TXT")
        if c.dns == "servfail":
            assert m.rcode_name == "SERVFAIL" and not m.answer, m
            continue
        assert m.ad, (d, m)
        expected = {"twotxt": [["v=STSv1; id=twotxt1;"], ["v=STSv1; id=twotxt2;"]],
                    "badid": [["v=STSv1; id=2016-08;"]],
                    "split": [["v=STSv1; ", "id=split1;"]],
                    "cname": [["v=STSv1; id=valid1;"]],
                    "notxt": [],
                    "unrelated": [["v=spf1 -all"]]}.get(c.name, [[f"v=STSv1; id={c.name}1;"]])
        assert txts(m) == expected, (d, m)
        assert m.rcode_name == ("NXDOMAIN" if c.name == "notxt" else "NOERROR")
        assert len(m.answers("CNAME")) == (1 if c.name == "cname" else 0)
        assert all(r.ttl <= mta_sts.STS_TXT_TTL for r in m.answers("TXT"))
    # drill's presentation of the split record: two character-strings
    cp = subprocess.run(["drill", f"@{lab.unbound_address}", "_mta-sts.split.sts.test", "TXT"],
                        capture_output=True, text=True, timeout=15)
    assert '"v=STSv1; " "id=split1;"' in cp.stdout, cp.stdout
    # txtservfail: the proxy itself SERVFAILs only the _mta-sts TXT query
    m = ask(lab, "_mta-sts.txtservfail.sts.test", "TXT", server=lab.proxy_address)
    assert m.rcode_name == "SERVFAIL"
    m = ask(lab, "_mta-sts.txtservfail.sts.test", "TXT", server=lab.backend_address)
    assert txts(m) == [["v=STSv1; id=txtservfail1;"]]
    # benchmark domains
    for i in (0, lab.sts_bench_domains - 1):
        d = mta_sts.bench_domain(i)
        m = ask(lab, f"_mta-sts.{d}", "TXT")
        assert m.ad and txts(m) == [[f"v=STSv1; id={mta_sts.BENCH_ID};"]]
        assert a_records(ask(lab, f"mta-sts.{d}", "A")) == [lab.https_address]
        assert a_records(ask(lab, f"mx.{d}", "A")) == ["127.0.0.1"]
        assert ask(lab, d, "MX").ad


def test_set_sts_id_and_remove(dns_lab):
    lab = dns_lab
    name = "_mta-sts.changing.sts.test"
    assert txts(ask(lab, name, "TXT")) == [["v=STSv1; id=changing1;"]]       # now cached by unbound
    try:
        t0 = time.monotonic()
        lab.set_sts_id("changing", "changing2")
        assert time.monotonic() - t0 < 5
        assert txts(ask(lab, name, "TXT", server=lab.nsd_address)) == [["v=STSv1; id=changing2;"]]
        m = ask(lab, name, "TXT")
        assert m.ad and txts(m) == [["v=STSv1; id=changing2;"]]
        assert lab.sts_txt("changing") == ['TXT "v=STSv1; id=changing2;"']
        lab.remove_sts_txt("changing")
        m = ask(lab, name, "TXT")
        assert m.ad and m.rcode_name == "NXDOMAIN" and not m.answer
        assert a_records(ask(lab, "mta-sts.changing.sts.test", "A")) == [lab.https_address]
        lab.set_sts_id("changing", "changing3")                                # after a negative answer
        assert txts(ask(lab, name, "TXT")) == [["v=STSv1; id=changing3;"]]
    finally:
        lab.set_sts_txt("changing", None)
    assert txts(ask(lab, name, "TXT")) == [["v=STSv1; id=changing1;"]]
    # the child zone behind the proxy, and a benchmark domain
    try:
        lab.set_sts_id("txtservfail", "tsf2")
        m = ask(lab, "_mta-sts.txtservfail.sts.test", "TXT", server=lab.backend_address)
        assert txts(m) == [["v=STSv1; id=tsf2;"]]
        assert ask(lab, "_mta-sts.txtservfail.sts.test", "TXT").rcode_name == "SERVFAIL"
        lab.set_sts_id("b7", "bench2")
        assert txts(ask(lab, "_mta-sts.b7.stsbench.test", "TXT")) == [["v=STSv1; id=bench2;"]]
        assert txts(ask(lab, "_mta-sts.b8.stsbench.test", "TXT")) == [["v=STSv1; id=bench1;"]]
    finally:
        lab.set_sts_txt("txtservfail", None)
        lab.set_sts_txt("b7", None)
    assert txts(ask(lab, "_mta-sts.b7.stsbench.test", "TXT")) == [["v=STSv1; id=bench1;"]]


# --------------------------------------------------------------------------------------------------
# knobs and counters


def test_set_policy_and_down(mta_sts_server):
    srv = mta_sts_server
    original = srv.policy("changing")
    assert original == STS_CASES["changing"].policy_body()
    new = policy_text("testing", ["mx.changing.sts.test", "*.changing.sts.test"], max_age=604800)
    try:
        srv.set_policy("changing", new)
        f = fetch(srv, "changing")
        assert (f.status, f.body.decode()) == (200, new)
        srv.set_down("changing", True)
        f = fetch(srv, "changing")
        assert f.rc == 0 and f.status == 503
        assert fetch(srv, "valid").status == 200                 # only that host
        srv.set_down("changing", False)
        assert fetch(srv, "changing").body.decode() == new
        srv.set_policy("changing", None)
        assert fetch(srv, "changing").status == 404
        # policy and id together
        srv.set_policy("changing", original, new_id="changing9")
        assert srv.lab.sts_txt("changing") == ['TXT "v=STSv1; id=changing9;"']
        assert fetch(srv, "changing").body.decode() == original
    finally:
        srv.lab.set_sts_txt("changing", None)
        srv.set_down("changing", False)
        srv.set_policy("changing", original)
    assert fetch(srv, "changing").body.decode() == original


def test_request_counters(mta_sts_server):
    srv = mta_sts_server
    srv.reset_requests()
    assert srv.requests() == 0 and srv.requests("valid") == 0
    for _ in range(3):
        assert fetch(srv, "valid").status == 200
    assert fetch(srv, "redirect").status == 301                  # (curl does not follow without -L)
    assert fetch(srv, "b5").status == 200
    assert fetch(srv, "expiredcert").rc == 60                    # no request: the handshake failed
    srv.wait_requests("b5", 1)
    assert srv.wait_requests("valid", 3) == 3
    assert srv.requests("redirect") == 1 and srv.requests("expiredcert") == 0
    assert srv.requests("mta-sts.b5.stsbench.test") == 1 and srv.requests() == 5
    e = [x for x in srv.log_entries() if x["host"] == "mta-sts.redirect.sts.test"]
    assert len(e) == 1 and (e[0]["status"], e[0]["sni"], e[0]["method"]) == (301, "mta-sts.redirect.sts.test", "GET")
    srv.reset_requests()
    assert srv.requests("valid") == 0


def test_startup_and_stop(mta_sts_server, dns_lab, lab_root, lab_pki):
    assert mta_sts_server.startup_seconds < 20 and dns_lab.startup_seconds < 20
    assert mta_sts_server.address == dns_lab.https_address and mta_sts_server.port == 443
    assert mta_sts_server.ca_file == lab_pki.ca_pem
    # a second, small server on another address: stop() with a request in flight leaves nothing
    address = f"{dns_lab.prefix}.6"
    if not dns._tcp_port_free(address, 443):
        pytest.skip(f"{address}:443 in use")
    cases = {k: STS_CASES[k] for k in ("valid", "slow")}
    srv = mta_sts.StsHttpsServer(lab_root.unique_sub("sts-stop"), address, lab_pki, cases=cases, bench_domains=2)
    curl = None
    try:
        srv.start()
        pids = srv.pids()
        assert len(pids) == 2 and srv.pid in pids                  # master and one worker
        assert not dns._tcp_port_free(address, 443)
        assert fetch(srv, "b1").status == 200 and fetch(srv, "valid").status == 200
        assert fetch(srv, "testing").rc == 35                      # not served here
        curl = subprocess.Popen([CURL, "-sS", *srv.curl_args("slow"), "-o", "/dev/null", srv.url("slow")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        assert curl.poll() is None
        srv.stop()
        assert curl.wait(10) != 0                                  # cut off
        assert not any(util.pid_alive(p) for p in pids)
        assert [p for p, _comm, fields in util.proc_stats() if int(fields[2]) == pids[0]] == []
        assert dns._tcp_port_free(address, 443) and not srv.running and srv.pids() == []
        srv.stop()                                                 # idempotent
    finally:
        if curl is not None and curl.poll() is None:
            curl.kill()
            curl.wait()
        srv.stop()
