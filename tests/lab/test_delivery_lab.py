"""Self-tests of the delivery lab (lab/delivery.py): every case is what it claims. DNS security as
unbound (validating) sees it, the certificate each receiver serves against the TLSA data in DNS
(openssl s_client, including its own DANE check) or the MTA-STS policy, the STARTTLS-stripping proxy,
delivery into each receiver's Maildir with swaks, connection counters, stop and restart.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/lab/test_delivery_lab.py
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass

import pytest

from lab import delivery, swaks, util
from lab.smtp_client import SMTPClient

CASES = list(delivery.DELIVERY_CASES)
# every MX host, and the receiver behind the proxy (reached directly)
DIRECT_HOSTS = [m.host for c in delivery.DELIVERY_CASES.values() for m in c.mx if m.served_by != "proxy"]
PROXY_HOSTS = [m.host for c in delivery.DELIVERY_CASES.values() for m in c.mx if m.served_by == "proxy"]


# --------------------------------------------------------------------------------------------------
# helpers


@dataclass
class Drill:
    rcode: str
    flags: set[str]
    answers: list[tuple[str, str, str]]      # (owner, type, rdata text)
    text: str

    @property
    def ad(self) -> bool:
        return "ad" in self.flags

    def data(self, rtype: str) -> list[str]:
        return [rdata for _, t, rdata in self.answers if t == rtype]


def drill(lab, name: str, rtype: str, *opts: str) -> Drill:
    """Ask the lab's unbound (DO bit set) with drill."""
    cp = subprocess.run(["drill", "-D", *opts, f"@{lab.unbound_address}", name, rtype],
                        capture_output=True, text=True, timeout=20)
    text = cp.stdout
    m = re.search(r"rcode: (\w+)", text)
    assert m, f"drill {name} {rtype}: no header in\n{text}\n{cp.stderr}"
    flags = set(re.search(r";; flags: ([a-z ]*);", text).group(1).split())
    answers, section = [], None
    for line in text.splitlines():
        if line.startswith(";;"):
            section = "answer" if line.startswith(";; ANSWER SECTION") else None
            continue
        if section == "answer" and line.strip():
            f = line.split(None, 4)
            answers.append((f[0].lower().rstrip("."), f[3], f[4].strip() if len(f) > 4 else ""))
    return Drill(m.group(1), flags, answers, text)


def tlsa_text(records) -> set[str]:
    return {f"{u} {s} {m} {h}" for u, s, m, h in records}


def norm_tlsa(rdata: str) -> str:
    """drill may split the digest into several words."""
    f = rdata.split()
    return f"{f[0]} {f[1]} {f[2]} {''.join(f[3:]).lower()}"


@dataclass
class Served:
    text: str
    pems: list[str]

    def _der(self, pem: str, *args: str) -> bytes:
        cp = subprocess.run(["openssl", "x509", *args, "-outform", "DER"], input=pem.encode(),
                            capture_output=True, timeout=10)
        assert cp.returncode == 0, cp.stderr
        return cp.stdout

    def cert_sha256(self, i: int) -> str:
        return hashlib.sha256(self._der(self.pems[i])).hexdigest()

    def spki_sha256(self, i: int) -> str:
        pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=self.pems[i].encode(),
                             capture_output=True, timeout=10).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                             capture_output=True, timeout=10).stdout
        assert der, "no SPKI"
        return hashlib.sha256(der).hexdigest()

    def names(self, i: int = 0) -> list[str]:
        out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"],
                             input=self.pems[i], capture_output=True, text=True, timeout=10).stdout
        return re.findall(r"DNS:([^,\s]+)", out)

    @property
    def verified(self) -> bool:
        return bool(self.pems) and bool(re.search(r"Verify return code: 0 \(ok\)", self.text))


def s_client(address: str, servername: str, *extra: str) -> Served:
    cp = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"{address}:25",
                         "-servername", servername, "-showcerts", "-name", "client.example.test", *extra],
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", cp.stdout, re.S)
    return Served(cp.stdout + cp.stderr, pems)


