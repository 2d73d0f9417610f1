#!/usr/bin/python3
"""bench_inbound.py - mxedge's inbound path against Postfix 3.7, raw OpenSSL, and its own memory budget.

Run from the repository root, as root, after building (build/ or $MXEDGE_BUILD_DIR):

    /usr/bin/python3 tests/load/bench_inbound.py [--quick] [--json out.json]

It prints figures; it is not a test. Exit status 0 when every run completed (whatever the figures),
1 when a run could not be carried out, 130 when interrupted.

What it measures, in one run, on loopback only (127.0.0.1-127.0.0.4):

(a) Relay throughput, mxedge vs Postfix. Both are the same kind of relay: STARTTLS offered with the
    same lab ECDSA (P-256) certificate and nothing else, mail for lab.test accepted and relayed in
    plaintext to the same smtp-sink next hop, every message made durable before "250" (mxedge's group
    commit always fdatasyncs; Postfix fsyncs each queue file, its default). Postfix is the lab's
    benchmark_relay (tests/lab/postfix.py, tuning documented there). The same mxedge-loadgen command
    line drives both: closed loop, CONCURRENCY sessions in flight, STARTTLS on every session, 4 KiB
    messages, 1 and then 10 messages per session, one warm-up run and then one measured run of
    DURATION seconds. mxedge runs workers on both cores (workers.cores [0, 1]), and the load generator
    and smtp-sink compete for the same two cores: that is inherent on a 2-core machine, and it is why
    the CPU seconds each server used (utime+stime from /proc/PID/stat; for Postfix summed over the
    master's process group, with the time of exited children that the master reaped) and messages per
    server CPU-second are printed next to the raw rates. Peak memory: mxedge's VmHWM; Postfix's peak of
    the sum of VmRSS over its processes, sampled every SAMPLE_INTERVAL s during the measured run (shared
    library pages are counted once per process there, so the sum of Pss is printed too). The next hop
    is smtp-sink without -d (nothing written per message), so that the next hop's disk work does not
    take CPU from the server under test; the number of messages relayed by the end of the run and
    after a short drain is printed as a check that relaying kept up.
    mxedge's limits.connections_per_source is raised to 1000 for (a): all load comes from 127.0.0.1,
    and the lab's Postfix has its per-client limits off as well.

(b) TLS handshakes per worker core, mxedge vs a bare OpenSSL loop (mxedge-tls-accept-loop, built from
    tests/load/tls_accept_loop.cc: one thread, blocking accept, SSL_accept, 220/250/221, with the
    SSL_CTX built by mxedge's own tls::make_server_context). Implicit TLS, RSA-2048 certificate (the
    server's RSA signature makes the server the bottleneck; with ECDSA the client's verification would
    be). mxedge with workers.cores [0] and the bare loop are pinned to CPU 0, the load generator to
    CPU 1 (taskset) with --threads 1, the same command line for both. The bare loop serves one
    connection at a time and so waits for the client between its steps; its CPU use is printed, and
    handshakes per server CPU-second is printed as the per-core efficiency of each.

(c) Memory per idle TLS session: mxedge (workers [0, 1]) with IDLE sessions that completed STARTTLS
    and the EHLO after it and then stay idle (mxedge-loadgen --idle, spread over 4 loopback source
    addresses). VmRSS of mxedge before, while held (median of 3 samples once all are idle) and after
    they closed; (held - before) / sessions in KiB. Kernel socket buffers are not in VmRSS.

Shared machine: for every measured run of (a) and (b) the machine's busy CPU time (/proc/stat) is split
into the server, the load generator (getrusage of the reaped mxedge-loadgen), smtp-sink, softirq, and
an estimate of everything else: other people's work on the box shows up there, and is printed rather
than corrected for. The load average is printed too, but the benchmark itself raises it (Postfix runs
one smtpd process per session).

Progress lines go to stdout as the runs go; at the end a summary table, and with --json every figure.
Everything started here is stopped, and every temporary directory removed, on any exit (try/finally,
SIGINT, SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))

from lab import certs, gateway, ports, postfix, smtp_sink, util  # noqa: E402

BUILD = os.environ.get("MXEDGE_BUILD_DIR") or os.path.join(REPO, "build")
LOADGEN = os.path.join(BUILD, "tests", "load", "loadgen", "mxedge-loadgen")
ACCEPT_LOOP = os.path.join(BUILD, "tests", "load", "mxedge-tls-accept-loop")
DATAPLANE = gateway.binary_path()

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
SAMPLE_INTERVAL = 0.25
SOURCE_ADDRESSES = "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4"


class Settings:
    def __init__(self, quick: bool):
        self.quick = quick
        self.duration = 4.0 if quick else 15.0      # measured run, (a) and (b)
        self.warmup = 1.0 if quick else 2.0
        self.concurrency = 50                       # (a): sessions in flight, same for both servers
        self.loadgen_threads = 2                    # (a) and (c): the client uses both cores too
        self.hs_concurrency = 50                    # (b)
        self.message_size = 4096
        self.messages_per_session = [1, 10]
        self.idle_sessions = 1000 if quick else 10000
        self.idle_hold = 3.0 if quick else 4.0
        self.drain_timeout = 5.0 if quick else 10.0


# ------------------------------------------------------------------------------------------------
# output

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def fmt_num(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ------------------------------------------------------------------------------------------------
# /proc accounting


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rfind(")") + 2:].split()


def cpu_ticks(pid: int, children: bool = False) -> int:
    """utime+stime of the process (all its threads); with children also cutime+cstime."""
    f = _stat_fields(pid)
    if f is None:
        return 0
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t


def status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_pids(pgid: int) -> list[int]:
    """Processes in process group pgid (the Postfix master and every daemon it started)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        f = _stat_fields(int(entry))
        if f is not None and int(f[2]) == pgid and f[0] != "Z":
            out.append(int(entry))
    return out


