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


def start_gateway(lab, extra: str = "", xdp: str = "", binary: str | None = None):
    """An smtp-sink next hop and mxedge-dataplane in the gateway namespace, XDP native on its veth."""
    lab.start_in(lab.ns_gw, ["/usr/sbin/smtp-sink", "-u", "nobody", "127.0.0.1:2600", "64"], "sink")
    return lab.start_gateway(f"""hostname: mx.lab.test
listeners:
  - {{name: smtp, address: "{GW_IP}:{PORT}", tls_mode: none}}
accepted_domains: [lab.test]
next_hop: {{host: 127.0.0.1, port: 2600, tls: none, retry_min: 1s, retry_max: 2s}}
workers: {{cores: [0, 1]}}
spool: {{directory: {lab.work}/spool}}
{extra}
xdp:
  interfaces: [{lab.v_gw}]
  attach_mode: native
  pin_dir: {lab.bpffs}/mxedge
  smtp_ports: [{PORT}]
{xdp}
""", binary=binary)


def test_xdp_steers_sessions_and_drops_blocklisted_sources(veth_lab):
    lab = veth_lab
    gw, log_path = start_gateway(lab, extra=f"""stats: {{listen: "127.0.0.1:{STATS_PORT}"}}""",
                                 xdp=f"""  blocklist: ["{BLOCKED_IP}/32"]
  syn_rate: 1000""")
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


def test_mxedgectl_manages_the_xdp_lists_and_rate_limit(veth_lab):
    """mxedgectl against the data plane's own management socket (no control plane here): XDP attach
    mode in status, blocklist / allowlist changes that take effect on the wire, the rate limit,
    and the XDP counters in stats."""
    import json
    import os
    import subprocess

    lab = veth_lab
    ctl_bin = os.path.join(gateway_mod.build_dir(), "controlplane", "mxedgectl")
    if not os.path.exists(ctl_bin):
        pytest.skip(f"{ctl_bin} not built")
    sock = os.path.join(lab.work, "dataplane.sock")

    def ctl(*args, json_out=False):
        cmd = [ctl_bin, "--socket", sock] + (["--json"] if json_out else []) + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    def ok(*args):
        p = ctl(*args, json_out=True)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return json.loads(p.stdout)

    def session_from(source):
        return netns.sh("ip", "netns", "exec", lab.ns_peer, "swaks", "--server", f"{GW_IP}:{PORT}", "--local-interface",
                        source, "--from", "a@peer.example", "--to", "u@lab.test", "--timeout", "3", check=False)

    gw, log_path = start_gateway(lab, xdp="""  syn_rate: 1000
  syn_burst: 100""")
    status = ok("status")
    assert status["healthy"] is True
    assert status["dataplane"]["xdp_interfaces"] == [{"ifname": lab.v_gw, "ifindex": status["dataplane"]["xdp_interfaces"][0]["ifindex"],
                                                      "mode": "native"}]
    assert "XDP           " + lab.v_gw in ctl("status").stdout

    assert session_from(BLOCKED_IP).returncode == 0
    assert ok("blocklist", "add", f"{BLOCKED_IP}/32")["prefixes"] == [f"{BLOCKED_IP}/32"]
    assert f"{BLOCKED_IP}/32" in ok("blocklist", "list")["prefixes"]
    blocked = session_from(BLOCKED_IP)
    assert blocked.returncode != 0 and "queued as" not in blocked.stdout
    assert session_from(PEER_IP).returncode == 0  # only that source
    # The allowlist wins over the blocklist.
    assert ok("allowlist", "add", BLOCKED_IP)["prefixes"] == [BLOCKED_IP]
    assert session_from(BLOCKED_IP).returncode == 0
    assert ok("allowlist", "del", BLOCKED_IP)["prefixes"] == [BLOCKED_IP]
    assert ok("allowlist", "list")["prefixes"] == []
    text = ctl("blocklist", "del", f"{BLOCKED_IP}/32")
    assert text.returncode == 0 and f"removed {BLOCKED_IP}/32" in text.stdout
    assert session_from(BLOCKED_IP).returncode == 0
    missing = ctl("blocklist", "del", f"{BLOCKED_IP}/32")
    assert missing.returncode == 5 and "is not listed" in missing.stderr
    bad = ctl("blocklist", "add", "10.0.0.0/8", "not-an-address")
    assert bad.returncode == 2 and "invalid prefix 'not-an-address'" in bad.stderr
    assert ok("blocklist", "list")["prefixes"] == []  # nothing of a bad request was applied

    # The config's new-source budget (its defaults) is shown beside the per-source limit.
    assert ok("ratelimit", "show") == {"syn_per_second": 1000, "burst": 100, "new_source_per_second": 1000,
                                       "new_source_burst": 2000}
    assert ok("ratelimit", "set", "--rate", "5", "--burst", "10") == {
        "syn_per_second": 5, "burst": 10, "new_source_per_second": 1000, "new_source_burst": 2000}
    shown = ctl("ratelimit", "show").stdout
    assert "5 SYN/s per source, burst 10" in shown
    assert "new-source budget: 1000 new sources/s per CPU, burst 2000" in shown
    assert ok("ratelimit", "set", "--rate", "0") == {"syn_per_second": 0, "burst": 0,
        "new_source_per_second": 0, "new_source_burst": 0}  # the budget acts only with the per-source limit
    assert "SYN rate limit: off" in ctl("ratelimit", "show").stdout

    stats = ok("stats")
    assert int(stats["xdp_packets"]["drop_blocklist"]) >= 1 and int(stats["xdp_packets"]["allowlisted"]) >= 1
    assert stats["xdp_cpus"] and int(stats["totals"]["messages_accepted"]) >= 4
    assert "event=mgmt.change plane=dataplane" in open(log_path).read()
    gw.terminate()
    assert gw.wait(timeout=20) == 0
    assert not os.path.exists(sock)


