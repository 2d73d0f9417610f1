"""A delivery lab for outbound SMTP under DANE (RFC 7672) and MTA-STS (RFC 8461) policy: signed DNS
destinations whose MX hosts are real Postfix receivers on their own loopback address, port 25, with
certificates that do or do not match the destination's TLSA records / MTA-STS policy, and a proxy
that strips STARTTLS.

    lab = DnsLab(d.sub("dns"), delivery=True, pki=pki); lab.start(); lab.start_unbound()
    sts = StsHttpsServer(d.sub("sts"), lab, pki).start()     # also serves mta-sts.sts-*.dlv.test
    with DeliveryLab(d.sub("dlv"), lab, sts, pki) as dl:      # 10 Postfix receivers + the proxy
        dl.address("mx.dane-ee.dlv.test")      # "127.53.X.10" (port 25)
        dl.receiver("dane-ee").wait_maildir(1) # the Postfix instance (Maildir, maillog)
        dl.connections("mx.bogus.dlv.test")    # SMTP connections it accepted (0, hopefully)
        dl.cases["dane-fail"].expect           # "deferred"

pytest: the module-scoped fixture `delivery_lab` (lab/fixtures.py); a module that uses it gets a
`dns_lab` built with delivery=True and an `mta_sts_server` that serves the two STS cases.

DNS (lab/dns.py, only with DnsLab(delivery=True)): zone `dlv.test` (signed, DS in test.) and one child
zone per case, `<case>.dlv.test` (signed with DS in dlv.test unless said otherwise). Every MX host
has an A record 127.53.X.N (the DNS lab's /24; N from 10 up) and no AAAA, so a client has exactly one
address to try. TLSA records are at _25._tcp.<mx host> and are computed from the certificates below.

case            MX (pref host .N)                  TLSA / policy                  served certificate                    expect
dane-ee         10 mx.dane-ee .10                  3 1 1 leaf SPKI (match)        untrusted CA, names only              delivered-dane
                                                                                  unrelated.example.test
dane-ta         10 mx.dane-ta .11                  2 0 1 lab CA certificate       lab CA, mx.dane-ta.dlv.test, chain    delivered-dane
                                                                                  leaf + CA (RFC 7672 3.1.2)
dane-ta-spki    10 mx.dane-ta-spki .22             2 1 1 lab CA SPKI              lab CA, mx.dane-ta-spki.dlv.test,     delivered-dane
                                                                                  chain leaf + CA
dane-fail       10 mx.dane-fail .12                3 1 1 of an unused key         lab CA, mx.dane-fail.dlv.test         deferred
dane-fallback   10 bad.dane-fallback .13           3 1 1 of an unused key         lab CA, bad.dane-fallback.dlv.test    delivered-dane
                20 good.dane-fallback .14          3 1 1 leaf SPKI (match)        lab CA, good.dane-fallback.dlv.test   (at MX 20)
sts-ok          10 mx.sts-ok .15                   no TLSA (secure denial);       lab CA, mx.sts-ok.dlv.test            delivered-webpki
                                                   STS enforce, mx mx.sts-ok...
sts-badcert     10 mx.sts-badcert .16              no TLSA; STS enforce,          lab CA, names only                    deferred
                                                   mx mx.sts-badcert...           mx.elsewhere.dlv.test
insecure        10 mx.insecure .17   (unsigned)    none (insecure zone)           self-signed, mx.insecure.dlv.test     delivered-opportunistic
stripped        10 mx.stripped .18   (unsigned)    none; .18 is the STARTTLS-     (none visible: no STARTTLS)           delivered-cleartext
                                                   stripping proxy -> .20
dane-stripped   10 mx.dane-stripped .19            3 1 1 of the backend's leaf    (none visible: no STARTTLS)           deferred
                                                   SPKI; .19 is the proxy -> .20
bogus           10 mx.bogus .21                    MX RRSIG mutated (bogus);      lab CA, mx.bogus.dlv.test             deferred
                                                   mx A and TLSA 3 1 1 (match)
                                                   are validly signed

(host names above drop the `.dlv.test` suffix.) `.20` is the receiver behind the proxy (final
destination for stripped.dlv.test and dane-stripped.dlv.test, serving lab CA certificate for
mx.stripped.dlv.test and mx.dane-stripped.dlv.test; no DNS name points at it). The MTA-STS domains have
`_mta-sts` TXT "v=STSv1; id=stsok1;" / "...id=stsbadcert1;" (TTL 5) and `mta-sts.<domain>` A
127.53.X.5 (lab/mta_sts.py's nginx serves their policies: enforce, the one MX, max_age 86400).

Receivers (lab/postfix.py `receiver`): one Postfix per MX host (two for dane-fallback, one behind
the proxy), each final destination for its case's domain with virtual(8) Maildir delivery of any
local part (`receiver(...).maildir_messages()`), STARTTLS offered ("may") with the certificate
above, `smtpd_tls_received_header = yes` (the Received: header shows the TLS version and cipher),
myhostname = its MX host name. They are started in parallel.

The STARTTLS-stripping proxy (StartTlsStripProxy, threads of this process) listens on .18 and .19
port 25 and forwards to .20:25 (connecting from the address it was reached on, so the backend's
maillog shows which front was used). Towards the client it rewrites the EHLO reply line
`250[- ]STARTTLS` to `250[- ]X-LAB-STRIPPED` and answers a STARTTLS command itself with
`502 5.5.1 STARTTLS not available (stripped)` (not forwarded); everything else passes unchanged
(DATA bodies and BDAT chunks are not inspected).

Counting connections: a receiver's are the `smtpd[...]: connect from` lines of its maillog (Postfix
logs them through postlogd, a moment after the connection: use wait_connections()), the proxy counts
accepted connections per address. connections() counts since start() or reset_connections().

DeliveryLab API: start() / stop() (idempotent; a restart keeps the receivers' directories, so
Maildirs and maillogs survive) / cleanup() (also removes the files) / context manager / running /
startup_seconds / pids(); cases (name -> DeliveryCase with addresses filled in), case(name or
domain), hosts(), address(host or receiver name), receiver(case, host or receiver name) ->
lab.postfix.PostfixInstance (maildir_messages(), wait_maildir(), find_maildir(message_id),
log_text(); .stop()/.start() take one receiver down and up on the same address), cert(host) ->
the certs.ServerCert served there, tlsa(host) -> the published TLSA records, connections(host,
address, receiver name or case), wait_connections(host, n), reset_connections(), proxy
(StartTlsStripProxy), receivers (name -> PostfixInstance), log_tails().
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import socket
import threading
import time
from dataclasses import dataclass

from . import util

DLV_ZONE = "dlv.test"
# TLS-RPT targets of every delivery case's _smtp._tls record (lab/dns.py; lab/tlsrpt_receiver.py).
TLSRPT_MAILTO = "mailto:tlsrpt@dane-ee.dlv.test"
TLSRPT_HTTPS_HOST = "reports.dlv.test"
TLSRPT_HTTPS_PATH = "/v1/tlsrpt"
FIRST_OCTET = 10
STRIP_KEYWORD = b"X-LAB-STRIPPED"
STRIP_REPLY = b"502 5.5.1 STARTTLS not available (stripped)\r\n"

OUTCOMES = ("delivered-dane", "delivered-webpki", "delivered-opportunistic", "delivered-cleartext",
            "deferred")


@dataclass(frozen=True)
class MxHost:
    """One MX target. tlsa: what _25._tcp.<host> holds: "ee-match" (3 1 1 SHA-256 of the served
    leaf's SPKI), "ee-mismatch" (3 1 1 of a key nobody serves), "ta-ca" (2 0 1 SHA-256 of the lab CA
    certificate), "ta-ca-spki" (2 1 1 SHA-256 of the lab CA's SPKI) or None (no TLSA). served_by: the receiver answering at the address, or "proxy"
    (the STARTTLS-stripping proxy in front of receiver "stripped"). address: 127.53.X.<octet> (set in
    DeliveryLab.cases; None in the module-level table)."""
    host: str
    preference: int
    octet: int
    served_by: str
    tlsa: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class DeliveryCase:
    """A destination `<name>.dlv.test`. dns: "secure" (signed, DS), "insecure" (unsigned, no DS) or
    "bogus" (MX RRSIG mutated: SERVFAIL from a validating resolver). expect: what a correct
    DANE/MTA-STS-aware sender ends up with (one of OUTCOMES); reason: why, in one line. sts: the
    domain publishes an MTA-STS enforce policy listing its MX (served by lab/mta_sts.py's nginx)."""
    name: str
    dns: str
    mx: tuple[MxHost, ...]
    expect: str
    reason: str
    sts: bool = False

    @property
    def domain(self) -> str:
        return f"{self.name}.{DLV_ZONE}"

    @property
    def hosts(self) -> list[str]:
        return [m.host for m in self.mx]

    def mx_host(self, host: str) -> MxHost:
        for m in self.mx:
            if m.host == host:
                return m
        raise KeyError(host)


@dataclass(frozen=True)
class ReceiverSpec:
    """A Postfix receiver: its address octet, the domains it is final destination for, the
    certificate it serves (a key of CERTIFICATES) and its myhostname."""
    name: str
    octet: int
    domains: tuple[str, ...]
    cert: str
    hostname: str


def _d(name: str) -> str:
    return f"{name}.{DLV_ZONE}"


# certificate name -> (issuer, DNS names); issuer "ca" (lab CA, chain leaf + CA), "untrusted" (the
# CA nobody trusts, chain leaf + that CA), "self-signed" (chain = the leaf)
CERTIFICATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "dane-ee": ("untrusted", ("unrelated.example.test",)),
    "dane-ta": ("ca", (f"mx.{_d('dane-ta')}",)),
    "dane-ta-spki": ("ca", (f"mx.{_d('dane-ta-spki')}",)),
    "dane-fail": ("ca", (f"mx.{_d('dane-fail')}",)),
    "fb-bad": ("ca", (f"bad.{_d('dane-fallback')}",)),
    "fb-good": ("ca", (f"good.{_d('dane-fallback')}",)),
    "sts-ok": ("ca", (f"mx.{_d('sts-ok')}",)),
    "sts-badcert": ("ca", (f"mx.elsewhere.{DLV_ZONE}",)),
    "insecure": ("self-signed", (f"mx.{_d('insecure')}",)),
    "stripped": ("ca", (f"mx.{_d('stripped')}", f"mx.{_d('dane-stripped')}")),
    "bogus": ("ca", (f"mx.{_d('bogus')}",)),
    # never served: the "ee-mismatch" TLSA records are made from its key
    "unused": ("ca", (f"unused.{DLV_ZONE}",)),
}

RECEIVERS: dict[str, ReceiverSpec] = {r.name: r for r in (
    ReceiverSpec("dane-ee", 10, (_d("dane-ee"),), "dane-ee", f"mx.{_d('dane-ee')}"),
    ReceiverSpec("dane-ta", 11, (_d("dane-ta"),), "dane-ta", f"mx.{_d('dane-ta')}"),
    ReceiverSpec("dane-fail", 12, (_d("dane-fail"),), "dane-fail", f"mx.{_d('dane-fail')}"),
    ReceiverSpec("fb-bad", 13, (_d("dane-fallback"),), "fb-bad", f"bad.{_d('dane-fallback')}"),
    ReceiverSpec("fb-good", 14, (_d("dane-fallback"),), "fb-good", f"good.{_d('dane-fallback')}"),
    ReceiverSpec("sts-ok", 15, (_d("sts-ok"),), "sts-ok", f"mx.{_d('sts-ok')}"),
    ReceiverSpec("sts-badcert", 16, (_d("sts-badcert"),), "sts-badcert", f"mx.{_d('sts-badcert')}"),
    ReceiverSpec("insecure", 17, (_d("insecure"),), "insecure", f"mx.{_d('insecure')}"),
    ReceiverSpec("stripped", 20, (_d("stripped"), _d("dane-stripped")), "stripped", f"mx.{_d('stripped')}"),
    ReceiverSpec("bogus", 21, (_d("bogus"),), "bogus", f"mx.{_d('bogus')}"),
    ReceiverSpec("dane-ta-spki", 22, (_d("dane-ta-spki"),), "dane-ta-spki", f"mx.{_d('dane-ta-spki')}"),
)}

PROXY_BACKEND = "stripped"          # the receiver behind the STARTTLS-stripping proxy


def _case(name, dns, mx, expect, reason, sts=False) -> DeliveryCase:
    return DeliveryCase(name, dns, tuple(MxHost(*m) for m in mx), expect, reason, sts)


DELIVERY_CASES: dict[str, DeliveryCase] = {c.name: c for c in (
    _case("dane-ee", "secure", [(f"mx.{_d('dane-ee')}", 10, 10, "dane-ee", "ee-match")],
          "delivered-dane", "TLSA 3 1 1 matches the leaf's SPKI; DANE-EE ignores its names (unrelated) "
                            "and its issuer (untrusted CA)"),
    _case("dane-ta", "secure", [(f"mx.{_d('dane-ta')}", 10, 11, "dane-ta", "ta-ca")],
          "delivered-dane", "TLSA 2 0 1 matches the lab CA certificate in the served chain; the leaf "
                            "names the MX host"),
    _case("dane-ta-spki", "secure", [(f"mx.{_d('dane-ta-spki')}", 10, 22, "dane-ta-spki", "ta-ca-spki")],
          "delivered-dane", "TLSA 2 1 1 matches the lab CA's public key (SPKI) in the served chain; "
                            "the leaf names the MX host"),
    _case("dane-fail", "secure", [(f"mx.{_d('dane-fail')}", 10, 12, "dane-fail", "ee-mismatch")],
          "deferred", "TLSA 3 1 1 matches no served certificate (a WebPKI-valid one does not help): "
                      "DANE authentication fails, no fallback to unauthenticated TLS"),
    _case("dane-fallback", "secure",
          [(f"bad.{_d('dane-fallback')}", 10, 13, "fb-bad", "ee-mismatch"),
           (f"good.{_d('dane-fallback')}", 20, 14, "fb-good", "ee-match")],
          "delivered-dane", "MX 10 fails DANE authentication (TLSA mismatch), so delivery moves on to "
                            "MX 20, whose TLSA 3 1 1 matches"),
    _case("sts-ok", "secure", [(f"mx.{_d('sts-ok')}", 10, 15, "sts-ok")],
          "delivered-webpki", "no TLSA (secure denial); MTA-STS enforce lists the MX and its lab-CA "
                              "certificate names it", sts=True),
    _case("sts-badcert", "secure", [(f"mx.{_d('sts-badcert')}", 10, 16, "sts-badcert")],
          "deferred", "MTA-STS enforce, but the certificate (lab CA) names only mx.elsewhere.dlv.test",
          sts=True),
    _case("insecure", "insecure", [(f"mx.{_d('insecure')}", 10, 17, "insecure")],
          "delivered-opportunistic", "unsigned zone, no MTA-STS: STARTTLS without authentication "
                                     "(self-signed certificate)"),
    _case("stripped", "insecure", [(f"mx.{_d('stripped')}", 10, 18, "proxy")],
          "delivered-cleartext", "unsigned zone, no MTA-STS, STARTTLS stripped by the proxy: "
                                 "opportunistic TLS degrades to cleartext"),
    _case("dane-stripped", "secure", [(f"mx.{_d('dane-stripped')}", 10, 19, "proxy", "ee-match")],
          "deferred", "usable TLSA (3 1 1, matches the backend) but STARTTLS is stripped: a DANE "
                      "client must not send in cleartext"),
    _case("bogus", "bogus", [(f"mx.{_d('bogus')}", 10, 21, "bogus", "ee-match")],
          "deferred", "the MX RRset fails validation (mutated RRSIG): SERVFAIL, so the MX host must "
                      "never be contacted"),
)}

# the MTA-STS TXT id of the STS cases (ids are ALPHA/DIGIT only)
STS_IDS = {"sts-ok": "stsok1", "sts-badcert": "stsbadcert1"}

ADDRESS_OCTETS: tuple[int, ...] = tuple(sorted({m.octet for c in DELIVERY_CASES.values() for m in c.mx} |
                                               {r.octet for r in RECEIVERS.values()}))
PROXY_OCTETS: tuple[int, ...] = tuple(sorted({m.octet for c in DELIVERY_CASES.values() for m in c.mx
                                              if m.served_by == "proxy"}))


def dns_case_texts() -> dict[str, str]:
    """Descriptions of the delivery zones for DnsLab.cases."""
    out = {DLV_ZONE: "secure (NSEC); parent of the delivery cases (lab/delivery.py)"}
    for c in DELIVERY_CASES.values():
        mx = ", ".join(f"{m.preference} {m.host} (A .{m.octet}, TLSA {m.tlsa or 'none'})" for m in c.mx)
        sec = {"secure": "secure", "insecure": "unsigned, no DS -> insecure",
               "bogus": "MX RRSIG mutated -> MX bogus"}[c.dns]
        out[c.domain] = f"{sec}; MX {mx}" + ("; MTA-STS enforce" if c.sts else "") + f" -> {c.expect}"
    return out


def sts_cases() -> dict:
    """mta_sts.StsCase objects for the delivery cases with MTA-STS (zone dlv.test)."""
    from . import mta_sts
    out = {}
    for c in DELIVERY_CASES.values():
        if not c.sts:
            continue
        mx = tuple(c.hosts)
        out[c.name] = mta_sts.StsCase(
            c.name, "policy", f"delivery lab: enforce policy, mx {', '.join(mx)} ({c.reason})",
            txt=(f'TXT "v=STSv1; id={STS_IDS[c.name]};"',), body=mta_sts.policy_text("enforce", mx),
            mode="enforce", mx=mx, zone=DLV_ZONE)
    return out


def issue_certificates(pki) -> dict:
    """{certificate name: certs.ServerCert} of CERTIFICATES, issued in parallel (cached in the PKI
    directory, so the DNS lab and the delivery lab get the same files)."""
    def one(name: str):
        issuer, names = CERTIFICATES[name]
        if issuer == "ca":
            return pki.issue(f"dlv-{name}", list(names))
        if issuer == "untrusted":
            return pki.issue_untrusted(f"dlv-{name}", list(names))
        return pki.self_signed(f"dlv-{name}", list(names))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futs = {n: pool.submit(one, n) for n in CERTIFICATES}
        return {n: f.result() for n, f in futs.items()}


def served_cert_name(mx: MxHost) -> str:
    """The CERTIFICATES key of the certificate the receiver behind `mx` serves."""
    return RECEIVERS[PROXY_BACKEND if mx.served_by == "proxy" else mx.served_by].cert


def tlsa_records(mx: MxHost, certificates: dict, ca_pem: str) -> list[tuple[int, int, int, str]]:
    """The TLSA records (usage, selector, mtype, hex) published for `mx`."""
    from .dns import cert_der, spki_der
    import hashlib
    if mx.tlsa is None:
        return []
    if mx.tlsa == "ee-match":
        return [(3, 1, 1, hashlib.sha256(spki_der(certificates[served_cert_name(mx)].cert)).hexdigest())]
    if mx.tlsa == "ee-mismatch":
        return [(3, 1, 1, hashlib.sha256(spki_der(certificates["unused"].cert)).hexdigest())]
    if mx.tlsa == "ta-ca":
        return [(2, 0, 1, hashlib.sha256(cert_der(ca_pem)).hexdigest())]
    if mx.tlsa == "ta-ca-spki":
        return [(2, 1, 1, hashlib.sha256(spki_der(ca_pem)).hexdigest())]
    raise ValueError(f"unknown TLSA kind {mx.tlsa!r}")


# --------------------------------------------------------------------------------------------------
# the STARTTLS-stripping proxy


class StartTlsStripProxy:
    """TCP proxy on `addresses`:`port` to `backend` (host, port), removing STARTTLS (see the module
    docstring). Threads of this process; start()/stop() (idempotent); connections(address)."""

    _STARTTLS_LINE = re.compile(rb"^(250[ -])STARTTLS\s*$", re.I)

    def __init__(self, addresses: list[str], backend: tuple[str, int], port: int = 25):
        for a in list(addresses) + [backend[0]]:
            if not a.startswith("127."):
                raise ValueError(f"the lab only uses loopback, not {a!r}")
        self.addresses = list(addresses)
        self.port = port
        self.backend = backend
        self._listeners: dict[str, socket.socket] = {}
        self._accept_threads: list[threading.Thread] = []
        self._threads: list[threading.Thread] = []      # one per connection
        self._conns: set[socket.socket] = set()
        self._counts: dict[str, int] = {a: 0 for a in self.addresses}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._token: int | None = None

    @property
    def running(self) -> bool:
        return bool(self._listeners)

    def start(self) -> "StartTlsStripProxy":
        if self.running:
            return self
        self._stop.clear()
        try:
            for a in self.addresses:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._listeners[a] = s
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((a, self.port))
                s.listen(64)
                s.settimeout(0.2)
        except BaseException:
            self.stop()
            raise
        for a, s in self._listeners.items():
            t = threading.Thread(target=self._accept_loop, args=(a, s), daemon=True, name=f"striptls-{a}")
            t.start()
            self._accept_threads.append(t)
        self._token = util.register_cleanup(self.stop)
        return self

    def stop(self) -> None:
        """Close the listeners and every open connection, join the threads."""
        self._stop.set()
        for t in self._accept_threads:           # no new connections from here on
            t.join(5)
        self._accept_threads = []
        with self._lock:
            conns = list(self._conns)
            threads, self._threads = self._threads, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)
        for s in self._listeners.values():
            s.close()
        self._listeners = {}
        util.unregister_cleanup(self._token)
        self._token = None

    def connections(self, address: str | None = None) -> int:
        """Connections accepted at `address` (None: all) since start or reset_counts()."""
        with self._lock:
            return sum(n for a, n in self._counts.items() if address is None or a == address)

    def reset_counts(self) -> None:
        with self._lock:
            for a in self._counts:
                self._counts[a] = 0

    # ------------------------------------------------------------------------------------------------
    def _accept_loop(self, address: str, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            with self._lock:
                self._counts[address] += 1
            t = threading.Thread(target=self._serve, args=(address, conn), daemon=True, name="striptls-conn")
            t.start()
            with self._lock:
                self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, address: str, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.backend, timeout=10, source_address=(address, 0))
        except OSError:
            client.close()
            return
        with self._lock:
            self._conns.update((client, upstream))
        if self._stop.is_set():          # stop() may have missed these two
            for x in (client, upstream):
                x.close()
            return
        client_lock = threading.Lock()         # replies from the backend and our own 502s
        client.settimeout(None)
        upstream.settimeout(None)
        down = threading.Thread(target=self._server_to_client, args=(upstream, client, client_lock),
                                daemon=True, name="striptls-down")
        down.start()
        try:
            self._client_to_server(client, upstream, client_lock)
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            down.join(10)
            with self._lock:
                self._conns.discard(client)
                self._conns.discard(upstream)
            client.close()
            upstream.close()

    def _server_to_client(self, upstream: socket.socket, client: socket.socket, lock: threading.Lock) -> None:
        buf = b""
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                buf += data
                out = []
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    m = self._STARTTLS_LINE.match(line)
                    if m:
                        line = m.group(1) + STRIP_KEYWORD + (b"\r" if line.endswith(b"\r") else b"")
                    out.append(line + b"\n")
                if out:
                    with lock:
                        client.sendall(b"".join(out))
            if buf:
                with lock:
                    client.sendall(buf)
        except OSError:
            pass
        finally:
            try:
                client.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _client_to_server(self, client: socket.socket, upstream: socket.socket, lock: threading.Lock) -> None:
        buf = b""
        in_data = False
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buf += data
                out = bytearray()
                while True:
                    if in_data:
                        if b"\n" not in buf:
                            break
                        line, buf = buf.split(b"\n", 1)
                        out += line + b"\n"
                        if line.rstrip(b"\r") == b".":
                            in_data = False
                        continue
                    if b"\n" not in buf:
                        break
                    line, buf = buf.split(b"\n", 1)
                    cmd = line.rstrip(b"\r").strip().upper()
                    if cmd == b"STARTTLS":
                        if out:
                            upstream.sendall(bytes(out))
                            out = bytearray()
                        with lock:
                            client.sendall(STRIP_REPLY)
                        continue
                    out += line + b"\n"
                    if cmd == b"DATA":
                        # the body follows (if the server says 354; after a refused DATA the client's
                        # next commands are passed on as they are, which is harmless)
                        in_data = True
                    m = re.match(rb"BDAT\s+(\d+)", cmd)
                    if m:
                        # pass the chunk on unparsed
                        need = int(m.group(1))
                        upstream.sendall(bytes(out))
                        out = bytearray()
                        while need > 0:
                            if not buf:
                                buf = client.recv(min(65536, need))
                                if not buf:
                                    return
                            chunk, buf = buf[:need], buf[need:]
                            upstream.sendall(chunk)
                            need -= len(chunk)
                if out:
                    upstream.sendall(bytes(out))
            if buf:
                upstream.sendall(buf)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------
