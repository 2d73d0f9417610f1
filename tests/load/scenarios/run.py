#!/usr/bin/python3
"""run.py - mxedge's load scenarios: SMTP load with and without packet floods and slow sessions, on
veth with XDP, one command each, with a report (table, plots, JSON).

    /usr/bin/python3 tests/load/scenarios/run.py SCENARIO [--seconds S] [--out DIR] [options]   (root)

    smtp             (a) SMTP load alone
    syn-flood        (b) the same load, then the same load during a SYN flood at mxedge-pktgen's top rate
    blocklist-flood  (c) the same load, then the same load during a flood from blocklisted sources
    slowloris        (d) the same load, then the same load while many slow sessions hold connections

The lab (tests/lab/netns.VethLab): two network namespaces joined by a veth pair with two queues. The
gateway's namespace runs mxedge-dataplane with XDP attached natively to its veth (10.233.0.1, port 25,
STARTTLS with the lab CA's certificate) and smtp-sink as the next hop on its loopback; the client's
namespace runs mxedge-loadgen (closed loop, CONCURRENCY sessions in flight, from 16 source addresses
10.233.0.10-25, one 4 KiB message per session over STARTTLS), and mxedge-pktgen or the slowloris client.
The gateway routes everything else back through the client's namespace, so SYNs from spoofed sources
reach TCP's SYN handling as a real flood's would (DESIGN.md, "The lab"); the client's namespace does
not forward, so their SYN-ACKs end there. No frame leaves the two namespaces.

CPUs. With N CPUs the gateway's workers take CPUs 0..N-2, the load generator, smtp-sink and the
slowloris client share them, and mxedge-pktgen runs on CPU N-1. A veth delivers frames to its peer in
NAPI on the sending CPU, per queue (XPS maps the client's CPUs to queue 0, the generator's to queue 1),
so the gateway's XDP program runs on the generator's CPU for flood frames and on the load's CPUs for
the load's own frames. On a 2-CPU machine that means: the SMTP load and the gateway share CPU 0, the
flood and the XDP work it causes CPU 1. What the flood costs the SMTP side is then what crosses from
CPU 1 to CPU 0: frames XDP passes or steers to a worker (cpumap redirect), SYN handling by the kernel,
SYN-ACKs. On a NIC with RSS the flood's XDP work would be spread over every core instead; the
generator's own cost, which a real flood does not put on the gateway, is on CPU 1 only here.

Timeline of a run (seconds since the load started): warm-up W, baseline S (load alone), attack S (load
plus the flood or slowloris), recovery R; `smtp` has only W and S. Legitimate sessions per second
are the load generator's completions per second of the run (its --timeline), taken over each phase.

Accounting (every run; the report's "counters add up"): with native XDP on a veth every frame taken off
its ring runs the program, which counts it under exactly one exclusive reason (all but "allowlisted");
the interface's rx_packets counts the same frames. The client veth counts in tx_packets every frame it
sent (the stack's and mxedge-pktgen's) and, per queue, the frames ndo_xdp_xmit queued (xdp_xmit) and
refused (xdp_xmit_errors). After the run has gone quiet:
    pktgen sent                 == xdp_xmit + xdp_xmit_errors     (every generated frame is at the device)
    client tx_packets           == gateway rx_packets              (nothing lost on the link)
    sum of exclusive counters   == gateway rx_packets              (XDP saw and counted every frame)
so the counters sum exactly to the packets generated (mxedge-pktgen's and the load's own).

Targets (issue #10; ratios within one run): attack-phase sessions/s >= 0.9x baseline; for the floods,
frames dropped by the fast path / flood frames sent >= 0.99. Exit status: 0 the report was written,
the counters add up and every target was met; 1 the report was written but a target was not met; 3 the
run failed or the counters do not add up; 2 usage; 130 interrupted. Progress: one line per second.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
REPO = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, HERE)

from lab import gateway as gateway_mod  # noqa: E402
from lab.certs import get_pki  # noqa: E402
from lab.netns import VethLab, link_stats, samples, sh  # noqa: E402
from report import write_report  # noqa: E402

GW_IP = "10.233.0.1"
PEER_IP = "10.233.0.2"
LOAD_SOURCES = [f"10.233.0.{i}" for i in range(10, 26)]
SLOW_SOURCES = [f"10.233.0.{i}" for i in range(100, 110)]
BLOCKED_PREFIX = "198.18.0.0/15"  # the blocklist-flood's sources (RFC 2544 benchmarking range)
STATS_PORT = 9464
SINK_PORT = 2600
SYN_RATE, SYN_BURST = 200, 400  # per source: the load's 16 sources need well under this

SCENARIOS = {
    "smtp": "SMTP load alone",
    "syn-flood": "SMTP load during a SYN flood at the generator's top rate",
    "blocklist-flood": "SMTP load during a flood from blocklisted sources",
    "slowloris": "SMTP load while many slow sessions hold connections",
}

EXCLUSIVE_DROPS = ("drop_rate_limit", "drop_new_source", "drop_blocklist", "malformed")


def build_dir() -> str:
    return gateway_mod.build_dir()


def binary(rel: str) -> str:
    path = os.path.join(build_dir(), rel)
    if not os.access(path, os.X_OK):
        raise SystemExit(f"run.py: {path} is not built (cmake --build {build_dir()})")
    return path


# --------------------------------------------------------------------------------------------------
# Readings

def xdp_by_reason(metrics_text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for labels, value in samples(metrics_text, "mxedge_xdp_packets_total"):
        out[labels["reason"]] = out.get(labels["reason"], 0) + value
    return out


def exclusive_sum(reasons: dict[str, int]) -> int:
    return sum(v for r, v in reasons.items() if r != "allowlisted")


def ethtool_xdp(ns: str, dev: str) -> dict[str, int]:
    """Sum over queues of the veth's xdp_xmit and xdp_xmit_errors (ethtool -S)."""
    out = {"xdp_xmit": 0, "xdp_xmit_errors": 0}
    text = sh("ip", "netns", "exec", ns, "ethtool", "-S", dev).stdout
    for name, value in re.findall(r"tx_queue_\d+_(xdp_xmit(?:_errors)?): (\d+)", text):
        out[name] += int(value)
    return out