# --------------------------------------------------------------------------------------------------
# the table


def test_nothing_contacted_at_start(delivery_lab):
    # first test of the module: the lab's own start-up (and nobody else) opened no SMTP session
    for host in delivery_lab.hosts():
        assert delivery_lab.connections(host) == 0, host
    assert delivery_lab.connections(delivery_lab.address("stripped")) == 0


def test_case_table(delivery_lab, dns_lab):
    assert set(delivery_lab.cases) == set(CASES)
    addresses = [m.address for c in delivery_lab.cases.values() for m in c.mx]
    assert len(addresses) == len(set(addresses))              # one address per MX host
    for c in delivery_lab.cases.values():
        assert c.expect in delivery.OUTCOMES and c.reason
        assert c.domain in dns_lab.cases
        for m in c.mx:
            assert m.address.startswith(dns_lab.prefix + ".") and int(m.address.rsplit(".", 1)[1]) >= 10
            assert delivery_lab.address(m.host) == m.address
    # one receiver per MX host except behind the proxy; dane-fallback has two
    assert len(delivery_lab.receivers) == 11
    assert delivery_lab.receiver("dane-fallback") is delivery_lab.receiver("good.dane-fallback.dlv.test")
    assert delivery_lab.receiver("stripped") is delivery_lab.receiver("mx.dane-stripped.dlv.test")
    assert {c.name: c.expect for c in delivery_lab.cases.values()} == {
        "dane-ee": "delivered-dane", "dane-ta": "delivered-dane", "dane-ta-spki": "delivered-dane", "dane-fail": "deferred",
        "dane-fallback": "delivered-dane", "sts-ok": "delivered-webpki", "sts-badcert": "deferred",
        "insecure": "delivered-opportunistic", "stripped": "delivered-cleartext",
        "dane-stripped": "deferred", "bogus": "deferred"}


# --------------------------------------------------------------------------------------------------
# DNS


@pytest.mark.parametrize("name", CASES)
def test_dns(delivery_lab, dns_lab, name):
    c = delivery_lab.cases[name]
    r = drill(dns_lab, c.domain, "MX")
    if c.dns == "bogus":
        assert r.rcode == "SERVFAIL" and not r.answers, r.text
        # the records are there, only their signature is broken: with CD the MX comes through
        cd = drill(dns_lab, c.domain, "MX", "-o", "CD")
        assert cd.rcode == "NOERROR" and cd.data("MX") == [f"10 {c.mx[0].host}."], cd.text
        # only the MX RRset is bogus: the host's address and TLSA validate (a client that ignored
        # the failure would find an attractive target)
        m = c.mx[0]
        a = drill(dns_lab, m.host, "A")
        assert a.ad and a.data("A") == [m.address], a.text
        t = drill(dns_lab, f"_25._tcp.{m.host}", "TLSA")
        assert t.ad and {norm_tlsa(x) for x in t.data("TLSA")} == tlsa_text(dns_lab.tlsa(m.host)), t.text
        return
    secure = c.dns == "secure"
    assert r.rcode == "NOERROR" and r.ad == secure, r.text
    assert sorted(r.data("MX")) == sorted(f"{m.preference} {m.host}." for m in c.mx), r.text
    for m in c.mx:
        a = drill(dns_lab, m.host, "A")
        assert a.rcode == "NOERROR" and a.ad == secure and a.data("A") == [m.address], a.text
        aaaa = drill(dns_lab, m.host, "AAAA")
        assert aaaa.rcode == "NOERROR" and not aaaa.answers, aaaa.text      # one address only
        t = drill(dns_lab, f"_25._tcp.{m.host}", "TLSA")
        want = tlsa_text(dns_lab.tlsa(m.host))
        if m.tlsa is None:
            assert not want
            # secure denial in signed zones; nothing in unsigned ones
            assert t.rcode == "NXDOMAIN" and t.ad == secure and not t.answers, t.text
        else:
            assert secure and t.rcode == "NOERROR" and t.ad, t.text
            assert {norm_tlsa(x) for x in t.data("TLSA")} == want, t.text
            assert len(want) == 1
            usage = {"ee-match": "3 1 1", "ee-mismatch": "3 1 1", "ta-ca": "2 0 1", "ta-ca-spki": "2 1 1"}[m.tlsa]
            assert next(iter(want)).startswith(usage + " ")
    txt = drill(dns_lab, f"_mta-sts.{c.domain}", "TXT")
    if c.sts:
        assert txt.ad and txt.data("TXT") == [f'"v=STSv1; id={delivery.STS_IDS[name]};"'], txt.text
        a = drill(dns_lab, f"mta-sts.{c.domain}", "A")
        assert a.ad and a.data("A") == [dns_lab.https_address], a.text
    else:
        assert txt.rcode == "NXDOMAIN" and not txt.answers, txt.text


