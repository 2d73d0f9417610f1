"""The XDP fast path wired into mxedge-dataplane, on a veth pair between two network namespaces the
test creates (and always deletes): native XDP on the gateway side, SMTP sessions from the peer reach
the worker on the CPU their flow was steered to, and a blocklisted source cannot connect.

Addresses 10.231.0.0/24 exist only on this veth pair inside these namespaces; nothing leaves them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from lab import gateway as gateway_mod

GW_IP, PEER_IP, BLOCKED_IP = "10.231.0.1", "10.231.0.2", "10.231.0.3"
PORT = 2525


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def netns_lab():
    reason = gateway_mod.missing_binary_reason()
    if reason:
        pytest.skip(reason)
    tag = f"{os.getpid() % 100000}"
    ns_gw, ns_peer, v_gw, v_peer = f"mxgw{tag}", f"mxpe{tag}", f"mxg{tag}", f"mxp{tag}"
    work = tempfile.mkdtemp(prefix="mxedge-xdp-")
    os.chmod(work, 0o755)
    bpffs = os.path.join(work, "bpffs")
    procs: list[subprocess.Popen] = []
    mounted = False
    try:
        sh("ip", "netns", "add", ns_gw)
        sh("ip", "netns", "add", ns_peer)
        sh("ip", "link", "add", v_gw, "netns", ns_gw, "type", "veth", "peer", "name", v_peer, "netns", ns_peer)
        for ns, dev, addrs in ((ns_gw, v_gw, [GW_IP]), (ns_peer, v_peer, [PEER_IP, BLOCKED_IP])):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            for a in addrs:
                sh("ip", "-n", ns, "addr", "add", f"{a}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        # veth hands the receiver partially checksummed segments; after a cpumap redirect the kernel no
        # longer knows that, so the sender must compute full checksums (real NICs are not affected).
        sh("ip", "netns", "exec", ns_peer, "ethtool", "-K", v_peer, "tx", "off")
        os.makedirs(bpffs)
        sh("mount", "-t", "bpf", "bpf", bpffs)
        mounted = True
        yield dict(ns_gw=ns_gw, ns_peer=ns_peer, v_gw=v_gw, work=work, bpffs=bpffs, procs=procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        sh("ip", "netns", "del", ns_gw, check=False)
        sh("ip", "netns", "del", ns_peer, check=False)
        if mounted:
            sh("umount", bpffs, check=False)
        shutil.rmtree(work, ignore_errors=True)


def metrics(ns: str, port: int) -> str:
    code = f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics',timeout=5).read().decode())"
    return sh("ip", "netns", "exec", ns, "/usr/bin/python3", "-c", code).stdout


def total(text: str, name: str, label_filter: str = "") -> int:
    n = 0
    for line in text.splitlines():
        if line.startswith(name) and label_filter in line:
            n += int(line.rsplit(" ", 1)[1])
    return n


def test_xdp_steers_sessions_and_drops_blocklisted_sources(netns_lab):
    lab = netns_lab
    ns_gw, ns_peer, work = lab["ns_gw"], lab["ns_peer"], lab["work"]
    sink_log = open(os.path.join(work, "sink.log"), "w")
    sink = subprocess.Popen(["ip", "netns", "exec", ns_gw, "/usr/sbin/smtp-sink", "-u", "nobody", "127.0.0.1:2600", "64"],
                            stdout=sink_log, stderr=subprocess.STDOUT, start_new_session=True)
    lab["procs"].append(sink)
    spool = os.path.join(work, "spool")
    cfg = os.path.join(work, "mxedge.yaml")
    with open(cfg, "w") as f:
        f.write(f"""hostname: mx.lab.test
listeners:
  - {{name: smtp, address: "{GW_IP}:{PORT}", tls_mode: none}}
accepted_domains: [lab.test]
next_hop: {{host: 127.0.0.1, port: 2600, tls: none, retry_min: 1s, retry_max: 2s}}
workers: {{cores: [0, 1]}}
spool: {{directory: {spool}}}
stats: {{listen: "127.0.0.1:9464"}}
xdp:
  interfaces: [{lab["v_gw"]}]
  attach_mode: native
  pin_dir: {lab["bpffs"]}/mxedge
  smtp_ports: [{PORT}]
  blocklist: ["{BLOCKED_IP}/32"]
  syn_rate: 1000
""")
    log_path = os.path.join(work, "gw.log")
    log = open(log_path, "w")
    gw = subprocess.Popen(["ip", "netns", "exec", ns_gw, gateway_mod.binary_path(), "-c", cfg],
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    lab["procs"].append(gw)
    deadline = time.time() + 20
    while "event=dataplane.ready" not in open(log_path).read():
        assert gw.poll() is None, f"gateway exited {gw.returncode}:\n{open(log_path).read()}"
        assert time.time() < deadline, open(log_path).read()
        time.sleep(0.1)
    text = open(log_path).read()
    assert re.search(r"event=xdp\.attached .*mode=native", text), text

    for i in range(6):
        r = sh("ip", "netns", "exec", ns_peer, "swaks", "--server", f"{GW_IP}:{PORT}", "--from", "a@peer.example",
               "--to", "u@lab.test", "--header", f"Message-Id: <xdp-{i}@peer.example>", "--timeout", "10", check=False)
        assert r.returncode == 0 and "queued as" in r.stdout, r.stdout + r.stderr
    blocked = sh("ip", "netns", "exec", ns_peer, "swaks", "--server", f"{GW_IP}:{PORT}", "--local-interface", BLOCKED_IP,
                 "--from", "a@peer.example", "--to", "u@lab.test", "--timeout", "3", check=False)
    assert blocked.returncode != 0 and "queued as" not in blocked.stdout, blocked.stdout

    m = metrics(ns_gw, 9464)
    assert total(m, "mxedge_messages_accepted_total") == 6, m
    assert total(m, "mxedge_xdp_packets_total", 'reason="drop_blocklist"') >= 1, m
    steered = total(m, "mxedge_xdp_packets_total", 'reason="steered_worker_')
    assert steered >= 6 * 5, m  # every packet of every session to the SMTP port was steered
    assert total(m, "mxedge_connections_accepted_total") == 6, m
    # The SK_REUSEPORT program gave each connection to the worker on the CPU its packets were steered to.
    assert total(m, "mxedge_incoming_cpu_mismatch_total") == 0, m

    gw.terminate()
    assert gw.wait(timeout=20) == 0
    assert "event=xdp.detached" in open(log_path).read()
    # Detached: nothing of ours stays on the interface after a clean stop.
    link = sh("ip", "-n", ns_gw, "link", "show", lab["v_gw"]).stdout
    assert "xdp" not in link, link