def read_cpu_jiffies() -> list[list[int]]:
    cpus = []
    with open("/proc/stat") as f:
        for line in f:
            if re.match(r"cpu\d+ ", line):
                cpus.append([int(x) for x in line.split()[1:8]])
    return cpus


def cpu_percent(prev: list[list[int]], now: list[list[int]]) -> list[dict[str, float]]:
    # /proc/stat: user nice system idle iowait irq softirq
    out = []
    for a, b in zip(prev, now):
        d = [y - x for x, y in zip(a, b)]
        total = sum(d) or 1
        out.append({"user": 100.0 * (d[0] + d[1]) / total, "system": 100.0 * d[2] / total,
                    "irq": 100.0 * d[5] / total, "softirq": 100.0 * d[6] / total,
                    "idle": 100.0 * (d[3] + d[4]) / total})
    return out


# The sampler runs inside the gateway's namespace: one JSON line per interval with the monotonic time,
# the XDP counters by reason (from the gateway's stats endpoint) and the gateway veth's rx_packets.
SAMPLER = r'''
import json, re, sys, time, urllib.request
port, dev, interval = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
rx = "/sys/class/net/%s/statistics/rx_packets" % dev
nxt = time.monotonic()
while True:
    t = time.monotonic()
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2).read().decode()
    except Exception as e:
        print(json.dumps({"t": t, "error": str(e)}), flush=True)
        text = ""
    xdp, per_cpu = {}, {}
    for m in re.finditer(r'^mxedge_xdp_packets_total\{reason="([^"]+)",cpu="(\d+)"\} (\d+)$', text, re.M):
        xdp[m.group(1)] = xdp.get(m.group(1), 0) + int(m.group(3))
        if m.group(1) != "allowlisted":
            per_cpu[m.group(2)] = per_cpu.get(m.group(2), 0) + int(m.group(3))
    sess = sum(int(v) for v in re.findall(r'^mxedge_sessions_active\{[^}]*\} (\d+)$', text, re.M))
    print(json.dumps({"t": t, "xdp": xdp, "xdp_cpu": per_cpu, "rx_packets": int(open(rx).read()),
                      "sessions_active": sess}), flush=True)
    nxt += interval
    time.sleep(max(0.0, nxt - time.monotonic()))
'''