@pytest.mark.parametrize("name", [n for n, c in delivery.DELIVERY_CASES.items() if c.sts])
def test_sts_policy(delivery_lab, mta_sts_server, name):
    c = delivery_lab.cases[name]
    cp = subprocess.run(["curl", "-sS", "--max-time", "5", *mta_sts_server.curl_args(name),
                         mta_sts_server.url(name)], capture_output=True, text=True, timeout=20)
    assert cp.returncode == 0, cp.stderr
    assert mta_sts_server.url(name) == f"https://mta-sts.{c.domain}/.well-known/mta-sts.txt"
    lines = cp.stdout.splitlines()
    assert lines[:2] == ["version: STSv1", "mode: enforce"]
    assert [x[4:] for x in lines if x.startswith("mx: ")] == c.hosts


# --------------------------------------------------------------------------------------------------
# certificates


@pytest.mark.parametrize("host", DIRECT_HOSTS + PROXY_HOSTS)
def test_served_certificate(delivery_lab, dns_lab, lab_pki, host):
    m = delivery_lab.mx(host)
    # behind the proxy: ask the backend directly (the proxy has no STARTTLS to offer)
    address = delivery_lab.address("stripped") if m.served_by == "proxy" else m.address
    served = s_client(address, host)
    assert served.pems, served.text
    cert = delivery_lab.cert(host)
    with open(cert.cert) as f:
        assert served.pems[0].strip() == f.read().strip(), "not the configured leaf"
    tlsa = dns_lab.tlsa(host)
    if m.tlsa is not None:
        (usage, selector, mtype, digest), = tlsa
        leaf_spki = served.spki_sha256(0)
        chain_certs = [served.cert_sha256(i) for i in range(len(served.pems))]
        if m.tlsa == "ee-match":
            assert (usage, selector, mtype) == (3, 1, 1) and leaf_spki == digest
            # DANE-EE ignores names: dane-ee's leaf names no MX host and comes from an untrusted CA
            if host == "mx.dane-ee.dlv.test":
                assert host not in served.names(0) and served.names(0) == ["unrelated.example.test"]
                assert not s_client(address, host, "-CAfile", lab_pki.ca_pem, "-verify_hostname", host).verified
        elif m.tlsa == "ee-mismatch":
            assert (usage, selector, mtype) == (3, 1, 1)
            assert leaf_spki != digest and digest not in chain_certs
            # ... while the certificate is fine for WebPKI (only DANE fails)
            assert s_client(address, host, "-CAfile", lab_pki.ca_pem, "-verify_hostname", host).verified
        elif m.tlsa == "ta-ca":
            assert (usage, selector, mtype) == (2, 0, 1)
            assert len(served.pems) >= 2 and chain_certs[1:].count(digest) == 1, "CA not in the served chain"
            with open(lab_pki.ca_pem) as f:
                assert digest == Served("", [f.read()]).cert_sha256(0)     # the lab CA itself
            assert host in served.names(0)
        elif m.tlsa == "ta-ca-spki":
            assert (usage, selector, mtype) == (2, 1, 1)
            assert len(served.pems) >= 2, "CA not in the served chain"
            assert host in served.names(0)
        # openssl's own DANE check agrees (SMTP semantics, RFC 7672 3.1.1: no name checks for DANE-EE)
        rr = f"{usage} {selector} {mtype} {digest}"
        dane = s_client(address, host, "-dane_tlsa_domain", host, "-dane_tlsa_rrdata", rr,
                        "-dane_ee_no_namechecks")
        assert dane.verified == (m.tlsa != "ee-mismatch"), dane.text
    else:
        assert tlsa == []
        pkix = s_client(address, host, "-CAfile", lab_pki.ca_pem, "-verify_hostname", host)
        if host in ("mx.sts-ok.dlv.test", "mx.stripped.dlv.test"):
            # (the backend behind the proxy serves a lab-CA certificate for both proxy hosts)
            assert pkix.verified and host in served.names(0), pkix.text
        elif host == "mx.sts-badcert.dlv.test":
            assert not pkix.verified and host not in served.names(0), pkix.text
            assert s_client(address, "x", "-CAfile", lab_pki.ca_pem).verified   # chain fine, name wrong
        elif host == "mx.insecure.dlv.test":
            assert not pkix.verified and len(served.pems) == 1
            assert re.search(r"self[- ]signed", pkix.text), pkix.text
        else:
            pytest.fail(f"unexpected host without TLSA: {host}")


