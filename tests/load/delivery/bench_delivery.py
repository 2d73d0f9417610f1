#!/usr/bin/python3
"""bench_delivery.py - DANE-verified outbound deliveries per second: mxedge against Postfix 3.7 (issue #6).

Run from the repository root, as root, after building (build/ or $MXEDGE_BUILD_DIR):

    /usr/bin/python3 tests/load/delivery/bench_delivery.py [--quick] [--json out.json]

It prints figures; it is not a test. Exit status 0 when every message of both (all) sides was
delivered, DANE-verified; 2 when a side lost, deferred or failed messages, or delivered one without
DANE verification (printed, not hidden); 1 on a setup error.

What is measured: the time to deliver N queued messages (2,000; 300 with --quick; --messages), each
~2 KiB with one recipient userI@dane-ee.dlv.test and the same envelope sender, to one receiver over
DANE-authenticated TLS, one side after the other in the same run. Only the delivery phase is timed:
all N messages are injected first, while delivery is held, then released; the clock stops when the
receiver has counted all N.

The lab (tests/lab), the same for both sides:
  - destination: dane-ee.dlv.test of the delivery lab (lab/dns.py with delivery=True, signed, DS in
    dlv.test): MX 10 mx.dane-ee.dlv.test, A 127.53.X.10 (no AAAA), TLSA 3 1 1 of the receiver's
    leaf SPKI; the leaf (ECDSA P-256) is from a CA nobody trusts and names only
    unrelated.example.test, so a "verified" session can only come from the TLSA match (DANE-EE).
  - receiver: one Postfix 3.7 instance (lab/postfix.py receiver(discard=...)) on 127.53.X.10:25,
    STARTTLS "may" with that certificate. It does not write Maildirs (a Maildir receiver would be
    the bottleneck): by default (--receiver-discard smtpd) smtpd's DISCARD action at end of data
    sinks each message (the client still gets "250 2.0.0 Ok: queued as ..."; no fsync, no queue
    manager, no delivery agent); --receiver-discard transport accepts into its queue (fsync) and
    delivers to the discard(8) transport. Deliveries are counted in its maillog, one line per
    message (lab/postfix.py DISCARDED_RE), and so are its SMTP connections and TLS handshakes.
    The sink sets in_flow_delay = 0: smtpd's flow-control tokens are refilled by the queue manager,
    which discarded mail never reaches, so with the default 1 s every smtpd pauses 1 s at MAIL FROM
    about every 100 messages (this stalled mxedge's few long connections by a second at a time).
    Everything else is Postfix's default (process limit 100, anvil limits, no TLS session cache but
    TLS 1.3 session tickets). The other nine delivery-lab receivers are not started.
    Note: on a 2-CPU machine the receiver shares the CPUs with the sender; its CPU use is printed
    ("receiver alone N of 2 CPUs"), so one can see when it, not the sender, limits the rate.
  - resolver: the DNS lab's unbound (validating with the lab trust anchor). Before each side its
    cache of dlv.test is flushed (both start with the root and test. keys cached, nothing of
    dlv.test).
Senders:
  - mxedge: mxedge-dataplane with an outbound intake listener (role outbound, no TLS, 127.0.0.1
    allowed), outbound.enabled, outbound.ca_file = the lab CA, outbound.policy_wait 10m, all other
    outbound settings at their defaults (connections_per_destination 2 per worker; workers: one per
    CPU, here 2, pinned to cores 0 and 1; retry_min 1m); mxedge-controlplane with
    resolver.forwarders = [the lab unbound] (libunbound in-process, validating itself from the lab
    trust anchor; the AD bit of unbound counts for nothing), the rest as tests/lab/controlplane.py.
    Hold/release: the N messages are submitted to the intake listener while the control plane is
    NOT running, so every message waits for its destination's policy; then the control plane is
    started and the clock runs until the receiver counted N. That time includes the data plane's
    policy-link reconnect back-off (it retries every 0.2 s doubling to 5 s while the control plane
    is away), the DNS lookups (MX, A, AAAA, TLSA, _mta-sts TXT) and the policy compilation; the
    table also shows the time from the link's connection (data plane log timestamp) to the last
    delivery, and the ratio is given for both.
  - Postfix 3.7 (Debian's) as a DANE sender: smtp_dns_support_level = dnssec,
    smtp_tls_security_level = dane, smtp_tls_session_cache_database = btree (as Debian's shipped
    main.cf has it), everything else as Postfix ships it: default_destination_concurrency_limit 20
    (starting at initial_destination_concurrency 5), smtp_connection_cache_on_demand yes, and
    smtp_tls_connection_reuse no (Postfix's default: the connection cache holds no TLS connections,
    so each delivery opens a new TCP + TLS connection; TLS session resumption still applies). Its
    master (and so every smtp process) runs in a private mount namespace where /etc/resolv.conf is a
    bind mount of "nameserver <lab unbound>" + "options trust-ad" (`unshare --mount` around
    `postfix start`); the script checks that a running smtp process sees that file. Hold/release:
    the N messages are submitted over SMTP to its own smtpd with "check_client_access static:HOLD"
    (they wait in the hold queue); the clock starts before `postsuper -H ALL` + `postqueue -f` and
    stops when the receiver counted N.
    --postfix-tls-reuse adds a third side: the same Postfix with smtp_tls_connection_reuse = yes
    (TLS connections cached through tlsproxy(8)), a non-default tuning shown for comparison only.
The mxedge binaries are copied from the build directory at start (it may be rebuilt meanwhile).
Both sides get their messages the same way from this script: SMTP sessions of 10 messages
(--messages-per-session), 8 at a time (--inject-connections). Many short sessions matter for mxedge:
a message is delivered by the worker whose intake session received it (per-worker queues and
connections), and the kernel spreads sessions over the workers' SO_REUSEPORT sockets by a hash;
with 8 long sessions one run put 1,750 messages on one worker and 250 on the other. The split is
printed ("deliveries by worker").

Verification evidence, per side: mxedge's event=message.delivered lines (every one must say
verified=dane, dane_usage=3, requirement=dane, dnssec=secure); Postfix's "status=sent" lines with
relay=mx.dane-ee.dlv.test and its "Verified TLS connection established to mx.dane-ee.dlv.test" lines
(one per TLS handshake; "Untrusted"/"Anonymous"/"Trusted" ones and "DNSSEC validation may be
unavailable" warnings are counted as failures); the receiver's connections and TLS handshakes.
CPU seconds during the timed phase (from /proc): each sender (mxedge-dataplane and
mxedge-controlplane; Postfix: the master's process group, including exited children through the
master's cutime/cstime), the receiver (same way) and unbound; also per delivered message.
Options: --messages N, --receiver-discard smtpd|transport, --postfix-tls-reuse, --inject-connections K,
--messages-per-session M,
--timeout S (per side; default 60 + N/10), --json FILE, --keep-logs DIR (copies of every log and
configuration file of the run).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, TESTS)

from lab import controlplane as cp_mod, delivery, dns, gateway as gateway_mod, postfix, util  # noqa: E402

CASE = "dane-ee"
DOMAIN = f"{CASE}.dlv.test"
MX_HOST = f"mx.{DOMAIN}"
SENDER = "bench@sender.lab.test"
BODY_SIZE = 2048
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Postfix as a DANE client; everything not listed stays at Postfix's defaults (see the docstring)
POSTFIX_SENDER_CF = {
    "smtp_dns_support_level": "dnssec",
    "smtp_tls_security_level": "dane",
    "smtp_tls_session_cache_database": "btree:${data_directory}/smtp_scache",
    "smtp_tls_loglevel": 1,
    # undo the lab base's short retry timers and connect timeout: Postfix's own defaults
    "queue_run_delay": "300s",
    "minimal_backoff_time": "300s",
    "maximal_backoff_time": "4000s",
    "smtp_connect_timeout": "30s",
    # injected mail waits in the hold queue until the timed release
    "smtpd_recipient_restrictions": "check_client_access static:HOLD",
    "smtpd_relay_restrictions": "permit_mynetworks, reject",
    "myorigin": "sender.lab.test",
}


# --------------------------------------------------------------------------------------------------
# helpers


class LogCounter:
    """Counts lines matching `rx` in a growing file, reading only what was appended."""

    def __init__(self, path: str, rx: re.Pattern, start_at_end: bool = True):
        self.path = path
        self.rx = rx
        self.offset = os.path.getsize(path) if start_at_end and os.path.exists(path) else 0
        self.partial = b""
        self.count = 0
        self.lines: list[str] = []

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return self.count
        self.offset += len(data)
        data = self.partial + data
        *full, self.partial = data.split(b"\n")
        for raw in full:
            line = raw.decode(errors="replace")
            if self.rx.search(line):
                self.count += 1
                self.lines.append(line)
        return self.count


def proc_cpu(pid: int | None, children: bool = False) -> float:
    """utime+stime (and with children: cutime+cstime of reaped children) of one process, seconds."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def group_cpu(leader: int | None) -> float:
    """CPU seconds of a daemon and its children: the live members of its process group plus what
    the leader collected from children it reaped (Postfix's master reaps its daemons)."""
    if leader is None:
        return 0.0
    ticks = 0
    for pid, _comm, f in util.proc_stats():
        if len(f) > 14 and int(f[2]) == leader:
            ticks += int(f[11]) + int(f[12])
            if pid == leader:
                ticks += int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def machine_busy() -> float:
    """CPU seconds all CPUs spent not idle (user, nice, system, irq, softirq, steal; /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def pid_from_file(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Cpu:
    """CPU seconds of named processes/groups between construction and used()."""

    def __init__(self, probes: dict):
        self.probes = probes                 # name -> callable returning cumulative seconds
        self.start = {k: fn() for k, fn in probes.items()}

    def used(self) -> dict:
        return {k: round(fn() - self.start[k], 2) for k, fn in self.probes.items()}


def log_ts(line: str) -> float | None:
    """Epoch seconds of an mxedge logfmt line's ts=2026-01-02T03:04:05.678Z."""
    m = re.match(r"ts=(\S+)Z ", line)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def build_message(i: int, tag: str) -> tuple[str, bytes]:
    rcpt = f"user{i}@{DOMAIN}"
    head = (f"From: Bench <{SENDER}>\r\nTo: <{rcpt}>\r\nSubject: delivery bench {tag} {i}\r\n"
            f"Message-ID: <bench-{tag}-{i}@sender.lab.test>\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
    line = ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-bench-" + str(i % 10))[:70] + "\r\n"
    body = line * max(1, (BODY_SIZE - len(head)) // len(line))
    return rcpt, (head + body).encode()


def inject(host: str, port: int, n: int, tag: str, connections: int, per_session: int) -> dict:
    """Submit n messages in SMTP sessions of `per_session` messages, `connections` at a time; counts
    of 250s and failures."""
    groups = [list(range(k, min(n, k + per_session))) for k in range(0, n, per_session)]

    def session(idx: list[int]) -> tuple[int, list[str]]:
        ok, errors = 0, []
        with smtplib.SMTP(host, port, timeout=60, source_address=("127.0.0.1", 0)) as s:
            s.ehlo("client.lab.test")
            for i in idx:
                rcpt, data = build_message(i, tag)
                try:
                    refused = s.sendmail(SENDER, [rcpt], data)
                    if refused:
                        errors.append(f"{rcpt}: {refused}")
                    else:
                        ok += 1
                except smtplib.SMTPException as e:
                    errors.append(f"{rcpt}: {e!r}")
                    s.rset()
        return ok, errors

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=connections) as pool:
        results = list(pool.map(session, [g for g in groups if g]))
    return {"accepted": sum(r[0] for r in results), "errors": [e for r in results for e in r[1]][:10],
            "seconds": round(time.perf_counter() - t0, 2)}


def reset_unbound_zone(lab: dns.DnsLab) -> None:
    """Forget dlv.test (and below) in unbound; keep the root and test. keys."""
    lab.unbound_control("flush_zone", delivery.DLV_ZONE)
    lab.unbound_control("flush_negative")
    lab.unbound_control("flush_infra", "all")


def wait_count(counter: LogCounter, n: int, timeout: float, alive=None, interval: float = 0.01
               ) -> tuple[bool, float]:
    """Poll until counter reaches n; (reached, perf_counter when seen)."""
    deadline = time.perf_counter() + timeout
    last_alive = time.perf_counter()
    while True:
        now = time.perf_counter()
        if counter.poll() >= n:
            return True, now
        if now > deadline:
            return False, now
        if alive is not None and now - last_alive > 1.0:
            last_alive = now
            if not alive():
                return False, now
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# the receiver


class Receiver:
    def __init__(self, d: util.LabDir, lab: dns.DnsLab, pki, mode: str):
        certs = delivery.issue_certificates(pki)
        self.address = f"{lab.prefix}.{delivery.RECEIVERS[CASE].octet}"
        self.mode = mode
        self.inst = postfix.receiver(d.sub("rcv"), pki, domains=[DOMAIN], name="sink",
                                     certs=[certs[delivery.RECEIVERS[CASE].cert]], host=self.address,
                                     smtpd_port=25, hostname=MX_HOST, discard=mode)
        self.rx = postfix.DISCARDED_RE[mode]

    def start(self) -> "Receiver":
        self.inst.start()
        return self

    def stop(self) -> None:
        self.inst.stop()

    def counter(self) -> LogCounter:
        return LogCounter(self.inst.maillog, self.rx)

    def cpu_probe(self):
        return lambda: group_cpu(self.inst.master_pid())

    def connections_since(self, offset: int) -> dict:
        text = self.inst.log_text()[offset:]
        return {"connections": len(re.findall(r"/smtpd\[\d+\]: connect from ", text)),
                "tls_handshakes": len(re.findall(r"/smtpd\[\d+\]: \w+ TLS connection established from ", text))}

    def log_size(self) -> int:
        return len(self.inst.log_text())


# --------------------------------------------------------------------------------------------------
# mxedge


def run_mxedge(d: util.LabDir, lab: dns.DnsLab, pki, rcv: Receiver, n: int, args) -> dict:
    cp = cp_mod.ControlPlane(d.sub("cp"), lab, None,
                             config={"resolver": {"forwarders": [lab.unbound_address], "root_servers": []}})
    gw = gateway_mod.Gateway(d.sub("gw"), pki, next_hop_port=1, hostname="gw.lab.test",
                             listeners=[{"name": "intake", "tls_mode": "none", "role": "outbound",
                                         "allowed_networks": ["127.0.0.1/32"]}],
                             config={"outbound": {"enabled": True, "policy_socket": cp.socket_path,
                                                  "policy_state_file": os.path.join(d.sub("gw-state"), "policy.state"),
                                                  "ca_file": pki.ca_pem, "policy_wait": "10m"}})
    out: dict = {"side": "mxedge"}
    try:
        gw.start()
        gw.wait_log("event=policy.link.down", timeout=10)
        host, port = gw.address("intake")
        inj = inject(host, port, n, "mx", args.inject_connections, args.messages_per_session)
        out["injection"] = inj
        if inj["accepted"] != n:
            raise RuntimeError(f"mxedge intake accepted {inj['accepted']} of {n}: {inj['errors']}")
        time.sleep(0.5)
        early = util.logfmt_events(gw.log_text(), "message.delivered")
        if early:
            raise RuntimeError(f"mxedge delivered {len(early)} messages before the control plane ran")
        reset_unbound_zone(lab)
        rcv_count = rcv.counter()
        rcv_log0 = rcv.log_size()
        gw_delivered = LogCounter(gw.log_path, re.compile(r"event=message\.delivered "))
        gw_problems = LogCounter(gw.log_path, re.compile(r"event=(?:message\.deferred|message\.failed|delivery\.attempt_failed) "))
        unbound_pid = pid_from_file(os.path.join(lab.dir, "unbound", "unbound.pid"))
        cpu = Cpu({"dataplane": lambda: proc_cpu(gw.pid), "controlplane": lambda: proc_cpu(cp.proc.pid if cp.proc else None),
                   "receiver": rcv.cpu_probe(), "unbound": lambda: proc_cpu(unbound_pid),
                   "machine": machine_busy})
        wall0 = time.time()
        t0 = time.perf_counter()
        cp.start()
        t_cp_ready = time.perf_counter()
        ok, t_end = wait_count(rcv_count, n, args.timeout, alive=lambda: gw.running and cp.running)
        used = cpu.used()
        seconds = t_end - t0
        # settle: the senders' own log lines of the last deliveries
        util.wait_until(lambda: gw_delivered.poll() >= rcv_count.poll(), 10, message="mxedge delivered lines") \
            if ok else None
        time.sleep(0.3)
        gw_delivered.poll()
        gw_problems.poll()
        rcv_count.poll()
        link = util.first(l for l in gw.log_text().splitlines() if "event=policy.link.connected" in l
                          and (log_ts(l) or 0) >= wall0 - 0.01)
        link_s = (log_ts(link) - wall0) if link else None
        compiled = util.first(l for l in cp.log_text().splitlines() if "event=policy.compiled" in l and DOMAIN in l)
        compiled_s = (log_ts(compiled) - wall0) if compiled and log_ts(compiled) else None
        ts = [log_ts(l) for l in gw_delivered.lines]
        ts = [t for t in ts if t]
        events = [util.parse_logfmt(l) for l in gw_delivered.lines]
        dane = [e for e in events if e.get("verified") == "dane" and e.get("dane_usage") == "3"
                and e.get("requirement") == "dane" and e.get("dnssec") == "secure"]
        by_worker: dict[str, int] = {}
        for e in events:
            by_worker[e.get("worker", "?")] = by_worker.get(e.get("worker", "?"), 0) + 1
        out.update({
            "messages": n, "received": rcv_count.count, "complete": ok and rcv_count.count == n,
            "seconds": round(seconds, 3), "per_s": rcv_count.count / seconds if seconds else 0.0,
            "controlplane_start_s": round(t_cp_ready - t0, 3),
            "link_connected_s": round(link_s, 3) if link_s is not None else None,
            "policy_compiled_s": round(compiled_s, 3) if compiled_s is not None else None,
            "first_delivery_s": round(min(ts) - wall0, 3) if ts else None,
            "last_delivery_s": round(max(ts) - wall0, 3) if ts else None,
            "sender_delivered_lines": len(events), "dane_verified": len(dane),
            "resumed": sum(1 for e in events if e.get("resumed") == "true"),
            "tls_versions": sorted({e.get("tls", "?") + " " + e.get("cipher", "?") for e in events}),
            "by_worker": by_worker, "problems": gw_problems.count, "problem_lines": gw_problems.lines[:5],
            "cpu_s": used, "receiver_log": rcv.connections_since(rcv_log0),
            "policy_compiled_line": compiled, "example_delivered_line": gw_delivered.lines[0] if gw_delivered.lines else None,
        })
        if link_s is not None:
            from_link = seconds - link_s
            out["seconds_from_link"] = round(from_link, 3)
            out["per_s_from_link"] = rcv_count.count / from_link if from_link > 0 else 0.0
        return out
    finally:
        gw.stop()
        cp.stop()


# --------------------------------------------------------------------------------------------------
# Postfix


def run_postfix(d: util.LabDir, lab: dns.DnsLab, rcv: Receiver, n: int, args, name: str, extra_cf: dict,
                extra_master_cf: str = "") -> dict:
    pdir = d.sub(name)
    resolv = os.path.join(pdir, "resolv.conf")
    with open(resolv, "w") as f:
        f.write(lab.resolv_conf_text() + "options trust-ad\n")
    cf = dict(POSTFIX_SENDER_CF)
    cf.update(extra_cf)
    inst = postfix.PostfixInstance(os.path.join(pdir, "pf"), name=name, main_cf=cf, hostname="sender.lab.test",
                                   resolv_conf=resolv, extra_master_cf=extra_master_cf)
    out: dict = {"side": name, "extra_main_cf": extra_cf}
    try:
        inst.start()
        ns = inst.master_resolv_conf()
        ours = os.readlink("/proc/self/ns/mnt")
        if ns["mnt_ns"] == ours or f"nameserver {lab.unbound_address}" not in ns["resolv_conf"]:
            raise RuntimeError(f"postfix master not in the lab's mount namespace: {ns}")
        out["namespace"] = {"master": ns, "ours": ours, "host_resolv_conf": util.read_text("/etc/resolv.conf").strip()}
        inj = inject("127.0.0.1", inst.smtpd_port, n, name, args.inject_connections, args.messages_per_session)
        out["injection"] = inj
        if inj["accepted"] != n:
            raise RuntimeError(f"postfix {name} accepted {inj['accepted']} of {n}: {inj['errors']}")
        util.wait_until(lambda: len(inst.held_queue_ids()) >= n, 60, interval=0.2,
                        message=lambda: f"{n} held messages at {name}")
        reset_unbound_zone(lab)
        log0 = len(inst.log_text())
        rcv_count = rcv.counter()
        rcv_log0 = rcv.log_size()
        sent = LogCounter(inst.maillog, re.compile(rf"/smtp\[\d+\]: \w+: to=<[^>]*>, relay={re.escape(MX_HOST)}\[.*status=sent "))
        unbound_pid = pid_from_file(os.path.join(lab.dir, "unbound", "unbound.pid"))
        master = inst.master_pid()
        cpu = Cpu({"postfix": lambda: group_cpu(master), "receiver": rcv.cpu_probe(),
                   "unbound": lambda: proc_cpu(unbound_pid), "machine": machine_busy})
        t0 = time.perf_counter()
        util.run([postfix.POSTSUPER, "-c", inst.etc, "-H", "ALL"], timeout=60)
        util.run([postfix.POSTQUEUE, "-c", inst.etc, "-f"], timeout=60)
        t_released = time.perf_counter()
        ok, t_end = wait_count(rcv_count, n, args.timeout, alive=lambda: inst.running)
        used = cpu.used()
        seconds = t_end - t0
        if ok:
            try:
                util.wait_until(lambda: sent.poll() >= rcv_count.poll(), 10, message="postfix status=sent lines")
            except util.LabTimeout:
                pass
        time.sleep(0.3)
        sent.poll()
        rcv_count.poll()
        # a live smtp process: does it see the lab resolv.conf?
        smtp_view = None
        for pid, comm, f in util.proc_stats():
            if comm == "smtp" and int(f[2]) == master:
                smtp_view = {"pid": pid, "mnt_ns": os.readlink(f"/proc/{pid}/ns/mnt"),
                             "resolv_conf": util.read_text(f"/proc/{pid}/root/etc/resolv.conf").strip()}
                break
        out["namespace"]["smtp_process"] = smtp_view
        log = inst.log_text()[log0:]
        tls_lines = re.findall(rf"/smtp\[\d+\]: (\w+) TLS connection established to {re.escape(MX_HOST)}\[", log)
        tls_kinds: dict[str, int] = {}
        for k in tls_lines:
            tls_kinds[k] = tls_kinds.get(k, 0) + 1
        tls_established = re.findall(r"TLS connection established to [^:]+:\d+: (\S+) with cipher (\S+)", log)
        out.update({
            "messages": n, "received": rcv_count.count, "complete": ok and rcv_count.count == n,
            "seconds": round(seconds, 3), "per_s": rcv_count.count / seconds if seconds else 0.0,
            "release_commands_s": round(t_released - t0, 3),
            "sender_sent_lines": sent.count, "tls_handshakes_by_kind": tls_kinds,
            "verified_handshakes": tls_kinds.get("Verified", 0),
            "tls_versions": sorted({f"{v} {c}" for v, c in tls_established}),
            "dnssec_warnings": len(re.findall(r"DNSSEC validation may be unavailable", log)),
            "deferred_lines": len(re.findall(r"status=deferred", log)),
            "bounced_lines": len(re.findall(r"status=bounced", log)),
            "warnings": [l for l in log.splitlines() if "warning:" in l][:5],
            "cpu_s": used, "receiver_log": rcv.connections_since(rcv_log0),
            "example_sent_line": sent.lines[0] if sent.lines else None,
            "example_tls_line": util.first(l for l in log.splitlines() if "TLS connection established to" in l),
            "queue_left": len(inst.queue()),
        })
        return out
    finally:
        inst.stop()


# --------------------------------------------------------------------------------------------------


def keep_logs(src: str, dst: str) -> None:
    os.makedirs(dst, exist_ok=True)
    for root, _dirs, files in os.walk(src):
        for f in files:
            if f in ("mxedge.log", "controlplane.log", "maillog", "unbound.log", "mxedge.yaml", "controlplane.yaml",
                     "main.cf", "master.cf"):
                rel = os.path.relpath(os.path.join(root, f), src).replace("/", "_")
                shutil.copy(os.path.join(root, f), os.path.join(dst, rel))


def side_ok(r: dict) -> tuple[bool, list[str]]:
    n = r["messages"]
    problems = []
    if not r.get("complete"):
        problems.append(f"receiver counted {r.get('received')} of {n}")
    if r["side"] == "mxedge":
        if r.get("dane_verified") != n:
            problems.append(f"DANE-verified message.delivered lines {r.get('dane_verified')} of {n} "
                            f"(delivered lines {r.get('sender_delivered_lines')})")
        if r.get("problems"):
            problems.append(f"{r['problems']} deferred/failed/attempt_failed lines, e.g. {r['problem_lines'][:1]}")
    else:
        if r.get("sender_sent_lines") != n:
            problems.append(f"status=sent lines {r.get('sender_sent_lines')} of {n}")
        kinds = r.get("tls_handshakes_by_kind", {})
        if not kinds.get("Verified") or set(kinds) != {"Verified"}:
            problems.append(f"TLS handshakes not all Verified: {kinds}")
        if r.get("dnssec_warnings"):
            problems.append(f"{r['dnssec_warnings']} 'DNSSEC validation may be unavailable' warnings")
        if r.get("deferred_lines") or r.get("bounced_lines"):
            problems.append(f"deferred {r.get('deferred_lines')} / bounced {r.get('bounced_lines')} lines")
        sv = (r.get("namespace") or {}).get("smtp_process")
        if sv is not None and "nameserver" not in sv.get("resolv_conf", ""):
            problems.append(f"smtp process resolv.conf: {sv}")
    return not problems, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 messages (a smoke run)")
    ap.add_argument("--messages", type=int, help="how many messages per side (default 2000; 300 with --quick)")
    ap.add_argument("--inject-connections", type=int, default=8, help="parallel injection sessions (default 8)")
    ap.add_argument("--messages-per-session", type=int, default=10,
                    help="messages per injection session (default 10: many sessions, so the kernel's "
                         "SO_REUSEPORT hash spreads them evenly over mxedge's workers)")
    ap.add_argument("--receiver-discard", choices=("smtpd", "transport"), default="smtpd",
                    help="how the receiver sinks mail (default smtpd: DISCARD action, no queue)")
    ap.add_argument("--postfix-tls-reuse", action="store_true",
                    help="also run Postfix with smtp_tls_connection_reuse = yes (not a default)")
    ap.add_argument("--timeout", type=float, help="seconds a side may take to deliver (default 60 + N/10)")
    ap.add_argument("--json", help="write the figures here as JSON")
    ap.add_argument("--keep-logs", metavar="DIR", help="copy every log (mxedge, control plane, maillogs, unbound) here")
    args = ap.parse_args()
    n = args.messages or (300 if args.quick else 2000)
    args.timeout = args.timeout or 60 + n / 10
    for reason in (cp_mod.missing_binary_reason(), gateway_mod.missing_binary_reason()):
        if reason:
            print(f"bench_delivery: {reason}", file=sys.stderr)
            return 1
    if os.geteuid() != 0:
        print("bench_delivery: must run as root (Postfix on port 25, mount namespaces)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    results: list[dict] = []
    load_at_start = util.read_text("/proc/loadavg").split()[:3]
    source = {"dataplane": gateway_mod.binary_path(), "controlplane": cp_mod.binary_path()}
    built = {k: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(v))) for k, v in source.items()}
    try:
        with util.LabDir("mxedge-bench-dlv-") as d:
            # run copies: the build directory may be rebuilt by somebody else while this runs
            for k, v in source.items():
                os.makedirs(os.path.join(d.path, "bin", k), exist_ok=True)
                shutil.copy2(v, os.path.join(d.path, "bin", k, os.path.basename(v)))
            os.environ["MXEDGE_BUILD_DIR"] = os.path.join(d.path, "bin")
            from lab import certs
            pki = certs.get_pki(d.sub("pki"))
            with dns.DnsLab(d.sub("dns"), leaf_cert=pki.ecdsa.cert, ca_cert=pki.ca_pem, bench_domains=0,
                            sts_bench_domains=0, delivery=True, pki=pki) as lab:
                lab.start()
                lab.start_unbound(extra={"verbosity": 0, "log-servfail": "no", "val-log-level": 0})
                m = dns.query(lab.unbound_address, f"_25._tcp.{MX_HOST}", "TLSA")
                if m is None or not m.ad or not m.answers("TLSA"):
                    raise RuntimeError(f"unbound gives no validated TLSA for {MX_HOST}: {m}")
                rcv = Receiver(d, lab, pki, args.receiver_discard).start()
                try:
                    results.append(run_mxedge(d, lab, pki, rcv, n, args))
                    results.append(run_postfix(d, lab, rcv, n, args, "postfix", {}))
                    if args.postfix_tls_reuse:
                        results.append(run_postfix(d, lab, rcv, n, args, "postfix-reuse",
                                                   {"smtp_tls_connection_reuse": "yes"},
                                                   "tlsproxy  unix  -       -       n       -       0       tlsproxy\n"))
                finally:
                    rcv.stop()
                    if args.keep_logs:
                        keep_logs(d.path, args.keep_logs)
    except (RuntimeError, AssertionError, OSError, subprocess.SubprocessError) as e:
        print(f"bench_delivery: setup error: {e}", file=sys.stderr)
        for r in results:
            print(json.dumps(r)[:2000], file=sys.stderr)
        return 1

    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "postfix"], capture_output=True, text=True).stdout
    mx, pf = results[0], results[1]
    print(f"Outbound DANE delivery: mxedge vs Postfix {version} as the sender; {n} messages of ~{BODY_SIZE // 1024} KiB, "
          f"one recipient each at {DOMAIN} (TLSA 3 1 1), one receiver (Postfix, discard={args.receiver_discard}); "
          f"timed from release to the receiver's N-th message")
    print(f"  mxedge: copies of {source['dataplane']} (built {built['dataplane']}) and {source['controlplane']} "
          f"(built {built['controlplane']}); {os.cpu_count()} CPUs")
    hdr = f"{'side':28} {'messages':>9} {'seconds':>8} {'deliv/s':>9} {'DANE-verified':>14} {'rcv conns':>9} {'rcv TLS':>8}  CPU s (sender / receiver / unbound)"
    print(hdr)
    for r in results:
        if r["side"] == "mxedge":
            label = "mxedge (from cp start)"
            ver = f"{r['dane_verified']}/{r['messages']}"
            cpu = f"{r['cpu_s']['dataplane']:.2f}+{r['cpu_s']['controlplane']:.2f} cp / {r['cpu_s']['receiver']:.2f} / {r['cpu_s']['unbound']:.2f}"
        else:
            label = "postfix" if r["side"] == "postfix" else "postfix tls_connection_reuse"
            ver = f"{r['sender_sent_lines']} sent, {r['verified_handshakes']} hs"
            cpu = f"{r['cpu_s']['postfix']:.2f} / {r['cpu_s']['receiver']:.2f} / {r['cpu_s']['unbound']:.2f}"
        rl = r["receiver_log"]
        print(f"{label:28} {r['received']:>4}/{r['messages']:<4} {r['seconds']:8.2f} {r['per_s']:9.1f} {ver:>14} "
              f"{rl['connections']:>9} {rl['tls_handshakes']:>8}  {cpu}")
        if r["side"] == "mxedge" and r.get("seconds_from_link") is not None:
            print(f"{'mxedge (from link connect)':28} {'':9} {r['seconds_from_link']:8.2f} {r['per_s_from_link']:9.1f}")
    ratio = mx["per_s"] / pf["per_s"] if pf["per_s"] else float("nan")
    ratio_link = mx.get("per_s_from_link", 0) / pf["per_s"] if pf["per_s"] else float("nan")
    print(f"ratio mxedge / Postfix (deliveries/s): {ratio:.2f}x from control-plane start, "
          f"{ratio_link:.2f}x from the policy link's connection (issue #6 target: >= 2x)")
    if len(results) > 2:
        pr = results[2]
        print(f"  (Postfix with smtp_tls_connection_reuse = yes: {pr['per_s']:.1f}/s; mxedge / it: "
              f"{mx['per_s'] / pr['per_s'] if pr['per_s'] else float('nan'):.2f}x from cp start, "
              f"{mx.get('per_s_from_link', 0) / pr['per_s'] if pr['per_s'] else float('nan'):.2f}x from link)")
    print(f"mxedge timeline (s from control-plane start): cp started {mx['controlplane_start_s']}, link connected "
          f"{mx['link_connected_s']}, policy compiled {mx['policy_compiled_s']}, first delivery {mx['first_delivery_s']}, "
          f"last delivery logged {mx['last_delivery_s']}; deliveries by worker {mx['by_worker']}; TLS resumed "
          f"{mx['resumed']}; {mx['tls_versions']}")
    print(f"  e.g. {(mx.get('example_delivered_line') or '')[:400]}")
    for r in results[1:]:
        ns = r["namespace"]
        print(f"{r['side']}: TLS handshakes {r['tls_handshakes_by_kind']} ({r['tls_versions']}); DNSSEC warnings "
              f"{r['dnssec_warnings']}; release commands {r['release_commands_s']} s; resolv.conf seen by master "
              f"{ns['master']['resolv_conf'].strip()!r}, by smtp[{(ns.get('smtp_process') or {}).get('pid')}] "
              f"{(ns.get('smtp_process') or {}).get('resolv_conf')!r} (ours: {ns['host_resolv_conf']!r})")
        print(f"  e.g. {(r.get('example_tls_line') or '')[:300]}")
        print(f"  e.g. {(r.get('example_sent_line') or '')[:300]}")
    for r in results:
        c = r["cpu_s"]
        sender = c.get("dataplane", 0) + c.get("controlplane", 0) + c.get("postfix", 0)
        busy = (sender + c["receiver"] + c["unbound"]) / r["seconds"] if r["seconds"] else 0
        others = max(0.0, c["machine"] - sender - c["receiver"] - c["unbound"])
        print(f"CPU during {r['side']}'s delivery: sender {1000 * sender / max(1, r['received']):.2f} ms/message, "
              f"receiver {1000 * c['receiver'] / max(1, r['received']):.2f} ms/message; sender+receiver+unbound kept "
              f"{busy:.2f} of {os.cpu_count()} CPUs busy (receiver alone {c['receiver'] / r['seconds'] if r['seconds'] else 0:.2f}); "
              f"everything else on the machine {others / r['seconds'] if r['seconds'] else 0:.2f} CPUs")
        if r["seconds"] and others / r["seconds"] > 0.2:
            print(f"  WARNING: other processes used {others:.1f} CPU-s during {r['side']}'s timed phase: "
                  f"its figures are disturbed (load average at start {load_at_start})")
    print(f"injection (not timed): " + ", ".join(f"{r['side']} {r['injection']['seconds']} s" for r in results))
    status = 0
    for r in results:
        good, problems = side_ok(r)
        if not good:
            status = 2
            print(f"FAILURES {r['side']}: " + "; ".join(problems))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"messages": n, "postfix_version": version, "receiver_discard": args.receiver_discard,
                       "ratio": ratio, "ratio_from_link": ratio_link, "sides": results}, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
