"""A DNSSEC-signed DNS lab on loopback: NSD with a lab root, `test.` and one zone per case, a
misbehaving proxy in front of some zones, and (on request) unbound as validating resolver.

    with DnsLab(d.sub("dns")) as lab:          # keys + signing + NSD: a few seconds
        lab.start_unbound()                    # recursive validating resolver at lab.unbound_address
        lab.tlsa("mx1.dane-ok.test")           # [(3, 1, 1, "ab12...")] expected at _25._tcp.<host>
        lab.proxy.stop_answering()             # flaky.test stops answering
        lab.proxy.queries("_25._tcp.mx.tlsa-timeout.test", "TLSA")   # how often it was asked
        lab.resolver_config()                  # trust anchor / root hints for the C++ resolver
        lab.unbound_control("flush_zone", ".")

Addresses (a random free 127.53.X.0/24; port 53 everywhere, because delegations, glue and root hints
cannot carry ports):
    127.53.X.1  NSD: the root, test., nic.test (ns.nic.test) and every case zone not behind the proxy
    127.53.X.2  the proxy (a thread of this process, UDP+TCP): authoritative (by NS glue) for the
                proxy zones; it forwards to the backend NSD and misbehaves per zone
    127.53.X.3  unbound (only after start_unbound())
    127.53.X.4  a second NSD (the proxy's backend) serving only the proxy zones. The proxy zones
                cannot live in the first NSD: a server that hosts both test. and a child zone
                answers for the child authoritatively instead of referring, so a resolver would never
                ask the proxy.
    127.53.X.5  `https_address`: not used by the DNS lab itself; the `mta-sts.*` A records point
                here, where lab/mta_sts.py's StsHttpsServer (nginx) listens on port 443.
    127.53.X.10 and up (delivery=True only): the delivery lab's MX hosts, port 25 (lab/delivery.py)

MTA-STS (lab/mta_sts.py has the case table STS_CASES): zone `sts.test` holds one domain per case,
`<case>.sts.test` with `_mta-sts` TXT (TTL 5), `mta-sts` A (https_address), MX and mx A; the
`txtservfail` case is a child zone behind the proxy, which SERVFAILs its `_mta-sts` TXT queries;
zone `stsbench.test` holds b0..b999.stsbench.test for a benchmark. `set_sts_id(case, id)`,
`remove_sts_txt(case)` and `set_sts_txt(case, records)` rewrite, re-sign and reload the zone
(NSD SIGHUP) and wait until NSD serves the new records (unbound's copy is flushed when it runs).

Delivery lab (only with DnsLab(delivery=True); lab/delivery.py has the case table): zone `dlv.test`
and one child zone per delivery case (`dane-ee`, `dane-ta`, `dane-fail`, `dane-fallback`, `sts-ok`,
`sts-badcert`, `insecure`, `stripped`, `dane-stripped`, `bogus` .dlv.test) whose MX hosts have A
records 127.53.X.10 and up (no AAAA), where lab/delivery.py's DeliveryLab runs Postfix receivers
and a STARTTLS-stripping proxy on port 25; TLSA from the delivery certificates.

DNSSEC wizard (issue #7; WIZARD_CASES): zone `wiz.test` and one child zone per state the wizard tells
apart: `unsigned`, `nods` (signed, no DS), `dsbad` (DS mismatch), `mismatch` (MX elsewhere, TLSA not
matching the lab leaf, MTA-STS TXT without a policy host, malformed TLS-RPT) and `good` (everything in
place; its MTA-STS policy host is WIZARD_STS_CASES, for StsHttpsServer(cases=...)). The gateway MX
name of `<state>.wiz.test` is `mx.<state>.wiz.test`; `ds_record(zone)` is the DS the lab computed.

Every zone is signed afresh at each start (ECDSAP256SHA256, one CSK per zone, ldns-keygen and
ldns-signzone), so signatures are always current. `lab.cases` describes every case zone; the
module-level `CASES` is the same text. TLSA data are computed from real certificates (the lab PKI's
ECDSA leaf and CA unless others are passed), so Postfix receivers using those certificates match.

The wire-format helpers (`query`, `parse_message`, `build_query`) are standard library only and can
be used by tests to ask any of the servers directly.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field

from . import mta_sts, util

NSD = "/usr/sbin/nsd"
UNBOUND = "/usr/sbin/unbound"
UNBOUND_CONTROL = "/usr/sbin/unbound-control"
LDNS_KEYGEN = "/usr/bin/ldns-keygen"
LDNS_SIGNZONE = "/usr/bin/ldns-signzone"

ALGORITHM = "ECDSAP256SHA256"        # DNSSEC algorithm 13
UNSUPPORTED_DS_ALGORITHM = 200       # unassigned: validators treat a DS set with only this as insecure
BENCH_DOMAINS = 2000
BIG_RRSET = 150                      # A records at big.dane-ok.test: ~2.4 KB, more than UDP carries

PROXY_ZONES = ("tlsa-servfail.test", "tlsa-timeout.test", "flaky.test", "mangled.test")
MANGLE_KINDS = ("truncated", "wrongclass", "oversized", "garbage", "compressloop")

CASES: dict[str, str] = {
    "dane-ok.test": "secure (NSEC); MX 10 mx1 (TLSA 3 1 1), 20 mx2 (2 1 1), 30 mx3 (2 0 1); "
                    "mixed.dane-ok.test: {3 1 1 ok, 3 1 1 with a 20-byte digest}; "
                    "badlen.dane-ok.test: only {3 1 1 20-byte digest, 3 1 2 32-byte digest}; "
                    f"big.dane-ok.test: {BIG_RRSET} A records (TC over UDP, complete over TCP)",
    "no-tlsa.test": "secure (NSEC); MX 10 mx.no-tlsa.test, no TLSA (secure denial)",
    "no-tlsa-nsec3.test": "secure (NSEC3, 0 iterations, no salt); MX 10 mx, no TLSA (secure denial)",
    "insecure.test": "signed, no DS in test. -> insecure; MX 10 mx (A/AAAA, TLSA 3 1 1 to ignore); "
                     "host.insecure.test A/AAAA (target of cname-insecure)",
    "ds-mismatch.test": "DS in test. from another key -> bogus; MX 10 mx",
    "bad-sig.test": "RRSIG over the apex MX mutated -> MX bogus; MX 10 mx (A/AAAA)",
    "expired.test": "signatures valid 2020-01-01..2020-02-01 -> bogus; MX 10 mx",
    "unsupported-alg.test": f"DS names algorithm {UNSUPPORTED_DS_ALGORITHM} -> insecure; MX 10 mx "
                            "(A/AAAA, TLSA 3 1 1 to ignore)",
    "tlsa-servfail.test": "secure, via proxy; MX 10 mx (A/AAAA, TLSA 3 1 1 in the zone) but every "
                          "TLSA query gets SERVFAIL",
    "tlsa-timeout.test": "secure, via proxy; like tlsa-servfail but TLSA queries are dropped",
    "cname-insecure.test": "secure; MX 10 mx, mx CNAME host.insecure.test. (secure -> insecure); "
                           "TLSA 3 1 1 at _25._tcp.mx.cname-insecure.test must not be used",
    "cname-secure.test": "secure; MX 10 mx (CNAME mx1.dane-ok.test., TLSA at the expanded name and a "
                         "different 2 1 1 at the original), MX 20 alt (CNAME mx.no-tlsa.test., "
                         "expanded has secure denial; TLSA 3 1 1 at _25._tcp.alt.cname-secure.test)",
    "mx-insecure-host.test": "secure MX 10 mx.insecure.test. (insecure host)",
    "insecure-mx.test": "unsigned, no DS -> insecure MX 10 mx1.dane-ok.test. (secure host)",
    "unusable-tlsa.test": "secure; MX 10 mx with TLSA only {0 0 1 CA cert, 1 1 1 leaf SPKI}",
    "null-mx.test": "secure; MX 0 . (RFC 7505)",
    "optout.test": "secure (NSEC3 opt-out); MX 10 mx (A/AAAA); unsigned delegation sub.optout.test",
    "sub.optout.test": "unsigned zone under the opt-out zone -> insecure; MX 10 mx.sub.optout.test",
    "nomx.test": "secure; no MX, A/AAAA at the apex, TLSA 3 1 1 at _25._tcp.nomx.test",
    "multi.test": "secure; MX 10 a, 10 b, 10 c, 20 d (A/AAAA, no TLSA)",
    "flaky.test": "secure, via proxy; MX 10 mx (A/AAAA, TLSA 3 1 1), h1..h50 A; the proxy drops "
                  "everything for it after proxy.stop_answering()",
    "mangled.test": "unsigned, no DS (insecure), via proxy; A/AAAA and TLSA 3 1 1 for " +
                    ", ".join(f"{k}.mangled.test" for k in MANGLE_KINDS) +
                    "; the proxy mangles answers by name (see DnsProxy)",
    "ttl.test": "secure; MX 10 mx with TTL 2 on MX/A/AAAA/TLSA, negative TTL 2; none.ttl.test A only",
    "bench.test": f"secure (NSEC); d0..d{BENCH_DOMAINS - 1}.bench.test each MX 10 mx.dN.bench.test "
                  "(A/AAAA, TLSA 3 1 1)",
    "nosuch.test": "does not exist: secure NXDOMAIN",
    "sts.test": "secure (NSEC, negative TTL 5); MTA-STS domains <case>.sts.test, one per "
                "mta_sts.STS_CASES entry: _mta-sts TXT (TTL 5) per case, mta-sts A (https_address), "
                "MX 10 mx, mx A",
    "txtservfail.sts.test": "secure child of sts.test, via proxy; like the other STS domains but its "
                            "_mta-sts TXT queries get SERVFAIL",
    "stsbench.test": f"secure (NSEC); b0..b{mta_sts.STS_BENCH_DOMAINS - 1}.stsbench.test each with "
                     f'_mta-sts TXT "v=STSv1; id={mta_sts.BENCH_ID};", mta-sts A (https_address), MX 10 mx, mx A',
}

# The DNSSEC wizard's states (issue #7): children of wiz.test; the gateway MX name of <state>.wiz.test
# is mx.<state>.wiz.test, its certificate the lab leaf (TLSA 3 1 1 of its SPKI where it matches).
WIZ_ZONE = "wiz.test"
WIZARD_CASES: dict[str, str] = {
    WIZ_ZONE: "secure parent of the wizard zones",
    f"unsigned.{WIZ_ZONE}": "unsigned, no DS -> insecure; MX 10 mx (A/AAAA); nothing else",
    f"nods.{WIZ_ZONE}": "signed, no DS in wiz.test -> insecure; MX 10 mx (A/AAAA), TLSA 3 1 1 leaf (insecure)",
    f"dsbad.{WIZ_ZONE}": "DS in wiz.test from another key -> bogus; MX 10 mx (A/AAAA)",
    f"mismatch.{WIZ_ZONE}": "secure; MX 10 old-mx (not the gateway; A/AAAA), mx A/AAAA with TLSA 3 1 1 of the CA's "
                            "SPKI (matches no gateway certificate); _mta-sts TXT id mismatch1 and mta-sts A but no "
                            "policy host; _smtp._tls TXT with an ftp: rua (malformed)",
    f"good.{WIZ_ZONE}": "secure; MX 10 mx (A/AAAA, TLSA 3 1 1 leaf); _mta-sts TXT id good1 and mta-sts A (policy "
                        "in WIZARD_STS_CASES: enforce, mx mx.good.wiz.test); _smtp._tls TXT "
                        "v=TLSRPTv1; rua=mailto:tlsrpt@good.wiz.test",
}
CASES.update(WIZARD_CASES)
WIZARD_STS_CASES: dict[str, "mta_sts.StsCase"] = {
    "good": mta_sts.StsCase("good", "policy", "the wizard's all-good domain: enforce, mx mx.good.wiz.test",
                            body=mta_sts.policy_text("enforce", [f"mx.good.{WIZ_ZONE}"]), mode="enforce",
                            mx=(f"mx.good.{WIZ_ZONE}",), zone=WIZ_ZONE),
}

# --------------------------------------------------------------------------------------------------
# DNS wire format (just enough for the proxy and for tests)

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "OPT": 41, "DS": 43, "RRSIG": 46, "NSEC": 47, "DNSKEY": 48, "NSEC3": 50, "NSEC3PARAM": 51,
         "TLSA": 52, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA, FLAG_AD, FLAG_CD = (
    0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010)


class DnsFormatError(ValueError):
    """A DNS message that cannot be parsed."""


def qtype_number(qtype: int | str) -> int:
    if isinstance(qtype, int):
        return qtype
    t = qtype.upper()
    if t in TYPES:
        return TYPES[t]
    if t.startswith("TYPE") and t[4:].isdigit():
        return int(t[4:])
    raise ValueError(f"unknown RR type {qtype!r}")


def normalize_name(name: str) -> str:
    """Lower case, no trailing dot ("" for the root)."""
    return name.strip().lower().rstrip(".")


def encode_name(name: str) -> bytes:
    out = bytearray()
    name = name.rstrip(".")
    if name:
        for label in name.split("."):
            raw = label.encode("ascii")
            if not 0 < len(raw) < 64:
                raise ValueError(f"bad label in {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    return bytes(out)


def read_name(msg: bytes, off: int) -> tuple[str, int]:
    """(name with trailing dot, offset after the name in place). Follows compression pointers;
    DnsFormatError on loops, overruns and names longer than 255 octets."""
    labels: list[str] = []
    end = None
    hops = 0
    length = 1
    while True:
        if off >= len(msg):
            raise DnsFormatError("name runs past the end of the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise DnsFormatError("truncated compression pointer")
            if end is None:
                end = off + 2
            hops += 1
            if hops > 126:
                raise DnsFormatError("compression pointer loop")
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n & 0xC0:
            raise DnsFormatError("unsupported label type")
        off += 1
        if n == 0:
            break
        if off + n > len(msg):
            raise DnsFormatError("label runs past the end of the message")
        length += n + 1
        if length > 255:
            raise DnsFormatError("name longer than 255 octets (compression loop?)")
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    if end is None:
        end = off
    return ".".join(labels) + ".", end


def skip_name(msg: bytes, off: int) -> int:
    """Offset after the name at `off` (not following pointers)."""
    while True:
        if off >= len(msg):
            raise DnsFormatError("name runs past the end of the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n
        if n == 0:
            return off


@dataclass
class RRSpan:
    """Where one resource record lies in a message."""
    start: int          # owner name
    fixed: int          # type/class/ttl/rdlength
    rtype: int
    rclass: int
    ttl: int
    rdata: int          # rdata offset
    rdlength: int
    end: int


def rr_spans(msg: bytes, off: int, count: int) -> tuple[list[RRSpan], int]:
    spans = []
    for _ in range(count):
        start = off
        off = skip_name(msg, off)
        if off + 10 > len(msg):
            raise DnsFormatError("truncated resource record")
        rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        rdata = off + 10
        end = rdata + rdlen
        if end > len(msg):
            raise DnsFormatError("rdata runs past the end of the message")
        spans.append(RRSpan(start, off, rtype, rclass, ttl, rdata, rdlen, end))
        off = end
    return spans, off


@dataclass
class Question:
    id: int
    flags: int
    qname: str
    qtype: int
    qclass: int
    end: int                         # offset after the question
    counts: tuple[int, int, int, int]


def parse_question(msg: bytes) -> Question:
    if len(msg) < 12:
        raise DnsFormatError("short message")
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    if qd != 1:
        raise DnsFormatError(f"QDCOUNT {qd}")
    qname, off = read_name(msg, 12)
    if off + 4 > len(msg):
        raise DnsFormatError("truncated question")
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    return Question(qid, flags, qname, qtype, qclass, off + 4, (qd, an, ns, ar))


@dataclass
class Record:
    name: str
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.rtype, f"TYPE{self.rtype}")


@dataclass
class Message:
    id: int
    flags: int
    question: Question
    answer: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    raw: bytes = b""

    @property
    def rcode(self) -> int:
        return self.flags & 0x0F

    @property
    def rcode_name(self) -> str:
        return RCODES.get(self.rcode, str(self.rcode))

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    @property
    def ad(self) -> bool:
        return self.has(FLAG_AD)

    @property
    def aa(self) -> bool:
        return self.has(FLAG_AA)

    @property
    def tc(self) -> bool:
        return self.has(FLAG_TC)

    def answers(self, rtype: int | str | None = None) -> list[Record]:
        want = None if rtype is None else qtype_number(rtype)
        return [r for r in self.answer if want is None or r.rtype == want]


def parse_message(msg: bytes) -> Message:
    """Parse a whole message (DnsFormatError if it is malformed anywhere)."""
    q = parse_question(msg)
    out = Message(q.id, q.flags, q, raw=msg)
    off = q.end
    for section, count in ((out.answer, q.counts[1]), (out.authority, q.counts[2]),
                           (out.additional, q.counts[3])):
        for _ in range(count):
            name, off2 = read_name(msg, off)
            if off2 + 10 > len(msg):
                raise DnsFormatError("truncated resource record")
            rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off2:off2 + 10])
            if off2 + 10 + rdlen > len(msg):
                raise DnsFormatError("rdata runs past the end of the message")
            section.append(Record(name, rtype, rclass, ttl, msg[off2 + 10:off2 + 10 + rdlen]))
            off = off2 + 10 + rdlen
    return out


def build_query(qname: str, qtype: int | str, qid: int | None = None, rd: bool = True,
                do: bool = True, edns: bool = True, cd: bool = False, bufsize: int = 1232) -> bytes:
    qid = random.getrandbits(16) if qid is None else qid
    flags = (FLAG_RD if rd else 0) | (FLAG_CD if cd else 0) | FLAG_AD
    msg = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0)
    msg += encode_name(qname) + struct.pack("!HH", qtype_number(qtype), 1)
    if edns:
        msg += b"\x00" + struct.pack("!HHIH", 41, bufsize, 0x8000 if do else 0, 0)
    return msg


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def exchange(server: str, payload: bytes, tcp: bool = False, port: int = 53,
             timeout: float = 3.0) -> bytes | None:
    """Send one DNS message, return the raw reply (None on timeout). Loopback only."""
    if not server.startswith("127."):
        raise ValueError(f"the DNS lab only talks to loopback, not {server!r}")
    if tcp:
        with socket.create_connection((server, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack("!H", len(payload)) + payload)
            try:
                head = _recv_exact(s, 2)
                if head is None:
                    return None
                return _recv_exact(s, struct.unpack("!H", head)[0])
            except socket.timeout:
                return None
    qid = payload[:2]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((server, port))
        s.send(payload)
        deadline = time.monotonic() + timeout
        while True:
            try:
                data = s.recv(65535)
            except (socket.timeout, ConnectionRefusedError):
                return None
            if data[:2] == qid:
                return data
            if time.monotonic() > deadline:
                return None


def query(server: str, qname: str, qtype: int | str = "A", tcp: bool = False, port: int = 53,
          timeout: float = 3.0, **kw) -> Message | None:
    """Ask `server` directly; a parsed Message, or None on timeout. kw: build_query options."""
    raw = exchange(server, build_query(qname, qtype, **kw), tcp=tcp, port=port, timeout=timeout)
    return None if raw is None else parse_message(raw)


def servfail_reply(q: bytes, question: Question) -> bytes:
    flags = FLAG_QR | (question.flags & 0x7800) | (question.flags & FLAG_RD) | 2
    return struct.pack("!HHHHHH", question.id, flags, 1, 0, 0, 0) + q[12:question.end]


# --------------------------------------------------------------------------------------------------
# the misbehaving proxy


def _zone_of(name: str, zones) -> str | None:
    for z in zones:
        if name == z or name.endswith("." + z):
            return z
    return None


class DnsProxy:
    """UDP+TCP DNS proxy on `address`:`port` forwarding to `backend` and misbehaving per zone:

    tlsa-servfail.test  TLSA queries get SERVFAIL (same id and question); the rest is forwarded
    txt_servfail_zones  (txtservfail.sts.test) TXT queries for _mta-sts.* get SERVFAIL
    tlsa-timeout.test   TLSA queries are dropped
    flaky.test          forwarded, unless stop_answering() was called (then dropped until
                        resume_answering())
    every zone          dropped after stop_answering(every_zone=True), until resume_answering()
    mangled.test        by name (X.mangled.test or _25._tcp.X.mangled.test, any type):
        truncated     reply cut in the middle of the answer section, TC clear, counts unchanged
        wrongclass    class of the answer RRs (authority RRs if there is no answer) set to CH (3)
        oversized     over UDP: answer padded past 4096 octets with bogus RRs of the query type
                      (TXT for other types), authority dropped, TC clear; over TCP forwarded as is
        garbage       first answer RR's rdata replaced by random octets, rdlength wrong
        compressloop  first answer RR's owner is a label plus a pointer back to itself (a loop);
                      the reply keeps only that RR
    Every query is counted (also dropped ones): queries(qname, qtype), reset_counts().
    """

    def __init__(self, address: str, backend: str, port: int = 53, backend_port: int = 53,
                 timeout: float = 3.0):
        self.address = address
        self.port = port
        self.backend = backend
        self.backend_port = backend_port
        self.timeout = timeout
        self._answering = True
        self._dropping_all = False
        self._counts: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._token: int | None = None
        self._conns: set[socket.socket] = set()
        # zones whose _mta-sts.* TXT queries get SERVFAIL (the DNS lab fills it from its STS cases)
        self.txt_servfail_zones: set[str] = set()

    # control ------------------------------------------------------------------------------------
    def stop_answering(self, every_zone: bool = False) -> None:
        """From now on drop every query for flaky.test (every query at all with every_zone: a DNS
        server that is down)."""
        self._answering = False
        self._dropping_all = every_zone

    def resume_answering(self) -> None:
        self._answering = True
        self._dropping_all = False

    @property
    def answering(self) -> bool:
        return self._answering

    def queries(self, qname: str | None = None, qtype: int | str | None = None) -> int:
        """How many queries arrived (UDP+TCP), optionally only for `qname` (case-insensitive,
        trailing dot optional) and/or `qtype` ("TLSA" or 52)."""
        name = None if qname is None else normalize_name(qname)
        t = None if qtype is None else qtype_number(qtype)
        with self._lock:
            return sum(n for (qn, qt), n in self._counts.items()
                       if (name is None or qn == name) and (t is None or qt == t))

    def query_log(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    # life cycle -----------------------------------------------------------------------------------
    def bind(self) -> None:
        """Bind the sockets now (start() binds them if this was not called)."""
        if self._udp is not None:
            return
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind((self.address, self.port))
            tcp.bind((self.address, self.port))
            tcp.listen(64)
        except OSError:
            udp.close()
            tcp.close()
            raise
        udp.settimeout(0.2)
        tcp.settimeout(0.2)
        self._udp, self._tcp = udp, tcp

    def start(self) -> "DnsProxy":
        self.bind()
        self._stop.clear()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="dnsproxy")
        for target in (self._udp_loop, self._tcp_loop):
            t = threading.Thread(target=target, daemon=True, name=f"dnsproxy-{target.__name__}")
            t.start()
            self._threads.append(t)
        self._token = util.register_cleanup(self.stop)
        return self

    def stop(self) -> None:
        """Close the sockets and stop the threads (idempotent)."""
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._threads = []
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for s in (self._udp, self._tcp):
            if s is not None:
                s.close()
        self._udp = self._tcp = None
        util.unregister_cleanup(self._token)
        self._token = None

    # loops ------------------------------------------------------------------------------------------
    def _udp_loop(self) -> None:
        sock = self._udp
        while not self._stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            try:
                self._pool.submit(self._serve_udp, sock, data, peer)
            except RuntimeError:
                return

    def _serve_udp(self, sock: socket.socket, data: bytes, peer) -> None:
        reply = self._respond(data, tcp=False)
        if reply is not None and not self._stop.is_set():
            try:
                sock.sendto(reply, peer)
            except OSError:
                pass

    def _tcp_loop(self) -> None:
        sock = self._tcp
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            t = threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True, name="dnsproxy-tcp")
            t.start()

    def _serve_tcp(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
        try:
            conn.settimeout(10)
            while not self._stop.is_set():
                head = _recv_exact(conn, 2)
                if head is None:
                    return
                data = _recv_exact(conn, struct.unpack("!H", head)[0])
                if data is None:
                    return
                reply = self._respond(data, tcp=True)
                if reply is not None:
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    # behaviour --------------------------------------------------------------------------------------
    def _forward(self, data: bytes, tcp: bool) -> bytes | None:
        try:
            return exchange(self.backend, data, tcp=tcp, port=self.backend_port, timeout=self.timeout)
        except OSError:
            return None

    def _respond(self, data: bytes, tcp: bool) -> bytes | None:
        try:
            q = parse_question(data)
        except DnsFormatError:
            return self._forward(data, tcp)
        name = normalize_name(q.qname)
        with self._lock:
            self._counts[(name, q.qtype)] += 1
        if self._dropping_all:
            return None
        if (q.qtype == TYPES["TXT"] and name.startswith("_mta-sts.")
                and _zone_of(name, self.txt_servfail_zones)):
            return servfail_reply(data, q)
        zone = _zone_of(name, PROXY_ZONES)
        if zone == "tlsa-servfail.test" and q.qtype == TYPES["TLSA"]:
            return servfail_reply(data, q)
        if zone == "tlsa-timeout.test" and q.qtype == TYPES["TLSA"]:
            return None
        if zone == "flaky.test" and not self._answering:
            return None
        reply = self._forward(data, tcp)
        if reply is None or zone != "mangled.test":
            return reply
        host = name[len("_25._tcp."):] if name.startswith("_25._tcp.") else name
        kind = host[:-len(".mangled.test")] if host.endswith(".mangled.test") else ""
        try:
            return mangle(kind, reply, tcp)
        except DnsFormatError:
            return reply


def mangle(kind: str, reply: bytes, tcp: bool = False) -> bytes:
    """Break `reply` the way the proxy does for <kind>.mangled.test (see DnsProxy)."""
    q = parse_question(reply)
    _, an, ns, ar = q.counts
    answers, an_end = rr_spans(reply, q.end, an)
    if kind == "truncated":
        flags = q.flags & ~FLAG_TC
        stop = an_end if answers else len(reply)
        cut = q.end + max(1, (stop - q.end) // 2)
        return (struct.pack("!HH", q.id, flags) + reply[4:cut])[:cut]
    if kind == "wrongclass":
        out = bytearray(reply)
        spans = answers or rr_spans(reply, an_end, ns)[0]
        for sp in spans:
            if sp.rtype != TYPES["OPT"]:
                struct.pack_into("!H", out, sp.fixed + 2, 3)
        return bytes(out)
    if kind == "oversized":
        if tcp:
            return reply
        authority, ns_end = rr_spans(reply, an_end, ns)
        additional, _ = rr_spans(reply, ns_end, ar)
        opt = b"".join(reply[sp.start:sp.end] for sp in additional if sp.rtype == TYPES["OPT"])
        body = bytearray(reply[12:an_end])
        extra = 0
        rtype = q.qtype if q.qtype in (TYPES["A"], TYPES["AAAA"], TYPES["TLSA"]) else TYPES["TXT"]
        while 12 + len(body) + len(opt) <= 4200:
            if rtype == TYPES["A"]:
                rdata = os.urandom(4)
            elif rtype == TYPES["AAAA"]:
                rdata = os.urandom(16)
            elif rtype == TYPES["TLSA"]:
                rdata = b"\x03\x01\x01" + os.urandom(32)
            else:
                rdata = b"\xff" + os.urandom(255)
            body += struct.pack("!HHHIH", 0xC00C, rtype, 1, 300, len(rdata)) + rdata
            extra += 1
        flags = q.flags & ~FLAG_TC
        head = struct.pack("!HHHHHH", q.id, flags, 1, an + extra, 0, 1 if opt else 0)
        return head + bytes(body) + opt
    if kind == "garbage":
        if not answers:
            return reply
        sp = answers[0]
        junk = os.urandom(sp.rdlength + 3)
        wrong = sp.rdlength + 11
        return reply[:sp.fixed + 8] + struct.pack("!H", wrong) + junk + reply[sp.end:]
    if kind == "compressloop":
        if not answers:
            return reply
        sp = answers[0]
        owner = b"\x01x" + struct.pack("!H", 0xC000 | sp.start)
        head = struct.pack("!HHHHHH", q.id, q.flags, 1, 1, 0, 0)
        return head + reply[12:sp.start] + owner + reply[sp.fixed:sp.end]
    return reply


# --------------------------------------------------------------------------------------------------
# certificates -> TLSA data


def _openssl(args: list[str], data: bytes | None = None) -> bytes:
    cp = subprocess.run(["openssl", *args], input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=30)
    if cp.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {cp.stderr.decode(errors='replace')}")
    return cp.stdout


def cert_der(cert_pem_path: str) -> bytes:
    return _openssl(["x509", "-in", cert_pem_path, "-outform", "DER"])


def spki_der(cert_pem_path: str) -> bytes:
    pub = _openssl(["x509", "-in", cert_pem_path, "-pubkey", "-noout"])
    return _openssl(["pkey", "-pubin", "-outform", "DER"], pub)


@dataclass
class TlsaData:
    """Digests for TLSA records (lower-case hex)."""
    leaf_spki_sha256: str
    leaf_spki_sha512: str
    leaf_cert_sha256: str
    ca_spki_sha256: str
    ca_cert_sha256: str

    @classmethod
    def from_certs(cls, leaf_cert: str, ca_cert: str) -> "TlsaData":
        leaf_spki, ca_spki = spki_der(leaf_cert), spki_der(ca_cert)
        return cls(hashlib.sha256(leaf_spki).hexdigest(), hashlib.sha512(leaf_spki).hexdigest(),
                   hashlib.sha256(cert_der(leaf_cert)).hexdigest(),
                   hashlib.sha256(ca_spki).hexdigest(), hashlib.sha256(cert_der(ca_cert)).hexdigest())


# --------------------------------------------------------------------------------------------------
# zones


@dataclass
class _Zone:
    name: str                        # without trailing dot; "" for the root
    records: list[str] = field(default_factory=list)
    parent: str | None = "test"
    ds: str = "ds"                   # "ds" | "none" | "mismatch" | "unsupported-alg"
    sign: bool = True
    nsec3: bool = False
    optout: bool = False
    expired: bool = False
    bad_sig: str | None = None       # type covered by the RRSIG to mutate (at the apex)
    proxy: bool = False              # served via the proxy (glue -> proxy address, backend NSD)
    soa_ttl: int = 300
    soa_min: int = 300
    key: str | None = None           # key base path
    other_key: str | None = None     # ds-mismatch: the key the parent's DS is made from

    @property
    def fqdn(self) -> str:
        return self.name + "." if self.name else "."

    @property
    def label(self) -> str:
        return self.name or "root"


def _fmt_time(t: float) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(t))


def _port53_free(addr: str) -> bool:
    socks = []
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks.append(u)
        u.bind((addr, 53))
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socks.append(t)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((addr, 53))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def _tcp_port_free(addr: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            t.bind((addr, port))
            return True
        except OSError:
            return False


def addresses_free(prefix: str) -> bool:
    """Port 53 (UDP and TCP) free on prefix.1 .. prefix.4, and TCP 443 on prefix.5 (https_address)."""
    return all(_port53_free(f"{prefix}.{i}") for i in range(1, 5)) and _tcp_port_free(f"{prefix}.5", 443)


class _AddressBusy(RuntimeError):
    pass


class DnsLab:
    """The DNS lab (see the module docstring). Context manager; start()/stop() (idempotent);
    start_unbound(); everything is also stopped and removed at interpreter exit.

    mx_address: the A record of every MX host (AAAA is always ::1); leaf_cert/ca_cert: PEM files the
    TLSA data are computed from (default: certs.get_pki()'s ECDSA leaf and CA); bench_domains: how
    many dN.bench.test domains (fewer start faster); sts_cases: the MTA-STS domains of sts.test
    (mta_sts.STS_CASES); sts_bench_domains: how many bN.stsbench.test domains.

    delivery=True adds the delivery lab's zones (lab/delivery.py: dlv.test and one child zone per
    DELIVERY_CASES entry, MX hosts at 127.53.X.10 and up, whose port 25 must be free too; TLSA
    records from the delivery certificates, issued from `pki`, default certs.get_pki()); then
    `delivery_sts_cases` holds the two MTA-STS domains of dlv.test for StsHttpsServer (their TXT
    records are fixed: set_sts_* do not apply to them). Off by default: nothing changes then."""

    def __init__(self, directory: str, mx_address: str = "127.0.0.1", leaf_cert: str | None = None,
                 ca_cert: str | None = None, bench_domains: int = BENCH_DOMAINS,
                 sts_cases: dict[str, "mta_sts.StsCase"] | None = None,
                 sts_bench_domains: int = mta_sts.STS_BENCH_DOMAINS, delivery: bool = False,
                 pki=None):
        self.dir = os.path.realpath(directory)
        self._created_dir = not os.path.exists(self.dir)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.mx_address = mx_address
        self._leaf_cert = leaf_cert
        self._ca_cert = ca_cert
        self.bench_domains = bench_domains
        self.sts_cases = dict(mta_sts.STS_CASES if sts_cases is None else sts_cases)
        self.sts_bench_domains = sts_bench_domains
        self.delivery = delivery
        self.delivery_pki = pki
        self.delivery_sts_cases: dict[str, "mta_sts.StsCase"] = {}
        if delivery:
            from . import delivery as delivery_mod
            self.delivery_sts_cases = delivery_mod.sts_cases()
        self._sts_txt: dict[str, list[str]] = {}     # changed TXT records (set_sts_*), by case
        self._serial = 0
        self._zone_lock = threading.Lock()
        self.cases = dict(CASES)
        if delivery:
            self.cases.update(delivery_mod.dns_case_texts())
        self.prefix: str | None = None
        self.proxy: DnsProxy | None = None
        self._nsd: util.ManagedProcess | None = None
        self._nsd_backend: util.ManagedProcess | None = None
        self._unbound: util.ManagedProcess | None = None
        self._tlsa: dict[str, list[tuple[int, int, int, str]]] = {}
        self._delivery_tlsa: dict[str, list[tuple[int, int, int, str]]] | None = None
        self._zones: list[_Zone] = []
        self._token: int | None = None
        self.tlsa_data: TlsaData | None = None
        self.startup_seconds: float | None = None
        self.keys_dir = os.path.join(self.dir, "keys")
        self.zone_dir = os.path.join(self.dir, "zones")
        self.trust_anchor_file = os.path.join(self.dir, "root.anchor")
        self.root_hints_file = os.path.join(self.dir, "root.hints")
        self.unbound_conf = os.path.join(self.dir, "unbound", "unbound.conf")

    # addresses ------------------------------------------------------------------------------------
    def _addr(self, n: int) -> str:
        if self.prefix is None:
            raise RuntimeError("the DNS lab is not started")
        return f"{self.prefix}.{n}"

    @property
    def nsd_address(self) -> str:
        return self._addr(1)

    @property
    def proxy_address(self) -> str:
        return self._addr(2)

    @property
    def unbound_address(self) -> str:
        return self._addr(3)

    @property
    def backend_address(self) -> str:
        return self._addr(4)

    @property
    def https_address(self) -> str:
        """Where the mta-sts.* names point (StsHttpsServer listens here, port 443)."""
        return self._addr(5)

    @property
    def tlsrpt_https_address(self) -> str:
        """Where reports.dlv.test points (the delivery lab's TLS-RPT HTTPS receiver, port 443)."""
        return self._addr(6)

    def addresses(self) -> list[str]:
        return [self._addr(i) for i in range(1, 5)]

    def resolv_conf_text(self) -> str:
        return f"nameserver {self.unbound_address}\n"

    def resolver_config(self) -> dict:
        return {"trust_anchor_file": self.trust_anchor_file, "root_hints_file": self.root_hints_file,
                "stub_address": self.nsd_address}

    def tlsa(self, host: str) -> list[tuple[int, int, int, str]]:
        """The TLSA records at _25._tcp.<host> as (usage, selector, mtype, hex), in zone order
        ([] for hosts without TLSA)."""
        return list(self._tlsa.get(normalize_name(host), []))

    # life cycle -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._nsd is not None and self._nsd.running

    def start(self) -> "DnsLab":
        if self.running:
            return self
        t0 = time.monotonic()
        if self._token is None:
            self._token = util.register_cleanup(self.cleanup)
        if self.tlsa_data is None:
            if self._leaf_cert is None or self._ca_cert is None:
                from . import certs
                pki = certs.get_pki()         # the process-wide lab PKI
                self._leaf_cert = self._leaf_cert or pki.ecdsa.cert
                self._ca_cert = self._ca_cert or pki.ca_pem
            self.tlsa_data = TlsaData.from_certs(self._leaf_cert, self._ca_cert)
        if self.delivery and self._delivery_tlsa is None:
            self._prepare_delivery()
        last: Exception | None = None
        for _ in range(5):
            self.prefix = self._pick_prefix()
            try:
                self._start_once()
                self.startup_seconds = time.monotonic() - t0
                return self
            except _AddressBusy as e:      # somebody took one of the addresses meanwhile
                last = e
                self.stop()
            except BaseException:
                self.stop()
                raise
        raise RuntimeError(f"DNS lab: no free 127.53.X.0/24 found ({last})")

    def _pick_prefix(self) -> str:
        choices = list(range(1, 255))
        random.shuffle(choices)
        extra = ()
        if self.delivery:
            from . import delivery as delivery_mod
            extra = delivery_mod.ADDRESS_OCTETS
        for x in choices:
            prefix = f"127.53.{x}"
            if addresses_free(prefix) and all(_tcp_port_free(f"{prefix}.{o}", 25) for o in extra):
                return prefix
        raise RuntimeError("no 127.53.X.0/24 with port 53 free")

    def _start_once(self) -> None:
        for d in (self.keys_dir, self.zone_dir):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        self._tlsa = {}
        # NSD's server processes outlive their parent at shutdown: as a child subreaper this process
        # inherits and reaps them (PID 1 here does not)
        util.enable_subreaper()
        self._build_zones()
        self._make_keys()
        self._write_and_sign()
        self._write_anchor_and_hints()
        # the proxy binds first: it holds its address for the rest of the lab's life
        self.proxy = DnsProxy(self.proxy_address, self.backend_address)
        try:
            self.proxy.bind()
        except OSError as e:
            raise _AddressBusy(str(e))
        self.proxy.txt_servfail_zones = {c.domain for c in self.sts_cases.values() if c.dns == "servfail"}
        self.proxy.start()
        main = [z for z in self._zones if not z.proxy]
        backend = [z for z in self._zones if z.proxy]
        self._nsd = self._start_nsd("nsd", self.nsd_address, main)
        self._nsd_backend = self._start_nsd("nsd-backend", self.backend_address, backend)
        self._wait_nsd(self._nsd, self.nsd_address, main)
        self._wait_nsd(self._nsd_backend, self.backend_address, backend)

    def stop(self) -> None:
        """Stop unbound, NSD and the proxy (idempotent); files stay until cleanup()."""
        for attr in ("_unbound", "_nsd", "_nsd_backend"):
            p = getattr(self, attr)
            if p is not None:
                _stop_daemon(p)
                setattr(self, attr, None)
        if self.proxy is not None:
            self.proxy.stop()

    def cleanup(self) -> None:
        """stop() and remove everything the lab wrote."""
        self.stop()
        util.unregister_cleanup(self._token)
        self._token = None
        if self._created_dir:
            util.remove_tree(self.dir)
        else:
            for name in ("keys", "zones", "nsd", "nsd-backend", "unbound"):
                util.remove_tree(os.path.join(self.dir, name))
            for f in (self.trust_anchor_file, self.root_hints_file):
                try:
                    os.unlink(f)
                except FileNotFoundError:
                    pass

    def __enter__(self) -> "DnsLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # zones ------------------------------------------------------------------------------------------
    def _hostrr(self, name: str, ttl: int | None = None) -> list[str]:
        t = f" {ttl}" if ttl is not None else ""
        return [f"{name}.{t} IN A {self.mx_address}", f"{name}.{t} IN AAAA ::1"]

    def _tlsarr(self, host: str, usage: int, selector: int, mtype: int, hexdata: str,
                ttl: int | None = None) -> str:
        self._tlsa.setdefault(normalize_name(host), []).append((usage, selector, mtype, hexdata))
        t = f" {ttl}" if ttl is not None else ""
        return f"_25._tcp.{host}.{t} IN TLSA {usage} {selector} {mtype} {hexdata}"

    def _build_zones(self) -> None:
        td = self.tlsa_data
        h, T = self._hostrr, self._tlsarr
        leaf, ca_spki, ca_cert = td.leaf_spki_sha256, td.ca_spki_sha256, td.ca_cert_sha256
        short20 = leaf[:40]
        zones: list[_Zone] = []

        def flat(items):
            for x in items:
                if isinstance(x, str):
                    yield x
                else:
                    yield from flat(x)

        def Z(name, *records, **kw):
            z = _Zone(name, list(flat(records)), **kw)
            zones.append(z)
            return z

        Z("", parent=None)
        Z("test", parent="")
        Z("dane-ok.test",
          "dane-ok.test. IN MX 10 mx1.dane-ok.test.", "dane-ok.test. IN MX 20 mx2.dane-ok.test.",
          "dane-ok.test. IN MX 30 mx3.dane-ok.test.",
          h("mx1.dane-ok.test"), T("mx1.dane-ok.test", 3, 1, 1, leaf),
          h("mx2.dane-ok.test"), T("mx2.dane-ok.test", 2, 1, 1, ca_spki),
          h("mx3.dane-ok.test"), T("mx3.dane-ok.test", 2, 0, 1, ca_cert),
          h("mixed.dane-ok.test"), T("mixed.dane-ok.test", 3, 1, 1, leaf),
          T("mixed.dane-ok.test", 3, 1, 1, short20),
          h("badlen.dane-ok.test"), T("badlen.dane-ok.test", 3, 1, 1, short20),
          T("badlen.dane-ok.test", 3, 1, 2, leaf),
          # An answer too large for UDP (TC set): resolvers must retry over TCP.
          [f"big.dane-ok.test. IN A 127.0.{i // 250 + 1}.{i % 250 + 1}" for i in range(BIG_RRSET)])
        Z("no-tlsa.test", "no-tlsa.test. IN MX 10 mx.no-tlsa.test.", h("mx.no-tlsa.test"))
        Z("no-tlsa-nsec3.test", "no-tlsa-nsec3.test. IN MX 10 mx.no-tlsa-nsec3.test.",
          h("mx.no-tlsa-nsec3.test"), nsec3=True)
        Z("insecure.test", "insecure.test. IN MX 10 mx.insecure.test.", h("mx.insecure.test"),
          T("mx.insecure.test", 3, 1, 1, leaf), h("host.insecure.test"), ds="none")
        Z("ds-mismatch.test", "ds-mismatch.test. IN MX 10 mx.ds-mismatch.test.",
          h("mx.ds-mismatch.test"), ds="mismatch")
        Z("bad-sig.test", "bad-sig.test. IN MX 10 mx.bad-sig.test.", h("mx.bad-sig.test"), bad_sig="MX")
        Z("expired.test", "expired.test. IN MX 10 mx.expired.test.", h("mx.expired.test"), expired=True)
        Z("unsupported-alg.test", "unsupported-alg.test. IN MX 10 mx.unsupported-alg.test.",
          h("mx.unsupported-alg.test"), T("mx.unsupported-alg.test", 3, 1, 1, leaf), ds="unsupported-alg")
        for name in ("tlsa-servfail.test", "tlsa-timeout.test"):
            Z(name, f"{name}. IN MX 10 mx.{name}.", h(f"mx.{name}"), T(f"mx.{name}", 3, 1, 1, leaf),
              proxy=True)
        Z("cname-insecure.test", "cname-insecure.test. IN MX 10 mx.cname-insecure.test.",
          "mx.cname-insecure.test. IN CNAME host.insecure.test.",
          T("mx.cname-insecure.test", 3, 1, 1, leaf))
        Z("cname-secure.test", "cname-secure.test. IN MX 10 mx.cname-secure.test.",
          "cname-secure.test. IN MX 20 alt.cname-secure.test.",
          "mx.cname-secure.test. IN CNAME mx1.dane-ok.test.", T("mx.cname-secure.test", 2, 1, 1, ca_spki),
          "alt.cname-secure.test. IN CNAME mx.no-tlsa.test.", T("alt.cname-secure.test", 3, 1, 1, leaf))
        Z("mx-insecure-host.test", "mx-insecure-host.test. IN MX 10 mx.insecure.test.")
        Z("insecure-mx.test", "insecure-mx.test. IN MX 10 mx1.dane-ok.test.", sign=False, ds="none")
        Z("unusable-tlsa.test", "unusable-tlsa.test. IN MX 10 mx.unusable-tlsa.test.",
          h("mx.unusable-tlsa.test"), T("mx.unusable-tlsa.test", 0, 0, 1, ca_cert),
          T("mx.unusable-tlsa.test", 1, 1, 1, leaf))
        Z("null-mx.test", "null-mx.test. IN MX 0 .")
        Z("optout.test", "optout.test. IN MX 10 mx.optout.test.", h("mx.optout.test"),
          nsec3=True, optout=True)
        Z("sub.optout.test", "sub.optout.test. IN MX 10 mx.sub.optout.test.", h("mx.sub.optout.test"),
          parent="optout.test", sign=False, ds="none")
        Z("nomx.test", h("nomx.test"), T("nomx.test", 3, 1, 1, leaf))
        Z("multi.test", *[f"multi.test. IN MX {p} {x}.multi.test." for x, p in
                          (("a", 10), ("b", 10), ("c", 10), ("d", 20))],
          *[h(f"{x}.multi.test") for x in "abcd"])
        Z("flaky.test", "flaky.test. IN MX 10 mx.flaky.test.", h("mx.flaky.test"),
          T("mx.flaky.test", 3, 1, 1, leaf),
          [f"h{i}.flaky.test. IN A {self.mx_address}" for i in range(1, 51)], proxy=True)
        Z("mangled.test", [h(f"{k}.mangled.test") + [T(f"{k}.mangled.test", 3, 1, 1, leaf)]
                           for k in MANGLE_KINDS], sign=False, ds="none", proxy=True)
        Z("ttl.test", "ttl.test. 2 IN MX 10 mx.ttl.test.", h("mx.ttl.test", 2),
          T("mx.ttl.test", 3, 1, 1, leaf, ttl=2), "none.ttl.test. 2 IN A " + self.mx_address,
          soa_ttl=2, soa_min=2)
        bench = []
        for i in range(self.bench_domains):
            d = f"d{i}.bench.test"
            bench.append(f"{d}. IN MX 10 mx.{d}.")
            bench += h(f"mx.{d}")
            bench.append(T(f"mx.{d}", 3, 1, 1, leaf))
        Z("bench.test", bench)
        # MTA-STS (lab/mta_sts.py)
        Z(mta_sts.STS_ZONE, self._sts_records(mta_sts.STS_ZONE), soa_min=mta_sts.STS_TXT_TTL)
        for c in self.sts_cases.values():
            if c.dns == "servfail":
                Z(c.domain, self._sts_records(c.domain), parent=mta_sts.STS_ZONE, proxy=True,
                  soa_min=mta_sts.STS_TXT_TTL)
        if self.sts_bench_domains:
            Z(mta_sts.STS_BENCH_ZONE, self._sts_records(mta_sts.STS_BENCH_ZONE))
        self._build_wizard_zones(Z, T)
        if self.delivery:
            self._build_delivery_zones(Z, T)
        self._zones = zones

    # DNSSEC wizard (WIZARD_CASES) ------------------------------------------------------------------
    def _build_wizard_zones(self, Z, T) -> None:
        td, h, w = self.tlsa_data, self._hostrr, WIZ_ZONE
        Z(w)
        Z(f"unsigned.{w}", f"unsigned.{w}. IN MX 10 mx.unsigned.{w}.", h(f"mx.unsigned.{w}"), parent=w,
          sign=False, ds="none")
        Z(f"nods.{w}", f"nods.{w}. IN MX 10 mx.nods.{w}.", h(f"mx.nods.{w}"),
          T(f"mx.nods.{w}", 3, 1, 1, td.leaf_spki_sha256), parent=w, ds="none")
        Z(f"dsbad.{w}", f"dsbad.{w}. IN MX 10 mx.dsbad.{w}.", h(f"mx.dsbad.{w}"), parent=w, ds="mismatch")
        d = f"mismatch.{w}"
        Z(d, f"{d}. IN MX 10 old-mx.{d}.", h(f"old-mx.{d}"), h(f"mx.{d}"), T(f"mx.{d}", 3, 1, 1, td.ca_spki_sha256),
          f'_mta-sts.{d}. IN TXT "v=STSv1; id=mismatch1;"', f"mta-sts.{d}. IN A {self.https_address}",
          f'_smtp._tls.{d}. IN TXT "v=TLSRPTv1; rua=ftp://reports.{d}/tlsrpt"', parent=w)
        d = f"good.{w}"
        sts = WIZARD_STS_CASES["good"]
        Z(d, f"{d}. IN MX 10 mx.{d}.", h(f"mx.{d}"), T(f"mx.{d}", 3, 1, 1, td.leaf_spki_sha256),
          [f"{sts.txt_name}. IN {rr}" for rr in sts.txt_records()], f"{sts.policy_host}. IN A {self.https_address}",
          f'_smtp._tls.{d}. IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@{d}"', parent=w)

    def ds_record(self, zone: str) -> str:
        """The DS (SHA-256) the lab computed for `zone`'s key: "zone. IN DS tag alg 2 HEX" (also for
        zones whose parent does not publish it, e.g. nods.wiz.test)."""
        z = next(z for z in self._zones if z.name == normalize_name(zone))
        tag, alg, dtype, digest = self._ds_of(z.key)
        return f"{z.fqdn} IN DS {tag} {alg} {dtype} {digest}"

    # delivery lab (lab/delivery.py) -----------------------------------------------------------------
    def _prepare_delivery(self) -> None:
        """Issue the delivery certificates and compute their TLSA data (once)."""
        from . import certs, delivery as delivery_mod
        if self.delivery_pki is None:
            self.delivery_pki = certs.get_pki()
        pki = self.delivery_pki
        issued = delivery_mod.issue_certificates(pki)
        hosts = [m for c in delivery_mod.DELIVERY_CASES.values() for m in c.mx]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            futs = {m.host: pool.submit(delivery_mod.tlsa_records, m, issued, pki.ca_pem) for m in hosts}
            self._delivery_tlsa = {h: f.result() for h, f in futs.items()}

    def _build_delivery_zones(self, Z, T) -> None:
        from . import delivery as delivery_mod
        # TLS-RPT (RFC 8460): every delivery case asks for reports by mail to the dane-ee receiver
        # and by HTTPS POST to reports.dlv.test (lab/tlsrpt_receiver.py listens there, port 443).
        Z(delivery_mod.DLV_ZONE, [f"{delivery_mod.TLSRPT_HTTPS_HOST}. IN A {self.tlsrpt_https_address}"])
        for c in delivery_mod.DELIVERY_CASES.values():
            records = [f'_smtp._tls.{c.domain}. IN TXT "v=TLSRPTv1; rua={delivery_mod.TLSRPT_MAILTO},'
                       f'https://{delivery_mod.TLSRPT_HTTPS_HOST}{delivery_mod.TLSRPT_HTTPS_PATH}"']
            for m in c.mx:
                records.append(f"{c.domain}. IN MX {m.preference} {m.host}.")
                records.append(f"{m.host}. IN A {self._addr(m.octet)}")
                records += [T(m.host, *rr) for rr in self._delivery_tlsa[m.host]]
            sts = self.delivery_sts_cases.get(c.name)
            if sts is not None:
                records += [f"{sts.txt_name}. {mta_sts.STS_TXT_TTL} IN {rr}" for rr in sts.txt_records()]
                records.append(f"{sts.policy_host}. IN A {self.https_address}")
            kw = {"secure": {}, "insecure": {"sign": False, "ds": "none"}, "bogus": {"bad_sig": "MX"}}[c.dns]
            Z(c.domain, records, parent=delivery_mod.DLV_ZONE, **kw)

    # MTA-STS ----------------------------------------------------------------------------------------
    def _sts_case(self, case: str) -> tuple[str, str, list[str]]:
        """(domain, zone holding it, its default _mta-sts records) of a case name or bN."""
        c = self.sts_cases.get(case)
        if c is not None:
            return c.domain, (c.domain if c.dns == "servfail" else mta_sts.STS_ZONE), c.txt_records()
        m = re.fullmatch(r"b(\d+)", case)
        if m and int(m.group(1)) < self.sts_bench_domains:
            return (mta_sts.bench_domain(int(m.group(1))), mta_sts.STS_BENCH_ZONE,
                    [f'TXT "v=STSv1; id={mta_sts.BENCH_ID};"'])
        raise KeyError(f"no MTA-STS case {case!r}")

    def sts_txt(self, case: str) -> list[str]:
        """The records at _mta-sts.<domain> now, as zone-file type + rdata ('TXT "v=STSv1; id=x;"')."""
        return list(self._sts_txt.get(case, self._sts_case(case)[2]))

    def _sts_domain_records(self, case: str) -> list[str]:
        domain = self._sts_case(case)[0]
        return ([f"_mta-sts.{domain}. {mta_sts.STS_TXT_TTL} IN {rr}" for rr in self.sts_txt(case)] +
                [f"mta-sts.{domain}. IN A {self.https_address}",
                 f"{domain}. IN MX 10 mx.{domain}.",
                 f"mx.{domain}. IN A {self.mx_address}"])

    def _sts_records(self, zone: str) -> list[str]:
        if zone == mta_sts.STS_BENCH_ZONE:
            names = [f"b{i}" for i in range(self.sts_bench_domains)]
        else:
            names = [n for n in self.sts_cases if self._sts_case(n)[1] == zone]
        out = []
        for n in names:
            out += self._sts_domain_records(n)
        return out

    def set_sts_txt(self, case: str, records: list[str] | None) -> None:
        """Replace the records at _mta-sts.<case's domain> (zone-file type + rdata, e.g.
        'TXT "v=STSv1; id=x;"'; [] removes them; None restores the case's own), re-sign the zone,
        reload its NSD and wait until NSD serves them; unbound's cache of the zone is flushed. Other
        resolvers keep what they cached for up to the TTL: 5 s in sts.test (TXT and, after a removal,
        the NSEC/negative answers), 300 s in stsbench.test. Changes persist across restarts."""
        zone = self._sts_case(case)[1]
        with self._zone_lock:
            if records is None:
                self._sts_txt.pop(case, None)
            else:
                self._sts_txt[case] = list(records)
            self._reload_zone(zone)
        if self.unbound_running:
            # the whole zone: after a removal unbound also holds NSEC records it would synthesize
            # NXDOMAIN from (aggressive NSEC) until their TTL (the zone's SOA minimum) runs out
            self.unbound_control("flush_zone", zone)
            self.unbound_control("flush_negative")

    def set_sts_id(self, case: str, new_id: str) -> None:
        """_mta-sts.<domain> becomes the single record TXT "v=STSv1; id=<new_id>;" (see set_sts_txt)."""
        self.set_sts_txt(case, [f'TXT "v=STSv1; id={new_id};"'])

    def remove_sts_txt(self, case: str) -> None:
        """No record at _mta-sts.<domain> any more (NXDOMAIN; see set_sts_txt)."""
        self.set_sts_txt(case, [])

    def _next_serial(self) -> int:
        self._serial = max(self._serial + 1, int(time.time()))
        return self._serial

    def _reload_zone(self, zone: str) -> None:
        """Rebuild one MTA-STS zone from the current records, sign it, SIGHUP its NSD (which rereads
        zone files whose mtime changed) and wait until the new serial is served."""
        if not self.running:
            raise RuntimeError("the DNS lab is not running")
        z = next(z for z in self._zones if z.name == zone)
        z.records = self._sts_records(zone)
        serial = self._next_serial()
        src = os.path.join(self.zone_dir, z.label + ".zone")
        with open(src, "w") as f:
            f.write(self._zone_text(z, serial))
        if z.sign:
            dst = os.path.join(self.zone_dir, z.label + ".signed")
            self._sign(z, src, dst + ".new", time.time())
            os.replace(dst + ".new", dst)
        proc, address = (self._nsd_backend, self.backend_address) if z.proxy else (self._nsd, self.nsd_address)
        proc.send_signal(signal.SIGHUP)

        def served() -> bool:
            try:
                m = query(address, z.fqdn, "SOA", timeout=0.5, rd=False)
            except (OSError, DnsFormatError):
                return False
            soa = [r for r in (m.answer if m else []) if r.rtype == TYPES["SOA"]]
            return bool(soa) and struct.unpack("!I", soa[0].rdata[-20:-16])[0] == serial
        try:
            util.wait_until(served, 20, interval=0.05, message=f"NSD to serve {zone} serial {serial}")
        except util.LabTimeout as e:
            raise RuntimeError(f"{e}\n{self._log_tail(proc)}") from None

    def _keygen(self, zone: str) -> str:
        cp = subprocess.run([LDNS_KEYGEN, "-a", ALGORITHM, "-k", "-r", "/dev/urandom", zone or "."],
                            cwd=self.keys_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if cp.returncode != 0:
            raise RuntimeError(f"ldns-keygen {zone}: {cp.stderr.decode(errors='replace')}")
        return os.path.join(self.keys_dir, cp.stdout.decode().strip())

    def _make_keys(self) -> None:
        jobs = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for z in self._zones:
                if z.sign:
                    jobs.append((z, "key", pool.submit(self._keygen, z.name)))
                if z.ds == "mismatch":
                    jobs.append((z, "other_key", pool.submit(self._keygen, z.name)))
            for z, attr, fut in jobs:
                setattr(z, attr, fut.result())

    @staticmethod
    def _ds_of(key_base: str) -> tuple[str, str, str, str]:
        """(keytag, algorithm, digest type, digest) of the SHA-256 DS ldns-keygen wrote."""
        with open(key_base + ".ds") as f:
            fields = f.read().split()
        i = fields.index("DS")
        return fields[i + 1], fields[i + 2], fields[i + 3], fields[i + 4]

    def _delegation(self, child: _Zone) -> list[str]:
        ns_addr = self.proxy_address if child.proxy else self.nsd_address
        if not child.name:
            return []
        out = []
        if child.name == "test":
            out.append("test. IN NS ns.nic.test.")
        else:
            out += [f"{child.fqdn} IN NS ns.{child.fqdn}", f"ns.{child.fqdn} IN A {ns_addr}"]
        key = {"ds": child.key, "mismatch": child.other_key, "unsupported-alg": child.key}.get(child.ds)
        if key:
            tag, alg, dtype, digest = self._ds_of(key)
            if child.ds == "unsupported-alg":
                alg = str(UNSUPPORTED_DS_ALGORITHM)
            out.append(f"{child.fqdn} IN DS {tag} {alg} {dtype} {digest}")
        return out

    def _zone_text(self, z: _Zone, serial: int) -> str:
        if z.name in ("", "test"):
            ns_name = "ns.nic.test."
        else:
            ns_name = f"ns.{z.fqdn}"
        ns_addr = self.proxy_address if z.proxy else self.nsd_address
        lines = ["$TTL 300",
                 f"{z.fqdn} {z.soa_ttl} IN SOA {ns_name} hostmaster.{'nic.test.' if not z.name else z.fqdn} "
                 f"{serial} 3600 600 86400 {z.soa_min}",
                 f"{z.fqdn} IN NS {ns_name}"]
        if z.name == "":
            lines.append(f"ns.nic.test. IN A {self.nsd_address}")          # glue
        elif z.name == "test":
            lines.append(f"ns.nic.test. IN A {self.nsd_address}")
        else:
            lines.append(f"{ns_name} IN A {ns_addr}")
        if z.sign:
            # the DNSKEY with an explicit TTL (ldns-signzone would give it the SOA minimum)
            with open(z.key + ".key") as f:
                key_fields = f.read().split(";")[0].split()
            i = key_fields.index("DNSKEY")
            lines.append(f"{z.fqdn} 300 IN DNSKEY {' '.join(key_fields[i + 1:])}")
        lines += z.records
        for child in self._zones:
            if child.parent == z.name and child is not z:
                lines += self._delegation(child)
        return "\n".join(lines) + "\n"

    def _sign(self, z: _Zone, src: str, dst: str, now: float) -> None:
        if z.expired:
            incep, expir = "20200101000000", "20200201000000"
        else:
            incep, expir = _fmt_time(now - 3600), _fmt_time(now + 30 * 86400)
        argv = [LDNS_SIGNZONE, "-i", incep, "-e", expir]
        if z.nsec3:
            argv += ["-n", "-a", "1", "-t", "0"]
            if z.optout:
                argv.append("-p")
        argv += ["-f", dst, "-o", z.fqdn, src, z.key]
        cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if cp.returncode != 0:
            raise RuntimeError(f"ldns-signzone {z.fqdn} failed: {cp.stderr.decode(errors='replace')}")
        if z.bad_sig:
            self._mutate_rrsig(dst, z.fqdn, z.bad_sig)

    @staticmethod
    def _mutate_rrsig(path: str, owner: str, covered: str) -> None:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        with open(path) as f:
            lines = f.read().split("\n")
        done = False
        for i, line in enumerate(lines):
            fields = line.split()
            if (len(fields) > 5 and fields[0].lower() == owner.lower() and fields[3] == "RRSIG"
                    and fields[4] == covered):
                sig = fields[-1]
                chars = list(sig)
                for j in range(4, 12):           # well inside the signature: stays valid base64
                    chars[j] = alphabet[(alphabet.index(chars[j]) + 1) % 64]
                fields[-1] = "".join(chars)
                lines[i] = "\t".join(fields[:5]) + " " + " ".join(fields[5:])
                done = True
        if not done:
            raise RuntimeError(f"no RRSIG {covered} at {owner} in {path}")
        with open(path, "w") as f:
            f.write("\n".join(lines))

    def _write_and_sign(self) -> None:
        now = time.time()
        serial = self._next_serial()
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            futs = []
            for z in self._zones:
                src = os.path.join(self.zone_dir, z.label + ".zone")
                with open(src, "w") as f:
                    f.write(self._zone_text(z, serial))
                if z.sign:
                    # the biggest zone first so it does not finish last
                    futs.append(pool.submit(self._sign, z, src,
                                            os.path.join(self.zone_dir, z.label + ".signed"), now))
            for fut in futs:
                fut.result()

    def zone_file(self, zone: str) -> str:
        """The file NSD serves for `zone` (signed or not)."""
        for z in self._zones:
            if z.name == normalize_name(zone):
                ext = ".signed" if z.sign else ".zone"
                return os.path.join(self.zone_dir, z.label + ext)
        raise KeyError(zone)

    def _write_anchor_and_hints(self) -> None:
        root = self._zones[0]
        tag, alg, dtype, digest = self._ds_of(root.key)
        with open(self.trust_anchor_file, "w") as f:
            f.write(f". 3600 IN DS {tag} {alg} {dtype} {digest}\n")
        with open(self.root_hints_file, "w") as f:
            f.write(f". 3600000 IN NS ns.nic.test.\nns.nic.test. 3600000 IN A {self.nsd_address}\n")

    # NSD --------------------------------------------------------------------------------------------
    def _start_nsd(self, name: str, address: str, zones: list[_Zone]) -> util.ManagedProcess:
        d = os.path.join(self.dir, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        conf = os.path.join(d, "nsd.conf")
        text = [
            "server:",
            f"  ip-address: {address}@53",
            "  port: 53",
            "  do-ip4: yes",
            "  do-ip6: no",
            "  server-count: 1",
            '  username: ""',
            '  chroot: ""',
            '  database: ""',
            f'  zonesdir: "{self.zone_dir}"',
            f'  pidfile: "{d}/nsd.pid"',
            f'  zonelistfile: "{d}/zone.list"',
            f'  xfrdfile: "{d}/xfrd.state"',
            f'  xfrdir: "{d}"',
            f'  logfile: "{d}/nsd.log"',
            "  verbosity: 1",
            "  refuse-any: no",
            "  rrl-ratelimit: 0",
            "  rrl-whitelist-ratelimit: 0",
            "remote-control:",
            "  control-enable: no",
        ]
        for z in zones:
            text += ["zone:", f'  name: "{z.fqdn}"', f'  zonefile: "{self.zone_file(z.fqdn)}"']
        with open(conf, "w") as f:
            f.write("\n".join(text) + "\n")
        proc = util.ManagedProcess([NSD, "-d", "-c", conf], os.path.join(d, "nsd.stdout"), name=name)
        proc.start()
        return proc

    def _log_tail(self, proc: util.ManagedProcess) -> str:
        d = os.path.dirname(proc.log_path)
        texts = [util.read_text(proc.log_path)]
        for extra in ("nsd.log", "unbound.log"):
            p = os.path.join(d, extra)
            if os.path.exists(p):
                texts.append(util.read_text(p))
        text = "\n".join(t for t in texts if t)
        errors = [line for line in text.splitlines() if re.search(r"error|fail|warning|can't", line, re.I)]
        head = "errors:\n" + "\n".join(errors[-20:]) + "\nlast lines:\n" if errors else ""
        return head + util.tail(text, 20)

    def _wait_nsd(self, proc: util.ManagedProcess, address: str, zones: list[_Zone]) -> None:
        """Wait until NSD answers, then check that it serves every zone (a zone file NSD cannot
        parse is only logged, the zone is then missing)."""
        def serves(zone: _Zone, timeout: float) -> bool:
            try:
                m = query(address, zone.fqdn, "SOA", timeout=timeout, rd=False)
            except (OSError, DnsFormatError):
                return False
            return (m is not None and m.rcode == 0 and m.aa
                    and any(r.rtype == TYPES["SOA"] and normalize_name(r.name) == zone.name for r in m.answer))

        def ready():
            if not proc.running:
                raise _busy_or_fail(proc.name, self._log_tail(proc))
            return serves(zones[0], 0.3)
        try:
            util.wait_until(ready, 20, interval=0.05, message=f"{proc.name} at {address} to serve {zones[0].fqdn}")
        except util.LabTimeout as e:
            raise RuntimeError(f"{e}\n{self._log_tail(proc)}") from None
        missing = [z.fqdn for z in zones if not serves(z, 2.0)]
        if missing:
            raise RuntimeError(f"{proc.name} does not serve {', '.join(missing)}:\n{self._log_tail(proc)}")

    # unbound ----------------------------------------------------------------------------------------
    def start_unbound(self, extra: dict | list | None = None, threads: int = 1) -> "DnsLab":
        """Start unbound (validating recursive resolver) at unbound_address. `extra`: more server:
        options ({"name": value} or ["name: value", ...])."""
        if self._unbound is not None and self._unbound.running:
            return self
        if not self.running:
            raise RuntimeError("start() the DNS lab first")
        d = os.path.join(self.dir, "unbound")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        ctl = os.path.join(d, "ctl.sock")
        lines = [
            "server:",
            f"  interface: {self.unbound_address}",
            "  port: 53",
            f"  outgoing-interface: {self.unbound_address}",
            "  do-ip4: yes",
            "  do-ip6: no",
            "  do-udp: yes",
            "  do-tcp: yes",
            f"  num-threads: {threads}",
            '  chroot: ""',
            '  username: ""',
            f'  directory: "{d}"',
            f'  pidfile: "{d}/unbound.pid"',
            f'  logfile: "{d}/unbound.log"',
            "  use-syslog: no",
            "  log-time-ascii: yes",
            "  verbosity: 1",
            "  val-log-level: 2",
            "  log-servfail: yes",
            "  do-not-query-localhost: no",
            '  local-zone: "test." nodefault',
            f'  root-hints: "{self.root_hints_file}"',
            f'  trust-anchor-file: "{self.trust_anchor_file}"',
            '  module-config: "validator iterator"',
            "  access-control: 127.0.0.0/8 allow",
            "  infra-keep-probing: yes",
        ]
        if isinstance(extra, dict):
            lines += [f"  {k}: {v}" for k, v in extra.items()]
        elif extra:
            lines += [f"  {x}" for x in extra]
        lines += ["remote-control:", "  control-enable: yes", f'  control-interface: "{ctl}"',
                  "  control-use-cert: no"]
        with open(self.unbound_conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        cp = subprocess.run(["unbound-checkconf", self.unbound_conf], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=30)
        if cp.returncode != 0:
            raise RuntimeError(f"unbound-checkconf: {cp.stdout.decode(errors='replace')}")
        proc = util.ManagedProcess([UNBOUND, "-d", "-c", self.unbound_conf], os.path.join(d, "unbound.stdout"),
                                   name="unbound")
        proc.start()
        self._unbound = proc

        def ready():
            if not proc.running:
                raise RuntimeError(f"unbound exited ({proc.poll()}):\n{self._log_tail(proc)}")
            try:
                return query(self.unbound_address, "nic.test", "SOA", timeout=0.5) is not None
            except OSError:
                return False
        try:
            util.wait_until(ready, 20, interval=0.05, message=f"unbound at {self.unbound_address}")
        except util.LabTimeout as e:
            self.stop_unbound()
            raise RuntimeError(f"{e}\n{self._log_tail(proc)}") from None
        except BaseException:
            self.stop_unbound()
            raise
        return self

    def stop_unbound(self) -> None:
        if self._unbound is not None:
            _stop_daemon(self._unbound)
            self._unbound = None

    @property
    def unbound_running(self) -> bool:
        return self._unbound is not None and self._unbound.running

    def unbound_control(self, *args: str, check: bool = True) -> str:
        """Run `unbound-control -c CONF args...`; its stdout."""
        cp = subprocess.run([UNBOUND_CONTROL, "-c", self.unbound_conf, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=30)
        if check and cp.returncode != 0:
            raise RuntimeError(f"unbound-control {' '.join(args)} failed ({cp.returncode}): "
                               f"{cp.stdout.decode(errors='replace')}{cp.stderr.decode(errors='replace')}")
        return cp.stdout.decode(errors="replace")

    def unbound_log(self) -> str:
        return util.read_text(os.path.join(self.dir, "unbound", "unbound.log"))

    def nsd_log(self) -> str:
        return "\n".join(util.read_text(os.path.join(self.dir, n, "nsd.log")) for n in ("nsd", "nsd-backend"))

    def pids(self) -> list[int]:
        """PIDs of the daemons the lab runs right now (NSD main processes, unbound)."""
        return [p.pid for p in (self._nsd, self._nsd_backend, self._unbound) if p is not None and p.running]


def _busy_or_fail(name: str, log: str) -> Exception:
    if re.search(r"can't bind|Address already in use|could not open", log, re.I):
        return _AddressBusy(f"{name}: {log}")
    return RuntimeError(f"{name} exited:\n{log}")


def _stop_daemon(proc: util.ManagedProcess, timeout: float = 5.0) -> None:
    """Stop `proc` and wait until nothing of its process group is left: NSD's `server` children exit
    after the process we started, and (we being a child subreaper) end up as our zombies; reap them."""
    pgid = proc.pid
    proc.stop(timeout=timeout)
    if pgid is None:
        return
    me = os.getpid()
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        live = []
        for pid, _comm, fields in util.proc_stats():
            if len(fields) < 3 or int(fields[2]) != pgid:
                continue
            if fields[0] == "Z":
                if int(fields[1]) == me:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
                continue
            live.append(pid)
        if not live:
            return
        if time.monotonic() > deadline:
            if killed:
                return
            try:
                os.killpg(pgid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            killed = True
            deadline = time.monotonic() + timeout
        time.sleep(0.02)