# The slowloris client (inside the client's namespace): CONNECTIONS sessions spread over the given source
# addresses, each reading the greeting and then sending "EHLO ..." and "NOOP" lines one byte every
# INTERVAL seconds, never finishing a transaction, until it gets SIGTERM. One JSON line per second with
# the open count; a summary line at the end.
SLOWLORIS = r'''
import asyncio, json, signal, sys, time
p = json.loads(sys.argv[1])
st = {"connections": p["connections"], "opened": 0, "refused": 0, "closed_by_server": 0, "bytes_sent": 0,
      "replies": {}, "open": 0}

async def one(i, stop):
    src = p["sources"][i % len(p["sources"])]
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(p["host"], p["port"], local_addr=(src, 0)), 10)
        greeting = await asyncio.wait_for(r.readline(), 15)
    except Exception:
        st["refused"] += 1
        return
    code = greeting[:3].decode(errors="replace")
    if code != "220":
        st["refused"] += 1
        st["replies"][code] = st["replies"].get(code, 0) + 1
        w.close()
        return
    st["opened"] += 1
    st["open"] += 1
    line = b"EHLO slowloris.example.test\r\n"
    pos = 0
    try:
        while not stop.is_set():
            w.write(line[pos:pos + 1]); await w.drain()
            st["bytes_sent"] += 1
            pos += 1
            if pos == len(line):
                pos, line = 0, b"NOOP\r\n"
            try:
                data = await asyncio.wait_for(r.read(4096), p["interval"])
                if not data:
                    st["closed_by_server"] += 1
                    return
                for reply in data.decode(errors="replace").splitlines():
                    if reply[:3].isdigit() and reply[3:4] == " " and reply[:1] == "4":
                        st["replies"][reply[:3]] = st["replies"].get(reply[:3], 0) + 1
            except asyncio.TimeoutError:
                pass
    except (ConnectionError, OSError):
        st["closed_by_server"] += 1
    finally:
        st["open"] -= 1
        w.close()

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = []
    for i in range(p["connections"]):
        tasks.append(asyncio.create_task(one(i, stop)))
        await asyncio.sleep(p["ramp"] / p["connections"])
    while not stop.is_set():
        print(json.dumps({"t": time.monotonic(), "open": st["open"]}), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 1)
        except asyncio.TimeoutError:
            pass
    await asyncio.gather(*tasks, return_exceptions=True)
    st["still_open_at_end"] = st["opened"] - st["closed_by_server"]
    del st["open"]
    print(json.dumps({"summary": st}), flush=True)

asyncio.run(main())
'''