def _xdp_prog_id(lab) -> int | None:
    import json
    out = netns.sh("ip", "-n", lab.ns_gw, "-d", "-j", "link", "show", lab.v_gw).stdout
    xdp = json.loads(out)[0].get("xdp")
    return xdp["prog"]["id"] if xdp else None


def test_as_a_service_user_xdp_survives_a_crash_and_a_restart_takes_over_its_link(veth_lab, tmp_path):
    """The appliance's data plane: a service user with the unit's capabilities, which keeps only
    CAP_BPF once XDP is attached (a BPF link, so detaching needs no CAP_NET_ADMIN). kill -9 leaves
    the program attached through its pinned link (the blocklist keeps applying while the service
    restarts); the next start replaces the program inside that link; a clean stop detaches it with
    CAP_BPF alone and removes the pin."""
    import os
    import pwd
    import grp
    import signal

    from lab import util

    lab = veth_lab
    nobody, nogroup = pwd.getpwnam("nobody"), grp.getgrnam("nogroup")
    wrapper = util.as_service_user(tmp_path, gateway_mod.binary_path(), "+net_bind_service,+net_admin,+bpf,+perfmon,+ipc_lock")
    os.chmod(tmp_path, 0o755)
    for d in (lab.work, os.path.join(lab.work, "spool"), os.path.join(lab.bpffs, "mxedge")):
        os.makedirs(d, exist_ok=True)
        os.chown(d, nobody.pw_uid, nogroup.gr_gid)
    blocklist = f"""  blocklist: ["{BLOCKED_IP}/32"]"""
    gw, log_path = start_gateway(lab, xdp=blocklist, binary=wrapper)
    pin = os.path.join(lab.bpffs, "mxedge", f"link_xdp_{lab.v_gw}")
    text = open(log_path).read()
    assert re.search(rf"event=xdp\.attached ifname={lab.v_gw} mode=native link={re.escape(pin)}", text), text
    assert "event=privileges.dropped effective=cap_bpf\n" in text, text
    first = _xdp_prog_id(lab)
    assert first is not None and os.path.exists(pin)

    def session_from(source, mid):
        return netns.sh("ip", "netns", "exec", lab.ns_peer, "swaks", "--server", f"{GW_IP}:{PORT}",
                        "--local-interface", source, "--from", "a@peer.example", "--to", "u@lab.test",
                        "--header", f"Message-Id: <{mid}@peer.example>", "--timeout", "5", check=False)

    assert "queued as" in session_from(PEER_IP, "nobody-1").stdout

    os.killpg(gw.pid, signal.SIGKILL)
    gw.wait(timeout=10)
    assert _xdp_prog_id(lab) == first, "the program stays attached after a crash"
    assert os.path.exists(pin)

    gw, log_path = start_gateway(lab, xdp=blocklist, binary=wrapper)  # a new log
    text = open(log_path).read()
    assert re.search(r"event=xdp\.attached .*mode=native .*detail=\"replaced the previous run's program in its "
                     r"pinned link\"", text), text
    second = _xdp_prog_id(lab)
    assert second is not None and second != first
    assert "queued as" in session_from(PEER_IP, "nobody-2").stdout
    blocked = session_from(BLOCKED_IP, "nobody-blocked")
    assert blocked.returncode != 0 and "queued as" not in blocked.stdout

    gw.send_signal(signal.SIGTERM)
    assert gw.wait(timeout=20) == 0
    text = open(log_path).read()
    assert f"event=xdp.detached ifname={lab.v_gw} mode=native" in text, text
    assert _xdp_prog_id(lab) is None, "detached with CAP_BPF alone"
    assert not os.path.exists(pin)