# --------------------------------------------------------------------------------------------------
# the STARTTLS-stripping proxy


@pytest.mark.parametrize("host", PROXY_HOSTS)
def test_proxy_strips_starttls(delivery_lab, host):
    address = delivery_lab.address(host)
    before = delivery_lab.connections(host)
    with SMTPClient(address, 25) as c:
        c.read_reply().expect(220)
        r = c.ehlo().expect(250)
        assert "STARTTLS" not in r.text.upper() and "X-LAB-STRIPPED" in c.extensions, r.text
        r = c.command("STARTTLS")
        assert r.code == 502, r.raw
        c.command("NOOP").expect(250)             # the session goes on in cleartext
        c.command("QUIT").expect(221)
    assert delivery_lab.connections(host) == before + 1
    # the backend itself does offer STARTTLS
    with SMTPClient(delivery_lab.address("stripped"), 25) as c:
        c.read_reply().expect(220)
        c.ehlo().expect(250)
        assert "STARTTLS" in c.extensions
        c.command("QUIT").expect(221)
    served = s_client(address, host)
    assert not served.pems and "Didn't find STARTTLS" in served.text, served.text


# --------------------------------------------------------------------------------------------------
# delivery with swaks


@pytest.mark.parametrize("host", DIRECT_HOSTS + PROXY_HOSTS)
def test_swaks_delivers_to_maildir(delivery_lab, host):
    m = delivery_lab.mx(host)
    c = next(x for x in delivery_lab.cases.values() if host in x.hosts)
    rcv = delivery_lab.receiver(host)
    via_proxy = m.served_by == "proxy"
    before = delivery_lab.connections(host)
    backend_before = delivery_lab.connections(rcv.host)
    mid = f"{uuid.uuid4().hex}@dlv-selftest"
    args = ["--server", f"{m.address}:25", "--to", f"user@{c.domain}", "--from", "sender@example.test",
            "--helo", "client.example.test", "--header", f"Message-Id: <{mid}>", "--timeout", "20"]
    if not via_proxy:
        args.append("-tls")
    r = swaks.run(*args)
    assert r.rc == 0 and r.queue_id(), r.transcript
    assert (r.tls_cipher() is not None) == (not via_proxy), r.transcript
    (msg,) = _wait_find(rcv, mid)
    received = msg.headers("Received")[0]
    assert ("(using TLS" in received) == (not via_proxy), received
    assert (" with ESMTPS " in received) == (not via_proxy), received
    assert msg.headers("Delivered-To") == [f"user@{c.domain}"]
    delivery_lab.wait_connections(host, before + 1)
    if via_proxy:
        # the backend saw the proxy's connection, from the front address
        delivery_lab.wait_connections(rcv.host, backend_before + 1)
        assert f"connect from unknown[{m.address}]" in rcv.log_text()