class LineReader(threading.Thread):
    """Reads a process's output lines in the background and hands each to `on_line`."""

    def __init__(self, stream, on_line):
        super().__init__(daemon=True)
        self.stream, self.on_line = stream, on_line

    def run(self) -> None:
        for line in self.stream:
            try:
                self.on_line(line.rstrip("\n"))
            except Exception as e:  # a bad line must not kill the reader
                print(f"run.py: cannot read '{line[:80]}': {e}", file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# The run

class Scenario:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.name = args.scenario
        self.ncpu = os.cpu_count() or 1
        if self.ncpu < 2:
            raise SystemExit("run.py: needs at least 2 CPUs (one for the packet generator)")
        self.gen_cpu = self.ncpu - 1
        self.load_cpus = list(range(0, self.ncpu - 1))
        self.warm, self.seconds, self.recovery = args.warmup, args.seconds, args.recovery
        attack = self.name != "smtp"
        self.phases = [{"name": "warmup", "start": 0.0, "end": float(self.warm)},
                       {"name": "baseline", "start": float(self.warm), "end": float(self.warm + self.seconds)}]
        if attack:
            a0 = self.warm + self.seconds
            self.phases.append({"name": "slowloris" if self.name == "slowloris" else "flood", "start": float(a0),
                                "end": float(a0 + self.seconds)})
            self.phases.append({"name": "recovery", "start": float(a0 + self.seconds),
                                "end": float(a0 + self.seconds + self.recovery)})
        self.load_seconds = self.phases[-1]["end"]
        self.samples: list[dict] = []
        self.raw: list[dict] = []
        self.sample_lock = threading.Lock()
        self.slow_open: list[tuple[float, int]] = []
        self.slow_summary: dict | None = None
        self.load_sessions = 0
        self.t0 = 0.0

    # ---- set-up
    def gateway_config(self, lab: VethLab, pki) -> str:
        spool = os.path.join(lab.work, "spool")
        return f"""hostname: mx.lab.test
listeners:
  - name: smtp
    address: "{GW_IP}:25"
    tls_mode: starttls
    certificates:
      - {{cert_file: {pki.ecdsa.chain}, key_file: {pki.ecdsa.key}}}
accepted_domains: [lab.test]
next_hop: {{host: 127.0.0.1, port: {SINK_PORT}, tls: none, retry_min: 1s, retry_max: 2s}}
workers: {{cores: [{", ".join(str(c) for c in self.load_cpus)}]}}
spool: {{directory: {spool}}}
stats: {{listen: "127.0.0.1:{STATS_PORT}"}}
xdp:
  interfaces: [{lab.v_gw}]
  attach_mode: native
  pin_dir: {lab.bpffs}/mxedge
  smtp_ports: [25]
  local_addresses: ["{GW_IP}"]
  blocklist: ["{BLOCKED_PREFIX}"]
  syn_rate: {SYN_RATE}
  syn_burst: {SYN_BURST}
""" + ("" if self.args.new_source_syn_rate is None else
       f"  new_source_syn_rate: {self.args.new_source_syn_rate}\n")

    def setup_network(self, lab: VethLab) -> None:
        gw, peer = lab.ns_gw, lab.ns_peer
        # The way back to spoofed sources (and anything else) is the client's namespace.
        sh("ip", "-n", gw, "route", "add", "default", "via", PEER_IP, "dev", lab.v_gw)
        sh("ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
           f"net.ipv4.conf.{lab.v_gw}.rp_filter=0", "net.core.somaxconn=4096",
           "net.ipv4.tcp_max_syn_backlog=4096")
        # XPS: the load's CPUs send on queue 0, the generator's CPU on queue 1 (its ndo_xdp_xmit picks
        # the queue by CPU already); so each queue's NAPI, and the XDP program, run on its sender's CPU.
        mask0 = sum(1 << c for c in self.load_cpus)
        mask1 = 1 << self.gen_cpu
        sh("ip", "netns", "exec", peer, "sh", "-c",
           f"echo {mask0:x} > /sys/class/net/{lab.v_peer}/queues/tx-0/xps_cpus && "
           f"echo {mask1:x} > /sys/class/net/{lab.v_peer}/queues/tx-1/xps_cpus")

    def taskset(self, cpus: list[int]) -> list[str]:
        return ["taskset", "-c", ",".join(str(c) for c in cpus)]

    # ---- sampling
    def on_sample(self, line: str) -> None:
        d = json.loads(line)
        if "error" in d:
            return
        with self.sample_lock:
            self.raw.append(d)

    def on_slow(self, line: str) -> None:
        d = json.loads(line)
        if "summary" in d:
            self.slow_summary = d["summary"]
        else:
            self.slow_open.append((d["t"], d["open"]))

    def on_loadgen(self, line: str) -> None:
        m = re.match(r"t=\d+s sessions=(\d+)", line)
        if m:
            self.load_sessions = int(m.group(1))
        elif line.strip():
            self.loadgen_log.append(line)

    def build_samples(self, cpu_readings: list[tuple[float, list[list[int]]]]) -> list[dict]:
        out = []
        with self.sample_lock:
            raw = list(self.raw)
        for d in raw:
            t = d["t"] - self.t0
            # the CPU reading nearest before and after this sample
            cpu = None
            for i in range(1, len(cpu_readings)):
                if cpu_readings[i][0] >= d["t"]:
                    cpu = cpu_percent(cpu_readings[i - 1][1], cpu_readings[i][1])
                    break
            open_now = None
            for ts, n in self.slow_open:
                if ts <= d["t"]:
                    open_now = n
            s = {"t": round(t, 3), "xdp": d["xdp"], "xdp_cpu": d.get("xdp_cpu", {}), "rx_packets": d["rx_packets"],
                 "sessions_active": d.get("sessions_active", 0), "cpu": cpu or []}
            if open_now is not None:
                s["slow_open"] = open_now
            out.append(s)
        return out

    # ---- main
    def run(self) -> int:
        args = self.args
        for rel in ("dataplane/mxedge-dataplane", "tests/load/loadgen/mxedge-loadgen", "tests/load/mxedge-pktgen"):
            binary(rel)
        out_dir = args.out or os.path.join(os.getcwd(), "load-reports",
                                           f"{self.name}-{datetime.datetime.utcnow():%Y%m%dT%H%M%SZ}")
        os.makedirs(out_dir, exist_ok=True)
        run: dict = {"scenario": self.name, "title": SCENARIOS[self.name],
                     "started": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "host": {"cpus": self.ncpu, "kernel": platform.release(), "cpu_model": cpu_model()},
                     "phases": self.phases,
                     "settings": {"seconds": self.seconds, "warmup": self.warm, "recovery": self.recovery,
                                  "concurrency": args.concurrency, "flood_sources": args.flood_sources,
                                  "flood_rate": args.flood_rate, "flood_family": args.flood_family,
                                  "slow_connections": args.slow_connections, "syn_rate": SYN_RATE,
                                  "syn_burst": SYN_BURST, "gateway_cpus": self.load_cpus,
                                  "new_source_syn_rate": "default" if args.new_source_syn_rate is None
                                  else args.new_source_syn_rate,
                                  "generator_cpu": self.gen_cpu},
                     "pktgen": None, "slowloris": None}
        self.loadgen_log: list[str] = []
        with VethLab("mxl", gw_ip=GW_IP, peer_ips=[PEER_IP] + LOAD_SOURCES + SLOW_SOURCES, quiet_link=True,
                     queues=2) as lab:
            self.setup_network(lab)
            pki = get_pki(os.path.join(lab.work, "pki"))
            lab.start_in(lab.ns_gw, self.taskset(self.load_cpus) +
                         ["/usr/sbin/smtp-sink", "-u", "nobody", f"127.0.0.1:{SINK_PORT}", "1024"], "sink")
            gw, log_path = lab.start_gateway(self.gateway_config(lab, pki))
            progress(f"{self.name}: gateway up (XDP native on {lab.v_gw}, workers on CPUs {self.load_cpus}); "
                     f"generator on CPU {self.gen_cpu}")

            # Quiet link: the counters before anything is sent.
            before_m = xdp_by_reason(lab.metrics(lab.ns_gw, STATS_PORT))
            gw_before, peer_before = link_stats(lab.ns_gw, lab.v_gw), link_stats(lab.ns_peer, lab.v_peer)
            eth_before = ethtool_xdp(lab.ns_peer, lab.v_peer)

            sampler = lab.start_in(lab.ns_gw, [sys.executable, "-c", SAMPLER, str(STATS_PORT), lab.v_gw, "1"],
                                   "sampler", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            LineReader(sampler.stdout, self.on_sample).start()
            cpu_readings = [(time.monotonic(), read_cpu_jiffies())]

            loadgen_json = os.path.join(lab.work, "loadgen.json")
            loadgen_argv = self.taskset(self.load_cpus) + [
                binary("tests/load/loadgen/mxedge-loadgen"), "--server", f"{GW_IP}:25", "--tls", "starttls",
                "--concurrency", str(args.concurrency), "--threads", "1", "--duration", str(self.load_seconds),
                "--to", "rcpt@lab.test", "--message-size", "4KiB", "--timeout", "30", "--timeline",
                "--json", loadgen_json, "--source-addresses", *LOAD_SOURCES]
            self.t0 = time.monotonic()
            loadgen = lab.start_in(lab.ns_peer, loadgen_argv, "loadgen", stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
            LineReader(loadgen.stderr, self.on_loadgen).start()

            attack = None
            attack_start = self.warm + self.seconds
            pktgen_json = os.path.join(lab.work, "pktgen.json")
            last_line = 0.0
            prev_sessions, prev_sample = 0, None
            while loadgen.poll() is None:
                time.sleep(0.2)
                now = time.monotonic() - self.t0
                cpu_readings.append((time.monotonic(), read_cpu_jiffies()))
                if attack is None and self.name != "smtp" and now >= attack_start:
                    attack = self.start_attack(lab, pktgen_json)
                if self.name == "slowloris" and attack is not None and now >= attack_start + self.seconds \
                        and attack.poll() is None:
                    attack.send_signal(signal.SIGTERM)
                if now - last_line >= 1.0:
                    last_line = now
                    with self.sample_lock:
                        sample = self.raw[-1] if self.raw else None
                    line = self.progress_line(now, sample, prev_sample, prev_sessions, cpu_readings)
                    prev_sessions, prev_sample = self.load_sessions, sample
                    progress(line)
                if now > self.load_seconds + 60:
                    loadgen.send_signal(signal.SIGINT)
            loadgen_rc = loadgen.wait()
            if attack is not None:
                try:
                    attack.wait(timeout=self.seconds + 30)
                except subprocess.TimeoutExpired:
                    attack.kill()
                    raise SystemExit("run.py: the attack did not end")
            if attack is not None and self.name != "slowloris":
                if attack.returncode != 0:
                    print(open(os.path.join(lab.work, "pktgen.log")).read(), file=sys.stderr)
                    raise SystemExit(f"run.py: mxedge-pktgen exited {attack.returncode}")
                run["pktgen"] = json.load(open(pktgen_json))
            time.sleep(0.5)
            for _ in range(3):  # one more CPU interval for the last sample
                cpu_readings.append((time.monotonic(), read_cpu_jiffies()))
                time.sleep(0.4)

            # Quiescence: sessions closed, nothing moving on the link; then the final counters.
            last = None
            for _ in range(100):
                now_rx = link_stats(lab.ns_gw, lab.v_gw)["rx_packets"]
                if now_rx == last:
                    break
                last = now_rx
                time.sleep(0.3)
            after_m = xdp_by_reason(lab.metrics(lab.ns_gw, STATS_PORT))
            gw_after, peer_after = link_stats(lab.ns_gw, lab.v_gw), link_stats(lab.ns_peer, lab.v_peer)
            eth_after = ethtool_xdp(lab.ns_peer, lab.v_peer)
            sampler.terminate()

            try:
                run["loadgen"] = json.load(open(loadgen_json))
            except (OSError, ValueError) as e:
                print("\n".join(self.loadgen_log[-20:]), file=sys.stderr)
                raise SystemExit(f"run.py: mxedge-loadgen (exit {loadgen_rc}) wrote no report: {e}")
            run["loadgen_exit"] = loadgen_rc
            if self.name == "slowloris":
                run["slowloris"] = self.slow_summary
            run["samples"] = self.build_samples(cpu_readings)
            gw_log = open(log_path).read()
            run["gateway"] = {"sessions_closed": gw_log.count("event=session.closed"),
                              "messages_accepted": gw_log.count("event=message.accepted"),
                              "errors": len(re.findall(r"level=error", gw_log))}
            run["accounting"] = {
                "xdp_before": before_m, "xdp_after": after_m,
                "gateway_rx_packets": gw_after["rx_packets"] - gw_before["rx_packets"],
                "client_tx_packets": peer_after["tx_packets"] - peer_before["tx_packets"],
                "client_tx_dropped": peer_after["tx_dropped"] - peer_before["tx_dropped"],
                "xdp_xmit": eth_after["xdp_xmit"] - eth_before["xdp_xmit"],
                "xdp_xmit_errors": eth_after["xdp_xmit_errors"] - eth_before["xdp_xmit_errors"]}
            run["summary"] = self.summarize(run)
            if args.keep_lab_logs:
                for name in ("gw.log", "loadgen.log", "pktgen.log", "slowloris.log", "sink.log"):
                    p = os.path.join(lab.work, name)
                    if os.path.exists(p):
                        with open(p, errors="replace") as src, open(os.path.join(out_dir, name), "w") as dst:
                            dst.write(src.read())
        paths = write_report(run, out_dir)
        summary = run["summary"]
        print_summary(run, paths)
        if not summary["counters_add_up"]:
            return 3
        return 0 if all(t["met"] for t in summary["targets"]) else 1

    def start_attack(self, lab: VethLab, pktgen_json: str) -> subprocess.Popen:
        args = self.args
        if self.name == "slowloris":
            params = {"host": GW_IP, "port": 25, "sources": SLOW_SOURCES, "connections": args.slow_connections,
                      "interval": 2.0, "ramp": min(2.0, self.seconds / 2)}
            p = lab.start_in(lab.ns_peer, self.taskset(self.load_cpus) + [sys.executable, "-c", SLOWLORIS,
                                                                           json.dumps(params)],
                             "slowloris", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            LineReader(p.stdout, self.on_slow).start()
            progress(f"slowloris: {args.slow_connections} slow sessions from {len(SLOW_SOURCES)} addresses")
            return p
        if self.name == "syn-flood":
            sources, mix = args.flood_sources, "syn"
        else:  # blocklist-flood: TCP to the SMTP port from blocklisted sources, SYNs and segments
            sources, mix = BLOCKED_PREFIX, "syn=70,ack=10,data=10,rst=10"
        argv = [binary("tests/load/mxedge-pktgen"), "--dev", lab.v_peer, "--dst", GW_IP, "--dst-mac", lab.gw_mac,
                "--dport", "25", "--sources", sources, "--family", args.flood_family, "--mix", mix,
                "--rate", str(args.flood_rate), "--duration", str(self.seconds), "--cpus", str(self.gen_cpu),
                "--json", pktgen_json, "--quiet"]
        p = lab.start_in(lab.ns_peer, argv, "pktgen")
        progress(f"flood: mxedge-pktgen --sources {sources} --mix {mix} --rate "
                 f"{args.flood_rate or 'top'} on CPU {self.gen_cpu}")
        return p

    def progress_line(self, now: float, sample, prev_sample, prev_sessions: int, cpu_readings) -> str:
        phase = next((p["name"] for p in self.phases if p["start"] <= now < p["end"]), "drain")
        parts = [f"t={now:5.1f}s {phase:9s} sessions/s={self.load_sessions - prev_sessions:5d}"]
        if sample and prev_sample and sample["t"] > prev_sample["t"]:
            dt = sample["t"] - prev_sample["t"]
            rates = {r: (v - prev_sample["xdp"].get(r, 0)) / dt for r, v in sample["xdp"].items()}
            steered = sum(v for r, v in rates.items() if r.startswith("steered_worker_"))
            drops = sum(rates.get(r, 0) for r in EXCLUSIVE_DROPS)
            parts.append(f"xdp drop={fmt_rate(drops)} steered={fmt_rate(steered)} "
                         f"pass={fmt_rate(sum(v for r, v in rates.items() if r.startswith('pass_')))}")
        if len(cpu_readings) >= 6:
            pct = cpu_percent(cpu_readings[-6][1], cpu_readings[-1][1])
            parts.append("cpu " + " ".join(f"{i}:{100 - c['idle']:.0f}%" for i, c in enumerate(pct)))
        if self.slow_open:
            parts.append(f"slow open={self.slow_open[-1][1]}")
        return "  ".join(parts)

    # ---- figures
    def summarize(self, run: dict) -> dict:
        timeline = run["loadgen"].get("timeline", [])

        def phase_rate(name: str) -> tuple[float, float, int]:
            ph = next(p for p in self.phases if p["name"] == name)
            slots = [s for s in timeline if ph["start"] <= s["t"] < ph["end"]]
            ok = sum(s["sessions_ok"] for s in slots)
            failed = sum(s["sessions_failed"] for s in slots)
            p99 = max((s["session_ms"]["p99"] for s in slots if s["sessions_ok"]), default=0.0)
            return ok / (ph["end"] - ph["start"]), p99, failed

        acc = run["accounting"]
        d = {r: acc["xdp_after"].get(r, 0) - acc["xdp_before"].get(r, 0)
             for r in set(acc["xdp_after"]) | set(acc["xdp_before"])}
        base_rate, base_p99, base_failed = phase_rate("baseline")
        s: dict = {"baseline_sessions_per_s": round(base_rate, 2), "baseline_p99_ms": base_p99,
                   "baseline_failed_sessions": base_failed,
                   "sessions_ok": run["loadgen"]["sessions"]["ok"],
                   "sessions_failed": run["loadgen"]["sessions"]["failed"]}
        targets = []
        attack = next((p["name"] for p in self.phases if p["name"] in ("flood", "slowloris")), None)
        if attack:
            a_rate, a_p99, a_failed = phase_rate(attack)
            ratio = a_rate / base_rate if base_rate else 0.0
            s.update({"attack_sessions_per_s": round(a_rate, 2), "attack_p99_ms": a_p99,
                      "attack_failed_sessions": a_failed, "sessions_ratio": round(ratio, 4)})
            targets.append({"name": f"sessions/s during the {attack} >= 0.9x baseline", "value": round(ratio, 4),
                            "threshold": 0.9, "met": ratio >= 0.9})
        pk = run.get("pktgen")
        if pk:
            dropped = sum(d.get(r, 0) for r in EXCLUSIVE_DROPS)
            sent = pk["sent"]
            ratio = dropped / sent if sent else 0.0
            s.update({"flood_sent": sent, "flood_pps": pk["pps"], "flood_dropped": dropped,
                      "drop_ratio": round(ratio, 6),
                      "flood_reaching_kernel": max(0, sent - dropped)})
            targets.append({"name": "flood frames dropped by XDP / flood frames sent >= 0.99", "value": round(ratio, 6),
                            "threshold": 0.99, "met": ratio >= 0.99})
            if self.name == "blocklist-flood":
                s["drop_blocklist_equals_sent"] = d.get("drop_blocklist", 0) == sent
        if run.get("slowloris"):
            sl = run["slowloris"]
            s.update({"slow_opened": sl.get("opened"), "slow_refused": sl.get("refused"),
                      "slow_closed_by_server": sl.get("closed_by_server")})
        counters_sum = sum(v for r, v in d.items() if r != "allowlisted")
        pk_sent = pk["sent"] if pk else 0
        checks = {
            "pktgen sent == xdp_xmit + xdp_xmit_errors": pk_sent == acc["xdp_xmit"] + acc["xdp_xmit_errors"],
            "client tx_packets == gateway rx_packets": acc["client_tx_packets"] == acc["gateway_rx_packets"],
            "sum of exclusive XDP counters == gateway rx_packets": counters_sum == acc["gateway_rx_packets"],
        }
        # Where the XDP program ran (per CPU, all exclusive reasons, over the whole run): on this lab the
        # flood's frames belong on the generator's CPU; if they show up on the load's, a veth NAPI
        # instance was polled there (see the header) and the run measured that, not the gateway.
        smp = run.get("samples") or []
        if len(smp) >= 2:
            first, last = smp[0].get("xdp_cpu", {}), smp[-1].get("xdp_cpu", {})
            s["xdp_packets_by_cpu"] = {c: v - first.get(c, 0) for c, v in sorted(last.items())}
        s.update({"frames_at_gateway": acc["gateway_rx_packets"], "counters_sum": counters_sum,
                  "load_frames": acc["client_tx_packets"] - acc["xdp_xmit"],
                  "generated_frames": pk_sent + acc["client_tx_packets"] - acc["xdp_xmit"],
                  "accounting_checks": checks, "counters_add_up": all(checks.values()),
                  "xdp_delta": {r: v for r, v in sorted(d.items()) if v}})
        targets.append({"name": "XDP counters sum exactly to the frames generated", "value": counters_sum,
                        "threshold": s["generated_frames"] - acc["xdp_xmit_errors"],
                        "met": all(checks.values())})
        s["targets"] = targets
        return s


def fmt_rate(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def progress(line: str) -> None:
    print(line, flush=True)


def print_summary(run: dict, paths: dict) -> None:
    s = run["summary"]
    print(f"\n== {run['scenario']}: {run['title']}")
    for k, v in s.items():
        if k in ("targets", "xdp_delta", "accounting_checks"):
            continue
        print(f"  {k:32s} {v}")
    print("  xdp counters (delta):", ", ".join(f"{r}={v}" for r, v in s["xdp_delta"].items()))
    for name, ok in s["accounting_checks"].items():
        print(f"  {'ok ' if ok else 'BAD'} {name}")
    for t in s["targets"]:
        print(f"  target {'met    ' if t['met'] else 'NOT MET'} {t['name']}: {t['value']}")
    print(f"  report: {paths['markdown']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Scenarios:\n" + "\n".join(f"  {k:16s} {v}" for k, v in SCENARIOS.items()))
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--seconds", type=int, default=30, help="length of the baseline and of the attack phase")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--recovery", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="CI size: 4 s phases, 2 s warm-up and recovery")
    ap.add_argument("--out", help="report directory (default ./load-reports/SCENARIO-TIME)")
    ap.add_argument("--concurrency", type=int, default=8, help="SMTP sessions in flight (closed loop)")
    ap.add_argument("--flood-sources", default="random",
                    help="syn-flood sources, as mxedge-pktgen --sources (random | PREFIX/LEN | ADDR)")
    ap.add_argument("--flood-rate", type=int, default=0, help="flood frames per second (0: top rate)")
    ap.add_argument("--flood-family", default="4", choices=["4", "6", "both"])
    ap.add_argument("--slow-connections", type=int, default=400)
    ap.add_argument("--new-source-syn-rate", type=int, default=None,
                    help="the gateway's xdp.new_source_syn_rate (default: its default, 1000 per CPU); 0 turns "
                         "the new-source budget off, to see a spoofed flood without it")
    ap.add_argument("--keep-lab-logs", action="store_true", help="copy the daemons' logs into the report directory")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.recovery = 4, 2, 2
        args.slow_connections = min(args.slow_connections, 100)
    if os.geteuid() != 0:
        print("run.py: needs root (namespaces, XDP)", file=sys.stderr)
        return 2
    if args.flood_family != "4":
        print("run.py: the lab link is IPv4-only (quiet_link); IPv6 flood frames would all be passed to a "
              "kernel with IPv6 off", file=sys.stderr)
    try:
        return Scenario(args).run()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