def machine_ticks() -> tuple[int, int, int]:
    """(busy, softirq, total) CPU ticks of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, softirq, busy + idle + iowait


class MachineAccount:
    """Where the machine's CPU time went during a measured run: the server, the load generator
    (getrusage of reaped children: the run's mxedge-loadgen), smtp-sink, and the rest (kernel softirq
    work for loopback traffic, and any other process on the box: other people's builds show up here)."""

    def __init__(self, sink_pid: int | None, server: Server):
        self.sink_pid = sink_pid
        self.server = server

    @staticmethod
    def _processes() -> dict[tuple[int, str], tuple[str, int]]:
        """{(pid, start time): (name, utime+stime+cutime+cstime)} of every process on the box."""
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            name = st[st.find("(") + 1:st.rfind(")")]
            f = st[st.rfind(")") + 2:].split()
            out[(int(entry), f[19])] = (name, sum(int(x) for x in f[11:15]))
        return out

    def start(self) -> None:
        self.p0 = self._processes()
        self.m0 = machine_ticks()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.c0 = ru.ru_utime + ru.ru_stime
        self.s0 = cpu_ticks(self.sink_pid) if self.sink_pid else 0

    def stop(self, server_cpu_s: float) -> dict:
        m1 = machine_ticks()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy = (m1[0] - self.m0[0]) / CLK_TCK
        softirq = (m1[1] - self.m0[1]) / CLK_TCK
        total = (m1[2] - self.m0[2]) / CLK_TCK
        loadgen = ru.ru_utime + ru.ru_stime - self.c0
        sink = ((cpu_ticks(self.sink_pid) if self.sink_pid else 0) - self.s0) / CLK_TCK
        rest = busy - server_cpu_s - loadgen - sink
        # who else used the CPU: processes alive at both ends (their reaped children included, so a
        # build shows up as its make/ninja/pytest), less this benchmark's own
        mine = {os.getpid(), self.sink_pid, *self.server.pids_fn()}
        others = []
        for key, (name, ticks) in self._processes().items():
            if key[0] in mine or key not in self.p0:
                continue
            d = (ticks - self.p0[key][1]) / CLK_TCK
            if d >= 0.1:
                others.append((d, f"{name}[{key[0]}]"))
        others.sort(reverse=True)
        return {"cpu_s_total": total, "cpu_s_busy": busy, "server": server_cpu_s, "loadgen": loadgen,
                "smtp_sink": sink, "softirq": softirq, "rest": rest,
                "other_processes_est": max(0.0, rest - softirq),
                "busiest_other_processes": [f"{n} {d:.1f}s" for d, n in others[:4]]}


def account_text(a: dict) -> str:
    return (f"machine CPU {a['cpu_s_busy']:.1f} of {a['cpu_s_total']:.1f} CPU-s busy: server {a['server']:.1f}, "
            f"loadgen {a['loadgen']:.1f}, smtp-sink {a['smtp_sink']:.1f}, softirq {a['softirq']:.1f}, "
            f"other processes ~{a['other_processes_est']:.1f}"
            + (f" ({', '.join(a['busiest_other_processes'])})" if a["busiest_other_processes"] else ""))


class Server:
    """What the accounting needs to know about a server under test."""

    def __init__(self, name: str, pids_fn, children: bool):
        self.name = name
        self.pids_fn = pids_fn          # -> list of pids making up the server now
        self.children = children        # count reaped children's CPU (Postfix)

    def cpu_seconds(self) -> float:
        return sum(cpu_ticks(p, self.children) for p in self.pids_fn()) / CLK_TCK

    def rss_kib(self) -> int:
        return sum(status_kib(p, "VmRSS") or 0 for p in self.pids_fn())


class Sampler(threading.Thread):
    """Peak of the summed VmRSS (and Pss, every 4th sample) of a server's processes."""

    def __init__(self, server: Server):
        super().__init__(daemon=True)
        self.server = server
        self.stop_event = threading.Event()
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.samples = 0

    def run(self) -> None:
        n = 0
        while not self.stop_event.is_set():
            pids = self.server.pids_fn()
            self.peak_procs = max(self.peak_procs, len(pids))
            self.peak_rss = max(self.peak_rss, sum(status_kib(p, "VmRSS") or 0 for p in pids))
            if n % 4 == 0:
                self.peak_pss = max(self.peak_pss, sum(pss_kib(p) for p in pids))
            n += 1
            self.samples = n
            self.stop_event.wait(SAMPLE_INTERVAL)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)


