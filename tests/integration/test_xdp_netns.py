"""The XDP fast path wired into mxedge-dataplane, on a veth pair between two network namespaces the
test creates (and always deletes; lab.netns): native XDP on the gateway side, SMTP sessions from the
peer reach the worker on the CPU their flow was steered to, and a blocklisted source cannot connect.

Addresses 10.231.0.0/24 exist only on this veth pair inside these namespaces; nothing leaves them.
"""

from __future__ import annotations

import re

import pytest

from lab import gateway as gateway_mod
from lab import netns

GW_IP, PEER_IP, BLOCKED_IP = "10.231.0.1", "10.231.0.2", "10.231.0.3"
PORT = 2525
STATS_PORT = 9464


@pytest.fixture
def veth_lab():
    reason = gateway_mod.missing_binary_reason()
    if reason:
        pytest.skip(reason)
    with netns.VethLab("mxs", gw_ip=GW_IP, peer_ips=[PEER_IP, BLOCKED_IP]) as lab:
        yield lab


def test_xdp_steers_sessions_and_drops_blocklisted_sources(veth_lab):
    lab = veth_lab
    lab.start_in(lab.ns_gw, ["/usr/sbin/smtp-sink", "-u", "nobody", "127.0.0.1:2600", "64"], "sink")
    gw, log_path = lab.start_gateway(f"""hostname: mx.lab.test
listeners:
  - {{name: smtp, address: "{GW_IP}:{PORT}", tls_mode: none}}
accepted_domains: [lab.test]
next_hop: {{host: 127.0.0.1, port: 2600, tls: none, retry_min: 1s, retry_max: 2s}}
workers: {{cores: [0, 1]}}
spool: {{directory: {lab.work}/spool}}
stats: {{listen: "127.0.0.1:{STATS_PORT}"}}
xdp:
  interfaces: [{lab.v_gw}]
  attach_mode: native
  pin_dir: {lab.bpffs}/mxedge
  smtp_ports: [{PORT}]
  blocklist: ["{BLOCKED_IP}/32"]
  syn_rate: 1000
""")
    text = open(log_path).read()
    assert re.search(r"event=xdp\.attached .*mode=native", text), text

    for i in range(6):
        r = netns.sh("ip", "netns", "exec", lab.ns_peer, "swaks", "--server", f"{GW_IP}:{PORT}", "--from", "a@peer.example",
                     "--to", "u@lab.test", "--header", f"Message-Id: <xdp-{i}@peer.example>", "--timeout", "10", check=False)
        assert r.returncode == 0 and "queued as" in r.stdout, r.stdout + r.stderr
    blocked = netns.sh("ip", "netns", "exec", lab.ns_peer, "swaks", "--server", f"{GW_IP}:{PORT}", "--local-interface",
                       BLOCKED_IP, "--from", "a@peer.example", "--to", "u@lab.test", "--timeout", "3", check=False)
    assert blocked.returncode != 0 and "queued as" not in blocked.stdout, blocked.stdout

    m = lab.metrics(lab.ns_gw, STATS_PORT)
    assert netns.total(m, "mxedge_messages_accepted_total") == 6, m
    assert netns.total(m, "mxedge_xdp_packets_total", reason="drop_blocklist") >= 1, m
    assert netns.total(m, "mxedge_xdp_packets_total", reason="steered_worker_") >= 6 * 5, m  # every packet of every session
    assert netns.total(m, "mxedge_connections_accepted_total") == 6, m
    # The SK_REUSEPORT program gave each connection to the worker on the CPU its packets were steered to.
    assert netns.total(m, "mxedge_incoming_cpu_mismatch_total") == 0, m

    gw.terminate()
    assert gw.wait(timeout=20) == 0
    assert "event=xdp.detached" in open(log_path).read()
    # Detached: nothing of ours stays on the interface after a clean stop.
    link = netns.sh("ip", "-n", lab.ns_gw, "link", "show", lab.v_gw).stdout
    assert "xdp" not in link, link