def _wait_find(rcv, mid: str):
    return util.wait_until(lambda: rcv.find_maildir(mid), 20, interval=0.1,
                           message=lambda: f"{mid} in {rcv.name}'s Maildir:\n{util.tail(rcv.log_text(), 20)}")


def test_counters_and_reset(delivery_lab):
    # bogus' receiver got exactly the sessions of this module (s_client x2..3 + swaks), none else
    assert delivery_lab.connections("mx.bogus.dlv.test") > 0
    assert delivery_lab.connections("dane-fallback") == (delivery_lab.connections("fb-bad") +
                                                         delivery_lab.connections("fb-good"))
    delivery_lab.reset_connections()
    assert all(delivery_lab.connections(h) == 0 for h in delivery_lab.hosts())
    with socket.create_connection((delivery_lab.address("mx.bogus.dlv.test"), 25), timeout=5) as s:
        assert s.recv(100).startswith(b"220 mx.bogus.dlv.test ")
    delivery_lab.wait_connections("mx.bogus.dlv.test", 1)
    assert delivery_lab.connections("bogus") == 1


# --------------------------------------------------------------------------------------------------
# life cycle (last: it stops and restarts the module's lab)


def _listening(address: str, port: int = 25) -> bool:
    addr = "".join(f"{int(x):02X}" for x in reversed(address.split(".")))
    with open("/proc/net/tcp") as f:
        return any(line.split()[1] == f"{addr}:{port:04X}" and line.split()[3] == "0A" for line in f
                   if len(line.split()) > 3)


def test_startup_stop_restart(delivery_lab):
    assert delivery_lab.startup_seconds < 15, delivery_lab.startup_seconds
    addresses = sorted({delivery_lab._addr(o) for o in delivery.ADDRESS_OCTETS})
    assert all(_listening(a) for a in addresses)
    pids = delivery_lab.pids()
    assert len(pids) == 11
    before = len(delivery_lab.receiver("dane-ee").maildir_messages())
    r = swaks.run("--server", f"{delivery_lab.address('mx.dane-ee.dlv.test')}:25", "--to",
                  "kept@dane-ee.dlv.test", "-tls")
    assert r.rc == 0, r.transcript
    kept = delivery_lab.receiver("dane-ee").wait_maildir(before + 1)  # this message, not only earlier ones
    threads_before = {t.name for t in threading.enumerate() if t.name.startswith("striptls")}
    assert threads_before
    delivery_lab.stop()
    delivery_lab.stop()                                       # idempotent
    assert not delivery_lab.running and delivery_lab.pids() == []
    assert not any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split(")")[-1].split()[0] != "Z"
                   for p in pids)
    assert not any(_listening(a) for a in addresses)
    assert not [t for t in threading.enumerate() if t.name.startswith("striptls")]
    delivery_lab.start()
    delivery_lab.start()                                      # idempotent
    assert delivery_lab.running and all(_listening(a) for a in addresses)
    # Maildirs survive a restart; counters start from zero
    assert [m.path for m in delivery_lab.receiver("dane-ee").maildir_messages()] == [m.path for m in kept]
    assert all(delivery_lab.connections(h) == 0 for h in delivery_lab.hosts())
    # one receiver down and up again (same address)
    fb = delivery_lab.receiver("fb-good")
    fb.stop()
    assert not delivery_lab.running and not _listening(fb.host)
    fb.start()
    assert delivery_lab.running and _listening(fb.host)