# ------------------------------------------------------------------------------------------------
# processes started here (besides the lab's own, which clean up after themselves)

_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


def spawn(argv: list[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    with _children_lock:
        _children[p.pid] = p
    return p


def reap(p: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGTERM, wait, then SIGKILL the process group (it is its own session, pgid == pid)."""
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
    with _children_lock:
        _children.pop(p.pid, None)
    return p.returncode


def reap_all() -> None:
    with _children_lock:
        procs = list(_children.values())
    for p in procs:
        try:
            reap(p, timeout=3)
        except Exception:  # noqa: BLE001 - best effort during cleanup
            pass


class _DiscardingSink(smtp_sink.SmtpSink):
    """smtp-sink without -d: it accepts and discards, writing no file per transaction (the lab's
    SmtpSink always records; a benchmark's next hop should not spend the shared cores on disk)."""

    def _argv(self, port: int) -> list[str]:
        argv = super()._argv(port)
        i = argv.index("-d")
        del argv[i:i + 2]
        return argv


# ------------------------------------------------------------------------------------------------
# the load generator


def run_loadgen(label: str, args: list[str], json_path: str, timeout: float, taskset: str | None = None,
                progress_every: int = 5, on_line=None) -> dict:
    """Runs mxedge-loadgen to completion; prints every progress_every-th progress line. Returns its JSON
    report with "exit_status" and "text" (its text report) added."""
    argv = [LOADGEN, *args, "--json", json_path]
    if taskset is not None:
        argv = ["taskset", "-c", taskset, *argv]
    # stdout (the text report) to a file; stderr (progress) is read by one thread only
    text_path = json_path[:-len(".json")] + ".txt" if json_path.endswith(".json") else json_path + ".txt"
    with open(text_path, "w") as text_file:
        p = spawn(argv, stdout=text_file, stderr=subprocess.PIPE, text=True)

    def pump_stderr() -> None:
        for line in p.stderr:
            line = line.rstrip("\n")
            if on_line is not None:
                on_line(line)
            m = re.match(r"t=(\d+)s ", line)
            if m is None:
                if line.startswith("mxedge-loadgen:"):
                    say(f"  {label}: {line[len('mxedge-loadgen: '):]}")
                continue
            if int(m.group(1)) % progress_every == 0:
                say(f"  {label}: {line}")

    reader = threading.Thread(target=pump_stderr, daemon=True)
    reader.start()
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        say(f"  {label}: load generator still running after {timeout:.0f}s; stopping it")
        reap(p, timeout=5)
    reader.join(5)
    out = util.read_text(text_path)
    with _children_lock:
        _children.pop(p.pid, None)
    try:
        with open(json_path) as f:
            report = json.load(f)
    except (OSError, ValueError):
        raise RuntimeError(f"{label}: mxedge-loadgen wrote no report (exit {p.returncode}):\n{out}")
    report["exit_status"] = p.returncode
    report["text"] = out
    report["command"] = " ".join(os.path.basename(a) if a == LOADGEN else a for a in argv)
    return report


def loadgen_summary(r: dict) -> dict:
    lat = r["latency_ms"]
    return {
        "elapsed_s": r["elapsed_s"],
        "sessions_ok": r["sessions"]["ok"],
        "sessions_failed": r["sessions"]["failed"],
        "sessions_per_s": r["sessions"]["per_s"],
        "messages_ok": r["messages"]["ok"],
        "messages_failed": r["messages"]["failed"],
        "messages_per_s": r["messages"]["per_s"],
        "handshakes": r["handshakes"],
        "handshakes_per_s": r["handshakes_per_s"],
        "latency_ms": {k: {q: v.get(q) for q in ("p50", "p99", "p999", "max")} for k, v in lat.items()},
        "tls_versions": r["tls"]["versions"],
        "tls_ciphers": r["tls"]["ciphers"],
        "errors": r["errors"]["detail"],
        "error_samples": r["errors"]["samples"],
        "exit_status": r["exit_status"],
        "command": r["command"],
    }


def count_in_file(path: str, needle: bytes) -> int:
    n = 0
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                n += chunk.count(needle)
                # re-read the last len-1 bytes so a needle split across chunks is counted once
                if len(chunk) == 1 << 20:
                    f.seek(-(len(needle) - 1), os.SEEK_CUR)
    except OSError:
        pass
    return n


# ------------------------------------------------------------------------------------------------
# (a) relay throughput


def relay_args(s: Settings, port: int, mps: int, duration: float) -> list[str]:
    return ["--server", f"127.0.0.1:{port}", "--tls", "starttls", "--threads", str(s.loadgen_threads),
            "--concurrency", str(s.concurrency), "--duration", f"{duration:g}",
            "--messages-per-session", str(mps), "--message-size", str(s.message_size),
            "--to", "rcpt@lab.test", "--timeout", "30"]


def measure_relay(s: Settings, name: str, server: Server, port: int, mps: int, workdir: str,
                  relayed_count, sink_pid: int | None) -> dict:
    label = f"{name} {mps} msg/session"
    say(f"(a) {label}: warm-up {s.warmup:g}s")
    warm = run_loadgen(label + " warm-up", relay_args(s, port, mps, s.warmup),
                       os.path.join(workdir, f"{name}-{mps}-warmup.json"), timeout=s.warmup + 60,
                       progress_every=1000)
    say(f"(a) {label}: measured run {s.duration:g}s, concurrency {s.concurrency}, load average {load_average()}")
    sampler = Sampler(server)
    account = MachineAccount(sink_pid, server)
    account.start()
    cpu0 = server.cpu_seconds()
    t0 = time.monotonic()
    sampler.start()
    r = run_loadgen(label, relay_args(s, port, mps, s.duration), os.path.join(workdir, f"{name}-{mps}.json"),
                    timeout=s.duration + 90)
    wall = time.monotonic() - t0
    cpu = server.cpu_seconds() - cpu0
    machine = account.stop(cpu)
    sampler.stop()
    say(f"(a) {label}: command: {r['command']}")
    say(f"(a) {label}: {account_text(machine)}")
    accepted = warm["messages"]["ok"] + r["messages"]["ok"]
    relayed_at_end = relayed_count()
    deadline = time.monotonic() + s.drain_timeout
    while relayed_count() < accepted and time.monotonic() < deadline:
        time.sleep(0.2)
    relayed_after = relayed_count()
    out = loadgen_summary(r)
    out.update({
        "server_cpu_s": cpu,
        "server_cpu_share": cpu / wall if wall > 0 else None,
        "messages_per_cpu_s": r["messages"]["ok"] / cpu if cpu > 0 else None,
        "peak_rss_sum_kib": sampler.peak_rss,
        "peak_pss_sum_kib": sampler.peak_pss,
        "peak_processes": sampler.peak_procs,
        "rss_samples": sampler.samples,
        "accepted_incl_warmup": accepted,
        "relayed_at_end": relayed_at_end,
        "relayed_after_drain": relayed_after,
        "machine_cpu": machine,
        "load_average_after": load_average(),
    })
    lat = out["latency_ms"]
    say(f"(a) {label}: {out['messages_per_s']:.1f} msgs/s, p99 data->250 {lat['data_to_250']['p99']} ms, "
        f"server CPU {cpu:.2f}s ({out['messages_per_cpu_s'] or 0:.0f} msgs/CPU-s), "
        f"failed sessions {out['sessions_failed']}, relayed {relayed_after}/{accepted}")
    return out


def run_mxedge_relay(s: Settings, lab: util.LabDir, pki, sink, mps: int) -> dict:
    gw = gateway.Gateway(lab.unique_sub(f"mxedge-{mps}"), pki, next_hop_port=sink.port,
                         listeners=[{"name": "smtp", "tls_mode": "starttls",
                                     "certificates": [pki.ecdsa.as_gateway_certificate()]}],
                         config={"workers": {"cores": [0, 1]},
                                 "limits": {"connections_per_source": 1000}})
    gw.start()
    try:
        server = Server("mxedge", lambda: [gw.pid] if gw.running else [], children=False)
        out = measure_relay(s, "mxedge", server, gw.smtp_port, mps, gw.workdir,
                            lambda: count_in_file(gw.log_path, b"event=message.relayed"), sink.proc.pid)
        out["peak_rss_kib"] = status_kib(gw.pid, "VmHWM")
        out["rss_measure"] = "VmHWM of mxedge-dataplane (/proc/PID/status)"
        out["server_pid"] = gw.pid
        return out
    finally:
        gw.stop()


def run_postfix_relay(s: Settings, lab: util.LabDir, pki, sink, mps: int) -> dict:
    # a short directory name: Postfix's UNIX socket paths must fit in sun_path
    pf = postfix.benchmark_relay(lab.unique_sub(f"pf{mps}"), pki, sink_port=sink.port, certs=[pki.ecdsa])
    pf.start()
    try:
        master = pf.master_pid()
        server = Server("postfix", lambda: group_pids(master) if util.pid_alive(master) else [], children=True)
        out = measure_relay(s, "postfix", server, pf.smtpd_port, mps, pf.dir,
                            lambda: count_in_file(pf.maillog, b"status=sent"), sink.proc.pid)
        out["peak_rss_kib"] = out["peak_rss_sum_kib"]
        out["rss_measure"] = (f"peak of the sum of VmRSS over the master's process group, sampled every "
                              f"{SAMPLE_INTERVAL}s during the measured run")
        out["server_pid"] = master
        return out
    finally:
        pf.stop()


# ------------------------------------------------------------------------------------------------
# (b) TLS handshakes per core


def handshake_args(s: Settings, port: int, duration: float) -> list[str]:
    return ["--server", f"127.0.0.1:{port}", "--tls", "implicit", "--messages-per-session", "0",
            "--threads", "1", "--concurrency", str(s.hs_concurrency), "--duration", f"{duration:g}",
            "--timeout", "30"]


def measure_handshakes(s: Settings, name: str, server: Server, port: int, workdir: str) -> dict:
    label = f"{name} handshakes"
    run_loadgen(label + " warm-up", handshake_args(s, port, s.warmup), os.path.join(workdir, f"{name}-hs-warmup.json"),
                timeout=s.warmup + 60, taskset="1", progress_every=1000)
    say(f"(b) {label}: measured run {s.duration:g}s, load average {load_average()}")
    account = MachineAccount(None, server)
    account.start()
    cpu0 = server.cpu_seconds()
    t0 = time.monotonic()
    r = run_loadgen(label, handshake_args(s, port, s.duration), os.path.join(workdir, f"{name}-hs.json"),
                    timeout=s.duration + 90, taskset="1")
    wall = time.monotonic() - t0
    cpu = server.cpu_seconds() - cpu0
    machine = account.stop(cpu)
    say(f"(b) {label}: command: {r['command']}")
    say(f"(b) {label}: {account_text(machine)}")
    out = loadgen_summary(r)
    out.update({
        "server_cpu_s": cpu,
        "server_cpu_share": cpu / wall if wall > 0 else None,
        "handshakes_per_cpu_s": r["handshakes"] / cpu if cpu > 0 else None,
        "machine_cpu": machine,
        "load_average_after": load_average(),
    })
    say(f"(b) {label}: {out['handshakes_per_s']:.1f} handshakes/s, server CPU {cpu:.2f}s of {wall:.1f}s wall "
        f"({out['handshakes_per_cpu_s'] or 0:.0f} handshakes/CPU-s), failed sessions {out['sessions_failed']}")
    return out


def run_mxedge_handshakes(s: Settings, lab: util.LabDir, pki, sink) -> dict:
    gw = gateway.Gateway(lab.unique_sub("mxedge-hs"), pki, next_hop_port=sink.port,
                         listeners=[{"name": "smtps", "tls_mode": "implicit",
                                     "certificates": [pki.rsa.as_gateway_certificate()]}],
                         config={"workers": {"cores": [0]}, "limits": {"connections_per_source": 1000}})
    gw.start()
    try:
        server = Server("mxedge", lambda: [gw.pid] if gw.running else [], children=False)
        return measure_handshakes(s, "mxedge", server, gw.smtps_port, gw.workdir)
    finally:
        gw.stop()


def run_bare_handshakes(s: Settings, lab: util.LabDir, pki) -> dict:
    workdir = lab.unique_sub("bare")
    port = ports.free_port("127.0.0.1")
    log_path = os.path.join(workdir, "accept-loop.log")
    with open(log_path, "wb") as log:
        p = spawn([ACCEPT_LOOP, "--listen", f"127.0.0.1:{port}", "--cert", pki.rsa.chain, "--key", pki.rsa.key,
                   "--cpu", "0", "--max-seconds", str(int(s.duration + s.warmup + 120))],
                  stdout=log, stderr=subprocess.STDOUT)
    try:
        util.wait_until(lambda: "event=tls_accept_loop.ready" in util.read_text(log_path) or p.poll() is not None,
                        10, message="mxedge-tls-accept-loop to listen")
        if p.poll() is not None:
            raise RuntimeError(f"mxedge-tls-accept-loop exited: {util.read_text(log_path)}")
        server = Server("bare", lambda: [p.pid] if p.poll() is None else [], children=False)
        return measure_handshakes(s, "bare", server, port, workdir)
    finally:
        reap(p)
        tail = util.read_text(log_path).strip().splitlines()
        if tail:
            say(f"(b) bare loop: {tail[-1]}")


# ------------------------------------------------------------------------------------------------
# (c) idle TLS sessions


def run_idle(s: Settings, lab: util.LabDir, pki, sink) -> dict:
    n = s.idle_sessions
    gw = gateway.Gateway(lab.unique_sub("mxedge-idle"), pki, next_hop_port=sink.port,
                         listeners=[{"name": "smtp", "tls_mode": "starttls",
                                     "certificates": [pki.ecdsa.as_gateway_certificate()]}],
                         config={"workers": {"cores": [0, 1]},
                                 # 4 source addresses: n/4 each; idle must outlive the opening phase
                                 "limits": {"connections_per_source": n, "sessions_total": 2 * n,
                                            "command_timeout": "300s"}})
    gw.start()
    try:
        pid = gw.pid
        time.sleep(1.0)
        before = status_kib(pid, "VmRSS")
        say(f"(c) mxedge VmRSS before: {before} KiB; opening {n} idle STARTTLS sessions, "
            f"load average {load_average()}")
        holding = threading.Event()
        held_line = {}

        def on_line(line: str) -> None:
            m = re.search(r"holding (\d+) idle sessions", line)
            if m:
                held_line["n"] = int(m.group(1))
                holding.set()

        result: dict = {}

        def drive() -> None:
            try:
                result["report"] = run_loadgen(
                    "idle", ["--server", f"127.0.0.1:{gw.smtp_port}", "--tls", "starttls", "--idle", str(n),
                             "--hold", f"{s.idle_hold:g}", "--source-addresses", SOURCE_ADDRESSES,
                             "--threads", str(s.loadgen_threads), "--timeout", "60"],
                    os.path.join(gw.workdir, "idle.json"), timeout=240, progress_every=2, on_line=on_line)
            except Exception as e:  # noqa: BLE001 - reported below
                result["error"] = str(e)
            finally:
                holding.set()

        t0 = time.monotonic()
        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        holding.wait(260)
        open_s = time.monotonic() - t0
        held_samples = []
        if "n" in held_line:
            time.sleep(min(1.0, s.idle_hold / 3))
            for _ in range(3):
                held_samples.append(status_kib(pid, "VmRSS"))
                time.sleep(min(0.4, s.idle_hold / 8))
            conns = ports.established_to(gw.smtp_port)
        else:
            conns = None
        driver.join(300)
        time.sleep(1.0)
        after = status_kib(pid, "VmRSS")
        if "error" in result:
            raise RuntimeError(result["error"])
        r = result["report"]
        idle = r["idle"]
        held = statistics.median(held_samples) if held_samples else None
        reached = held_line.get("n", idle["reached"])
        per = (held - before) / reached if held is not None and reached else None
        out = {
            "target": n,
            "reached": idle["reached"],
            "idle_at_sample": reached,
            "held": idle["held"],
            "dropped": idle["dropped"],
            "server_established_at_sample": conns,
            "open_s": open_s,
            "handshakes_per_s_while_opening": (reached / open_s) if open_s > 0 and reached else None,
            "rss_before_kib": before,
            "rss_held_kib": held,
            "rss_held_samples_kib": held_samples,
            "rss_after_close_kib": after,
            "vmhwm_kib": status_kib(pid, "VmHWM"),
            "kib_per_session": per,
            "errors": r["errors"]["detail"],
            "error_samples": r["errors"]["samples"],
            "loadgen_exit_status": r["exit_status"],
        }
        say(f"(c) idle: {reached}/{n} sessions idle; VmRSS before {before} KiB, held {held} KiB, after close "
            f"{after} KiB: {per if per is None else round(per, 2)} KiB per session")
        if reached < n:
            say(f"(c) only {reached} of {n} sessions reached idle; errors: {r['errors']['detail']} "
                f"{r['errors']['samples'][:3]}")
        return out
    finally:
        gw.stop()


# ------------------------------------------------------------------------------------------------
# report


def summary(results: dict, s: Settings) -> str:
    lines = []
    add = lines.append
    add("")
    add("=" * 100)
    add(f"SUMMARY  ({'quick' if s.quick else 'full'} run; {results['env']['cpus']} CPUs; load average at start "
        f"{results['env']['load_average_start']}, at end {results['env'].get('load_average_end')})")
    add("=" * 100)
    a = results.get("relay", {})
    if a:
        add(f"(a) relay, STARTTLS (ECDSA P-256) every session, {s.message_size} B messages, fsync on both, "
            f"concurrency {s.concurrency}, {s.duration:g}s runs; mxedge workers [0,1], loadgen --threads "
            f"{s.loadgen_threads} on the same 2 cores")
        hdr = f"  {'':34}{'mxedge':>14}{'postfix':>14}{'ratio':>10}  target"
        for mps in s.messages_per_session:
            m = a.get(f"mxedge_{mps}")
            p = a.get(f"postfix_{mps}")
            if not m or not p:
                continue
            add(f"  -- {mps} message(s) per session")
            add(hdr)

            def row(title, mv, pv, digits=1, rtarget="", show_ratio=True):
                rv = ratio(mv, pv) if show_ratio else None
                add(f"  {title:34}{fmt_num(mv, digits):>14}{fmt_num(pv, digits):>14}"
                    f"{(fmt_num(rv, 2) + 'x') if rv is not None else '':>10}  {rtarget}")

            row("messages/s", m["messages_per_s"], p["messages_per_s"], rtarget=">= 3x")
            row("server CPU seconds", m["server_cpu_s"], p["server_cpu_s"], 2)
            row("server CPU share of the run", m["server_cpu_share"], p["server_cpu_share"], 2, show_ratio=False)
            row("messages per server CPU-second", m["messages_per_cpu_s"], p["messages_per_cpu_s"])
            for key, title in (("data_to_250", "p99 data->250 (ms)"), ("connect_to_greeting", "p99 connect->greeting (ms)"),
                               ("starttls", "p99 STARTTLS->handshake (ms)")):
                row(title, m["latency_ms"][key]["p99"], p["latency_ms"][key]["p99"], 2)
            row("p50 data->250 (ms)", m["latency_ms"]["data_to_250"]["p50"], p["latency_ms"]["data_to_250"]["p50"], 2)
            row("mean session time (ms, c/(sess/s))", 1000 * s.concurrency / m["sessions_per_s"] if m["sessions_per_s"] else None,
                1000 * s.concurrency / p["sessions_per_s"] if p["sessions_per_s"] else None, 1)
            row("peak RSS (MiB)", m["peak_rss_kib"] / 1024 if m["peak_rss_kib"] else None,
                p["peak_rss_kib"] / 1024 if p["peak_rss_kib"] else None, 1)
            row("peak sum of Pss (MiB)", m["peak_pss_sum_kib"] / 1024, p["peak_pss_sum_kib"] / 1024, 1)
            row("loadgen CPU seconds", m["machine_cpu"]["loadgen"], p["machine_cpu"]["loadgen"], 2,
                show_ratio=False)
            row("other processes' CPU-s (est.)", m["machine_cpu"]["other_processes_est"],
                p["machine_cpu"]["other_processes_est"], 2, show_ratio=False)
            row("failed sessions", m["sessions_failed"], p["sessions_failed"], show_ratio=False)
            row("relayed (of accepted incl. warm-up)", f"{m['relayed_after_drain']}/{m['accepted_incl_warmup']}",
                f"{p['relayed_after_drain']}/{p['accepted_incl_warmup']}", show_ratio=False)
        add("  peak RSS: mxedge = VmHWM of the process; Postfix = peak of the sum of VmRSS over its processes "
            f"(sampled every {SAMPLE_INTERVAL}s; shared pages counted per process)")
        add("  CPU: /proc/PID/stat utime+stime during the measured run (Postfix: its process group, plus "
            "reaped children); other processes = machine busy - server - loadgen - smtp-sink - softirq")
    b = results.get("handshakes", {})
    if b.get("mxedge") and b.get("bare"):
        m, p = b["mxedge"], b["bare"]
        add("")
        add(f"(b) TLS handshakes per worker core: implicit TLS, RSA-2048, server on CPU 0, loadgen on CPU 1 "
            f"(--threads 1, concurrency {s.hs_concurrency}), {s.duration:g}s runs")
        w = 16
        add(f"  {'':34}{'mxedge':>{w}}{'bare loop':>{w}}{'ratio':>10}  target")
        add(f"  {'handshakes/s':34}{fmt_num(m['handshakes_per_s']):>{w}}{fmt_num(p['handshakes_per_s']):>{w}}"
            f"{fmt_num(ratio(m['handshakes_per_s'], p['handshakes_per_s']), 2) + 'x':>10}  >= 0.8x")
        add(f"  {'server CPU share of the run':34}{fmt_num(m['server_cpu_share'], 2):>{w}}"
            f"{fmt_num(p['server_cpu_share'], 2):>{w}}")
        add(f"  {'handshakes per server CPU-second':34}{fmt_num(m['handshakes_per_cpu_s']):>{w}}"
            f"{fmt_num(p['handshakes_per_cpu_s']):>{w}}"
            f"{fmt_num(ratio(m['handshakes_per_cpu_s'], p['handshakes_per_cpu_s']), 2) + 'x':>10}")

        def pair(x, key):
            l = x["latency_ms"][key]
            return f"{fmt_num(l['p50'], 1)} / {fmt_num(l['p99'], 1)}"
        add(f"  {'p50 / p99 connect->greeting (ms)':34}{pair(m, 'connect_to_greeting'):>{w}}"
            f"{pair(p, 'connect_to_greeting'):>{w}}")
        add(f"  {'p50 / p99 connect->TLS done (ms)':34}{pair(m, 'starttls'):>{w}}{pair(p, 'starttls'):>{w}}")
        add(f"  {'other processes CPU-s (est.)':34}{fmt_num(m['machine_cpu']['other_processes_est'], 2):>{w}}"
            f"{fmt_num(p['machine_cpu']['other_processes_est'], 2):>{w}}")
        add(f"  {'failed sessions':34}{m['sessions_failed']:>{w}}{p['sessions_failed']:>{w}}")
    c = results.get("idle")
    if c:
        add("")
        add(f"(c) memory per idle TLS session (STARTTLS + EHLO, then idle), mxedge workers [0,1]")
        add(f"  sessions idle when sampled   {c['idle_at_sample']} of {c['target']} "
            f"(server-side established: {c['server_established_at_sample']})")
        add(f"  VmRSS before / held / after  {c['rss_before_kib']} / {c['rss_held_kib']} / {c['rss_after_close_kib']} KiB")
        per = c["kib_per_session"]
        add(f"  (held - before) / sessions   {fmt_num(per, 2)} KiB   target <= 32 KiB")
    add("=" * 100)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------


def preflight() -> list[str]:
    problems = []
    for path in (DATAPLANE, LOADGEN, ACCEPT_LOOP):
        if not os.access(path, os.X_OK):
            problems.append(f"{path} is missing (build first)")
    for path in (postfix.POSTFIX, smtp_sink.SINK_BINARY, "/usr/bin/taskset"):
        if not os.access(path, os.X_OK):
            problems.append(f"{path} is missing")
    if os.geteuid() != 0:
        problems.append("must run as root (Postfix instances, smtp-sink user switch)")
    if (os.cpu_count() or 1) < 2:
        problems.append("needs at least 2 CPUs (workers on cores 0 and 1)")
    return problems


def environment() -> dict:
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            return None
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "openssl": cmd(["openssl", "version"]),
        "postfix": cmd(["postconf", "-dh", "mail_version"]),
        "git": cmd(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
        "load_average_start": load_average(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="mxedge inbound benchmark (prints figures; not a test)")
    ap.add_argument("--quick", action="store_true", help="short runs (~4 s each), 1,000 idle sessions")
    ap.add_argument("--json", metavar="FILE", help="write every figure as JSON to FILE")
    args = ap.parse_args()
    s = Settings(args.quick)

    def on_term(signum, frame):
        raise KeyboardInterrupt()
    # SIGINT too: a shell that starts the script in the background has it ignored otherwise
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    problems = preflight()
    if problems:
        for p in problems:
            print(f"bench_inbound: {p}", file=sys.stderr)
        return 1

    results: dict = {"settings": {k: v for k, v in vars(s).items()}, "env": environment()}
    say(f"bench_inbound ({'quick' if s.quick else 'full'}): {results['env']['cpus']} CPUs, "
        f"load average {results['env']['load_average_start']}, {results['env']['openssl']}, "
        f"Postfix {results['env']['postfix']}")
    status = 0
    lab = None
    sink = None
    try:
        lab = util.LabDir(prefix="mxb-")
        pki = certs.get_pki(lab.sub("pki"))
        sink = _DiscardingSink(lab.sub("sink")).start()
        say(f"lab in {lab.path}; smtp-sink (discarding) on 127.0.0.1:{sink.port}")

        relay = results.setdefault("relay", {})
        for mps in s.messages_per_session:
            relay[f"mxedge_{mps}"] = run_mxedge_relay(s, lab, pki, sink, mps)
            relay[f"postfix_{mps}"] = run_postfix_relay(s, lab, pki, sink, mps)
            m, p = relay[f"mxedge_{mps}"], relay[f"postfix_{mps}"]
            relay[f"ratio_{mps}"] = {
                "messages_per_s": ratio(m["messages_per_s"], p["messages_per_s"]),
                "messages_per_cpu_s": ratio(m["messages_per_cpu_s"], p["messages_per_cpu_s"]),
            }
            say(f"(a) {mps} msg/session: mxedge {m['messages_per_s']:.1f} vs Postfix {p['messages_per_s']:.1f} "
                f"msgs/s = {relay[f'ratio_{mps}']['messages_per_s'] or 0:.2f}x (target >= 3x); per CPU-second "
                f"{relay[f'ratio_{mps}']['messages_per_cpu_s'] or 0:.2f}x")

        hs = results.setdefault("handshakes", {})
        hs["mxedge"] = run_mxedge_handshakes(s, lab, pki, sink)
        hs["bare"] = run_bare_handshakes(s, lab, pki)
        hs["ratio"] = ratio(hs["mxedge"]["handshakes_per_s"], hs["bare"]["handshakes_per_s"])
        hs["ratio_per_cpu_s"] = ratio(hs["mxedge"]["handshakes_per_cpu_s"], hs["bare"]["handshakes_per_cpu_s"])
        say(f"(b) mxedge {hs['mxedge']['handshakes_per_s']:.1f} vs bare {hs['bare']['handshakes_per_s']:.1f} "
            f"handshakes/s = {hs['ratio'] or 0:.2f}x (target >= 0.8); per CPU-second {hs['ratio_per_cpu_s'] or 0:.2f}x")

        results["idle"] = run_idle(s, lab, pki, sink)
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        status = 130
    except Exception as e:  # noqa: BLE001 - report, clean up, exit 1
        say(f"run failed: {type(e).__name__}: {e}")
        status = 1
    finally:
        reap_all()
        if sink is not None:
            sink.stop()
        if lab is not None:
            lab.cleanup()
        util.run_all_cleanups()
    results["env"]["load_average_end"] = load_average()
    if status == 0:
        print(summary(results, s), flush=True)
    if args.json:
        results["status"] = "completed" if status == 0 else ("interrupted" if status == 130 else "failed")
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)
        say(f"figures written to {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