# the delivery lab


class DeliveryLab:
    """The receivers and the stripping proxy of the delivery cases (module docstring). Context
    manager; start()/stop() idempotent; cleanup() also removes the directory; stopped at exit too.

    dns_lab: a started lab.dns.DnsLab built with delivery=True (its zones point here); sts_server:
    the lab.mta_sts.StsHttpsServer serving the STS cases (optional: only kept for reference; the
    receivers do not need it); pki: the lab PKI (default and requirement: the one the DNS lab
    computed its TLSA records from)."""

    def __init__(self, directory: str, dns_lab, sts_server=None, pki=None):
        self.dir = os.path.realpath(directory)
        self._created_dir = not os.path.exists(self.dir)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.dns_lab = dns_lab
        self.sts_server = sts_server
        lab_pki = getattr(dns_lab, "delivery_pki", None)
        if pki is not None and lab_pki is not None and os.path.realpath(pki.dir) != os.path.realpath(lab_pki.dir):
            raise ValueError("DeliveryLab needs the PKI the DNS lab computed its TLSA records from")
        self.pki = pki or lab_pki
        self.receivers: dict = {}                     # name -> postfix.PostfixInstance
        self.proxy: StartTlsStripProxy | None = None
        self.certificates: dict = {}
        self.cases: dict[str, DeliveryCase] = {}
        self._baseline: dict[str, int] = {}
        self._token: int | None = None
        self.startup_seconds: float | None = None

    # addresses and names ------------------------------------------------------------------------------
    def _addr(self, octet: int) -> str:
        return f"{self.dns_lab.prefix}.{octet}"

    def _resolve_cases(self) -> dict[str, DeliveryCase]:
        return {n: dataclasses.replace(c, mx=tuple(dataclasses.replace(m, address=self._addr(m.octet))
                                                   for m in c.mx))
                for n, c in DELIVERY_CASES.items()}

    def hosts(self) -> list[str]:
        """Every MX host name of every case."""
        return [m.host for c in DELIVERY_CASES.values() for m in c.mx]

    def case(self, name_or_domain: str) -> DeliveryCase:
        key = name_or_domain.lower().rstrip(".")
        if key.endswith("." + DLV_ZONE):
            key = key[:-len(DLV_ZONE) - 1]
        return (self.cases or self._resolve_cases())[key]

    def mx(self, host: str) -> MxHost:
        """The MxHost (address filled in) of an MX host name."""
        host = host.lower().rstrip(".")
        for c in (self.cases or self._resolve_cases()).values():
            for m in c.mx:
                if m.host == host:
                    return m
        raise KeyError(f"no delivery MX host {host!r}")

    def address(self, host: str) -> str:
        """127.53.X.N of an MX host (or of a receiver by name, e.g. the proxy's backend "stripped")."""
        try:
            return self.mx(host).address
        except KeyError:
            if host in RECEIVERS:
                return self._addr(RECEIVERS[host].octet)
            raise

    def receiver(self, case_or_host: str):
        """The Postfix instance (lab.postfix.PostfixInstance) behind an MX host, a receiver name
        (RECEIVERS) or a case (its only MX; dane-fallback: the MX 20 receiver, where delivery
        must end). Proxy hosts and the stripped cases give the backend behind the proxy."""
        key = case_or_host.lower().rstrip(".")
        if key in self.receivers and key not in DELIVERY_CASES:
            return self.receivers[key]
        try:
            m = self.mx(key)
        except KeyError:
            c = self.case(key)
            m = max(c.mx, key=lambda x: x.preference) if c.expect == "delivered-dane" else c.mx[0]
        return self.receivers[PROXY_BACKEND if m.served_by == "proxy" else m.served_by]

    def cert(self, host: str):
        """The certs.ServerCert the receiver behind `host` serves."""
        return self.certificates[served_cert_name(self.mx(host))]

    def tlsa(self, host: str) -> list[tuple[int, int, int, str]]:
        """The TLSA records the DNS lab publishes at _25._tcp.<host>."""
        return self.dns_lab.tlsa(host)

    # connection counters ----------------------------------------------------------------------------
    def _raw_connections(self, key: str) -> int:
        if key.startswith("proxy:"):
            return self.proxy.connections(key[6:]) if self.proxy else 0
        inst = self.receivers.get(key)
        if inst is None:
            return 0
        return len(re.findall(r"/smtpd\[\d+\]: connect from ", inst.log_text()))

    def _counter_key(self, host: str) -> str:
        key = host.lower().rstrip(".")
        if key in RECEIVERS and key not in DELIVERY_CASES:
            return key
        if re.fullmatch(r"127(\.\d+){3}", key):
            for r in RECEIVERS.values():
                if self._addr(r.octet) == key:
                    return r.name
            if key in (self._addr(o) for o in PROXY_OCTETS):
                return f"proxy:{key}"
            raise KeyError(f"nothing of the delivery lab listens at {key}")
        m = self.mx(key)
        return f"proxy:{m.address}" if m.served_by == "proxy" else m.served_by

    def connections(self, host: str) -> int:
        """SMTP connections accepted since start (or reset_connections()) at an MX host (the
        receiver's smtpd, or the proxy at that address), an address (127.53.X.N: e.g. the proxy's
        backend receiver at address("stripped")), a receiver name that is not also a case name
        (fb-bad, fb-good), or a case (the sum over its MX hosts). A receiver logs a connection a
        moment after accepting it (wait_connections())."""
        key = host.lower().rstrip(".")
        if key in DELIVERY_CASES:
            return sum(self.connections(m.host) for m in DELIVERY_CASES[key].mx)
        k = self._counter_key(key)
        return self._raw_connections(k) - self._baseline.get(k, 0)

    def wait_connections(self, host: str, n: int, timeout: float = 10.0) -> int:
        return util.wait_until(lambda: self.connections(host) >= n and self.connections(host), timeout,
                               interval=0.1, message=lambda: f"{n} connections at {host} "
                                                             f"(have {self.connections(host)})")

    def reset_connections(self) -> None:
        """Count from now on (a connection not yet logged by its receiver may still show up)."""
        keys = list(self.receivers) + [f"proxy:{self._addr(o)}" for o in PROXY_OCTETS]
        self._baseline = {k: self._raw_connections(k) for k in keys}

    # life cycle -------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Every receiver and the proxy run (a test may stop one receiver: receiver(x).stop(); its
        .start() brings it back on the same address; so does DeliveryLab.start())."""
        return (bool(self.receivers) and all(r.running for r in self.receivers.values())
                and self.proxy is not None and self.proxy.running)

    def start(self) -> "DeliveryLab":
        if self.running:
            return self
        t0 = time.monotonic()
        if not getattr(self.dns_lab, "running", False):
            raise RuntimeError("start the DNS lab first")
        if not getattr(self.dns_lab, "delivery", False):
            raise RuntimeError("the DNS lab was built without delivery=True: it has no dlv.test zones")
        if self.pki is None:
            raise RuntimeError("no PKI")
        if self._token is None:
            self._token = util.register_cleanup(self.cleanup)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _start(self) -> None:
        from . import postfix
        util.enable_subreaper()
        self.certificates = issue_certificates(self.pki)
        self.cases = self._resolve_cases()
        if not self.receivers:
            # first start: fresh directories; a restart keeps them (Maildirs, maillogs, queues)
            for r in RECEIVERS.values():
                workdir = os.path.join(self.dir, r.name)
                util.remove_tree(workdir)
                self.receivers[r.name] = postfix.receiver(
                    workdir, self.pki, domains=list(r.domains), name=r.name,
                    certs=[self.certificates[r.cert]], host=self._addr(r.octet), smtpd_port=25,
                    hostname=r.hostname)
        # Postfix start-up is mostly waiting (postfix-script, master, the listener): all at once
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.receivers)) as pool:
            futs = [pool.submit(inst.start) for inst in self.receivers.values() if not inst.running]
            errors = []
            for f in futs:
                try:
                    f.result()
                except Exception as e:  # noqa: BLE001 - collect, stop all, report
                    errors.append(e)
            if errors:
                raise RuntimeError("delivery lab receivers failed to start:\n" +
                                   "\n".join(str(e) for e in errors))
        if self.proxy is None:
            self.proxy = StartTlsStripProxy([self._addr(o) for o in PROXY_OCTETS],
                                            (self._addr(RECEIVERS[PROXY_BACKEND].octet), 25))
        self.proxy.start()
        self.reset_connections()               # counters run from this start

    def stop(self) -> None:
        """Stop the proxy and every receiver (in parallel). Idempotent; files stay until cleanup()."""
        if self.proxy is not None:
            self.proxy.stop()
        receivers = list(self.receivers.values())
        if receivers:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(receivers)) as pool:
                for f in [pool.submit(inst.stop) for inst in receivers]:
                    try:
                        f.result()
                    except Exception:  # noqa: BLE001 - best effort, the others still stop
                        pass

    def cleanup(self) -> None:
        """stop() and remove the lab's files."""
        self.stop()
        util.unregister_cleanup(self._token)
        self._token = None
        if self._created_dir:
            util.remove_tree(self.dir)
        else:
            for name in RECEIVERS:
                util.remove_tree(os.path.join(self.dir, name))

    def __enter__(self) -> "DeliveryLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def pids(self) -> list[int]:
        """Postfix master PIDs of the running receivers."""
        return [p for p in (r.master_pid() for r in self.receivers.values()) if p is not None]

    def log_tails(self, lines: int = 15) -> str:
        return "\n".join(f"----- {n} ({r.host}:25) maillog -----\n{util.tail(r.log_text(), lines)}"
                         for n, r in self.receivers.items())
