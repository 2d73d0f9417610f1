"""Two network namespaces joined by a veth pair, for tests of the XDP fast path with the real data plane.

    with netns.VethLab("mxgw", gw_ip="10.231.0.1", peer_ips=["10.231.0.2"]) as lab:
        lab.start_in(lab.ns_gw, ["/usr/sbin/smtp-sink", "-u", "nobody", "127.0.0.1:2600", "64"], "sink")
        gw, log_path = lab.start_gateway(config_text)     # mxedge-dataplane inside ns_gw, waits for ready
        text = lab.metrics(lab.ns_gw, 9464)                # GET /metrics from inside the namespace
        lab.sh("ip", "netns", "exec", lab.ns_peer, "swaks", ...)

Everything is confined to the two namespaces: their addresses exist only on this veth pair. The lab
deletes the namespaces (and with them the veths), unmounts its bpffs, stops the processes it started
and removes its directory, even when a test fails. The peer's TX checksum offload is turned off: veth
hands the receiver partially checksummed segments, and after a cpumap redirect the kernel no longer
knows that (see bpf/README.md); a real NIC is not affected.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from . import gateway as gateway_mod


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r


def link_stats(ns: str, dev: str) -> dict:
    info = json.loads(sh("ip", "-n", ns, "-j", "-s", "link", "show", "dev", dev).stdout)[0]
    return {"rx_packets": info["stats64"]["rx"]["packets"], "rx_dropped": info["stats64"]["rx"]["dropped"],
            "tx_packets": info["stats64"]["tx"]["packets"], "tx_dropped": info["stats64"]["tx"]["dropped"],
            "mac": info["address"]}


def samples(text: str, name: str) -> list[tuple[dict, int]]:
    """(labels, value) of every sample of metric `name` in Prometheus text."""
    out = []
    for line in text.splitlines():
        m = re.match(re.escape(name) + r"\{([^}]*)\} (\d+)$", line) or re.match(re.escape(name) + r"() (\d+)$", line)
        if m:
            out.append((dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))), int(m.group(2))))
    return out


def total(text: str, name: str, **label_prefixes: str) -> int:
    """Sum of the samples of `name` whose labels start with the given values."""
    return sum(v for labels, v in samples(text, name)
               if all(labels.get(k, "").startswith(p) for k, p in label_prefixes.items()))


class VethLab:
    def __init__(self, prefix: str, gw_ip: str, peer_ips: list[str], prefix_len: int = 24,
                 quiet_link: bool = False, queues: int = 1):
        """quiet_link: no IPv6, no forwarding, static neighbours — only the test's frames cross the link.
        queues: TX and RX queues of each veth (a veth's receive ring and NAPI are per queue)."""
        tag = f"{os.getpid() % 100000}"
        self.ns_gw, self.ns_peer = f"{prefix}g{tag}", f"{prefix}p{tag}"
        self.v_gw, self.v_peer = self.ns_gw, self.ns_peer
        self.gw_ip, self.peer_ips, self.prefix_len, self.quiet_link = gw_ip, list(peer_ips), prefix_len, quiet_link
        self.queues = queues
        self.work = tempfile.mkdtemp(prefix=f"mxedge-{prefix}-")
        os.chmod(self.work, 0o755)
        self.bpffs = os.path.join(self.work, "bpffs")
        self.procs: list[subprocess.Popen] = []
        self.gw_mac = self.peer_mac = ""
        self._mounted = False

    def __enter__(self) -> "VethLab":
        try:
            self._setup()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def _setup(self) -> None:
        for ns in (self.ns_gw, self.ns_peer):
            sh("ip", "netns", "add", ns)
            if self.quiet_link:
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                   "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.ip_forward=0")
        q = ["numtxqueues", str(self.queues), "numrxqueues", str(self.queues)]
        sh("ip", "link", "add", self.v_gw, *q, "netns", self.ns_gw, "type", "veth", "peer", "name", self.v_peer,
           *q, "netns", self.ns_peer)
        for ns, dev, addrs in ((self.ns_gw, self.v_gw, [self.gw_ip]), (self.ns_peer, self.v_peer, self.peer_ips)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            for a in addrs:
                sh("ip", "-n", ns, "addr", "add", f"{a}/{self.prefix_len}", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        self.gw_mac = link_stats(self.ns_gw, self.v_gw)["mac"]
        self.peer_mac = link_stats(self.ns_peer, self.v_peer)["mac"]
        if self.quiet_link:
            sh("ip", "-n", self.ns_gw, "neigh", "replace", self.peer_ips[0], "lladdr", self.peer_mac, "dev", self.v_gw,
               "nud", "permanent")
            sh("ip", "-n", self.ns_peer, "neigh", "replace", self.gw_ip, "lladdr", self.gw_mac, "dev", self.v_peer,
               "nud", "permanent")
        sh("ip", "netns", "exec", self.ns_peer, "ethtool", "-K", self.v_peer, "tx", "off")
        os.makedirs(self.bpffs)
        sh("mount", "-t", "bpf", "bpf", self.bpffs)
        self._mounted = True

    def start_in(self, ns: str, argv: list[str], name: str, **popen) -> subprocess.Popen:
        """Starts argv inside namespace ns (its own process group), output to <work>/<name>.log."""
        popen.setdefault("stdout", open(os.path.join(self.work, f"{name}.log"), "w"))
        popen.setdefault("stderr", subprocess.STDOUT)
        p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, start_new_session=True, **popen)
        self.procs.append(p)
        return p

    def start_gateway(self, config_text: str, timeout: float = 20.0,
                      binary: str | None = None) -> tuple[subprocess.Popen, str]:
        """mxedge-dataplane (or `binary`, a wrapper that runs it) inside ns_gw with config_text;
        returns once it logged dataplane.ready."""
        cfg = os.path.join(self.work, "mxedge.yaml")
        if "\nmanagement:" not in "\n" + config_text:
            # Per-lab management sockets, so no test touches /run/mxedge.
            config_text = config_text.rstrip("\n") + (
                f"\nmanagement:\n  socket: {os.path.join(self.work, 'mgmt.sock')}\n"
                f"  dataplane_socket: {os.path.join(self.work, 'dataplane.sock')}\n")
        with open(cfg, "w") as f:
            f.write(config_text)
        log_path = os.path.join(self.work, "gw.log")
        gw = self.start_in(self.ns_gw, [binary or gateway_mod.binary_path(), "-c", cfg], "gw")
        deadline = time.time() + timeout
        while "event=dataplane.ready" not in open(log_path).read():
            assert gw.poll() is None, f"gateway exited {gw.returncode}:\n{open(log_path).read()}"
            assert time.time() < deadline, open(log_path).read()
            time.sleep(0.1)
        return gw, log_path

    def metrics(self, ns: str, port: int) -> str:
        code = f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics',timeout=5).read().decode())"
        return sh("ip", "netns", "exec", ns, sys.executable, "-c", code).stdout

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                    p.wait(timeout=15)
                except ProcessLookupError:
                    pass
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, 9)
                    p.wait()
        self.procs.clear()
        sh("ip", "netns", "del", self.ns_gw, check=False)
        sh("ip", "netns", "del", self.ns_peer, check=False)
        if self._mounted:
            sh("umount", self.bpffs, check=False)
            self._mounted = False
        shutil.rmtree(self.work, ignore_errors=True)
