"""The DPDK fast path wired into mxedge-dataplane, end to end on a veth pair between two network
namespaces the test creates (and always deletes; lab.netns):

    peer ns: swaks ──veth──▶ gw ns: v_gw ──net_af_packet──▶ lcore (classify) ──TAP queue w──▶ kernel
             (RPS on worker w's CPU) ──▶ SK_REUSEPORT ──▶ worker w ──▶ smtp-sink next hop;
    replies: kernel ──▶ mxtap0 ──▶ lcore ──▶ net_af_packet ──▶ v_gw ──▶ peer.

The gateway-side veth has no address and its ingress is dropped by tc (packet sockets see frames
before tc ingress, so af_packet still gets them): the kernel only sees the peer's frames through the
TAP device the data plane creates (mxtap0, the port's MAC), which the test addresses once the data
plane is ready. The listener binds the gateway address before it exists (ip_nonlocal_bind in the
gateway namespace only).

Addresses 10.232.0.0/24 exist only on this veth pair inside these namespaces; nothing leaves them.
EAL runs without hugepages, PCI or shared config, with a file prefix of its own per gateway.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import platform
import pwd
import shutil
import struct
import subprocess
import time

import pytest

from lab import ctl
from lab import gateway as gateway_mod
from lab import netns
from lab.smtp_sink import parse_dump

GW_IP, PEER_IP, BLOCKED_IP = "10.232.0.1", "10.232.0.2", "10.232.0.3"
PORT = 2525
SINK_PORT = 2600
STATS_PORT = 9464
TAP = "mxtap0"
WORKERS = 2


def _missing_tools() -> str | None:
    for tool in ("swaks", "ethtool", "tc", "ip", "smtp-sink"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed"
    return None


def _tc_drop_program(path: str) -> None:
    """Loads the eBPF tc program `r0 = TC_ACT_SHOT; exit` (no compiler needed) and pins it at path."""
    nr_bpf = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
    if nr_bpf is None:
        pytest.skip(f"no bpf(2) syscall number known for {platform.machine()} (and tc matchall/gact missing)")
    libc = ctypes.CDLL(None, use_errno=True)
    insns = struct.pack("<BBhi", 0xB7, 0, 0, 2) + struct.pack("<BBhi", 0x95, 0, 0, 0)  # mov64 r0, 2; exit
    insns_buf, license_buf = ctypes.create_string_buffer(insns), ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(struct.pack("<IIQQIIQII16s", 3, 2, ctypes.addressof(insns_buf),  # SCHED_CLS
                                                   ctypes.addressof(license_buf), 0, 0, 0, 0, 0, b"mxe_drop"), 128)
    fd = libc.syscall(nr_bpf, 5, attr, 128)  # BPF_PROG_LOAD
    if fd < 0:
        raise OSError(ctypes.get_errno(), "BPF_PROG_LOAD")
    try:
        path_buf = ctypes.create_string_buffer(path.encode())
        pin = ctypes.create_string_buffer(struct.pack("<QII", ctypes.addressof(path_buf), fd, 0), 128)
        if libc.syscall(nr_bpf, 6, pin, 128) != 0:  # BPF_OBJ_PIN
            raise OSError(ctypes.get_errno(), f"BPF_OBJ_PIN {path}")
    finally:
        os.close(fd)


def drop_kernel_ingress(lab) -> None:
    """Drops every frame arriving on v_gw at tc ingress: packet sockets (DPDK's af_packet) have seen it
    by then; the kernel stack has not. `matchall action drop` where the kernel has cls_matchall and
    act_gact, else a two-instruction eBPF program in direct-action mode (cls_bpf)."""
    netns.sh("tc", "-n", lab.ns_gw, "qdisc", "add", "dev", lab.v_gw, "clsact")
    if netns.sh("tc", "-n", lab.ns_gw, "filter", "add", "dev", lab.v_gw, "ingress", "matchall", "action", "drop",
                check=False).returncode == 0:
        return
    prog = os.path.join(lab.bpffs, "mxe_drop")
    _tc_drop_program(prog)
    netns.sh("tc", "-n", lab.ns_gw, "filter", "add", "dev", lab.v_gw, "ingress", "bpf", "da", "object-pinned", prog)


@pytest.fixture
def dpdk_lab():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, af_packet, TAP devices)")
    reason = gateway_mod.missing_binary_reason() or _missing_tools()
    if reason:
        pytest.skip(reason)
    with netns.VethLab("mxd", gw_ip=GW_IP, peer_ips=[PEER_IP, BLOCKED_IP]) as lab:
        # The lab put GW_IP on v_gw: take it off; the kernel gets the wire only through the TAP.
        netns.sh("ip", "-n", lab.ns_gw, "addr", "flush", "dev", lab.v_gw)
        netns.sh("ip", "netns", "exec", lab.ns_gw, "sysctl", "-qw", f"net.ipv6.conf.{lab.v_gw}.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.ip_nonlocal_bind=1")
        drop_kernel_ingress(lab)
        lab.eal_prefixes = []
        try:
            yield lab
        finally:
            lab.cleanup()  # stop the data plane before its EAL runtime directory goes
            for prefix in lab.eal_prefixes:
                shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)


def gateway_config(lab, blocklist: list[str] = (), xdp_interfaces: list[str] = (),
                   ports: list[str] = ("net_af_packet0",), eal_extra: list[str] = ()) -> str:
    prefix = f"mxd{os.getpid() % 100000}x{len(lab.eal_prefixes)}"
    lab.eal_prefixes.append(prefix)
    eal = ["--no-huge", "--no-pci", "--no-shconf", "-m", "1024", "--file-prefix", prefix,
           "--vdev", f"net_af_packet0,iface={lab.v_gw}"] + list(eal_extra)
    q = lambda items: "[" + ", ".join(f'"{i}"' for i in items) + "]"  # noqa: E731
    return f"""hostname: mx.lab.test
listeners:
  - {{name: smtp, address: "{GW_IP}:{PORT}", tls_mode: none}}
accepted_domains: [lab.test]
next_hop: {{host: 127.0.0.1, port: {SINK_PORT}, tls: none, retry_min: 1s, retry_max: 2s}}
workers: {{cores: [0, 1]}}
spool: {{directory: {lab.work}/spool}}
stats: {{listen: "127.0.0.1:{STATS_PORT}"}}
dpdk:
  eal_args: {q(eal)}
  ports: {q(ports)}
  lcores: [1]
  tap_prefix: mxtap
xdp:
  interfaces: {q(xdp_interfaces)}
  pin_dir: {lab.bpffs}/mxedge
  smtp_ports: [{PORT}]
  blocklist: {q(blocklist)}
  syn_rate: 1000
"""


def start_gateway(lab, blocklist: list[str] = ()):
    """An smtp-sink next hop recording to <work>/sink, the data plane in DPDK mode, then the TAP
    device addressed and up in the gateway namespace."""
    sink_dir = os.path.join(lab.work, "sink")
    os.makedirs(sink_dir)
    nobody = pwd.getpwnam("nobody")
    os.chown(sink_dir, nobody.pw_uid, nobody.pw_gid)
    lab.start_in(lab.ns_gw, ["/usr/sbin/smtp-sink", "-u", "nobody", "-d", sink_dir + "/%H%M%S.",
                             f"127.0.0.1:{SINK_PORT}", "64"], "sink")
    gw, log_path = lab.start_gateway(gateway_config(lab, blocklist=blocklist), timeout=60)
    log = open(log_path).read()
    assert "event=dpdk.eal_ready" in log, log
    assert "event=dpdk.port_ready" in log and "port=net_af_packet0" in log and f"tap={TAP}" in log, log
    assert "fast_path=\"dpdk on 1 port(s)\"" in log or "fast_path=dpdk on 1 port(s)" in log, log
    # The TAP device exists in the gateway namespace (not on the host), with the port's MAC.
    assert netns.link_stats(lab.ns_gw, TAP)["mac"] == lab.gw_mac
    assert netns.sh("ip", "link", "show", TAP, check=False).returncode != 0, "TAP device leaked into the host"
    netns.sh("ip", "-n", lab.ns_gw, "addr", "add", f"{GW_IP}/24", "dev", TAP)
    netns.sh("ip", "-n", lab.ns_gw, "link", "set", TAP, "up")
    return gw, log_path


def swaks(lab, i: int, source: str = PEER_IP, timeout: int = 10) -> subprocess.CompletedProcess:
    return netns.sh("ip", "netns", "exec", lab.ns_peer, "swaks", "--server", f"{GW_IP}:{PORT}", "--local-interface",
                    source, "--from", "a@peer.example", "--to", "u@lab.test", "--header",
                    f"Message-Id: <dpdk-{i}@peer.example>", "--timeout", str(timeout), check=False, timeout=timeout + 30)


def delivered(lab, ids: set[str], timeout: float = 20) -> set[str]:
    """Message-Ids the smtp-sink next hop recorded, once all of `ids` arrived (or timeout)."""
    deadline = time.time() + timeout
    while True:
        got = set()
        for path in glob.glob(os.path.join(lab.work, "sink", "*")):
            raw = parse_dump(open(path, "rb").read())["raw"].decode(errors="replace")
            got |= {line.split(":", 1)[1].strip() for line in raw.split("\n")
                    if line.lower().startswith("message-id:")}
        if ids <= got or time.time() > deadline:
            return got
        time.sleep(0.2)


def snapshot(lab) -> dict:
    """The counters the per-session check compares: steered packets and accepted connections per worker."""
    m = lab.metrics(lab.ns_gw, STATS_PORT)
    out = {}
    for w in range(WORKERS):
        out[f"steered{w}"] = netns.total(m, "mxedge_xdp_packets_total", reason=f"steered_worker_{w}")
        out[f"accepted{w}"] = netns.total(m, "mxedge_connections_accepted_total", worker=str(w))
    out["closed"] = netns.total(m, "mxedge_sessions_closed_total")
    return out


def settled(lab, closed: int, timeout: float = 10) -> dict:
    """A snapshot once `closed` sessions are closed and the steered counters stopped moving (the
    peer's last FIN/ACK may cross the fast path just after swaks returns)."""
    deadline = time.time() + timeout
    prev = None
    while True:
        cur = snapshot(lab)
        if cur["closed"] >= closed and prev is not None and cur == prev:
            return cur
        assert time.time() < deadline, (closed, prev, cur)
        prev = cur
        time.sleep(0.3)


def test_smtp_session_through_dpdk_tap_kernel_worker(dpdk_lab):
    lab = dpdk_lab
    gw, log_path = start_gateway(lab, blocklist=[f"{BLOCKED_IP}/32"])

    # Sessions one at a time, so each one's counters can be told apart: the worker whose steered
    # counter moved (the lcore wrote the flow to that worker's TAP queue, whose RPS CPU is that
    # worker's) is the worker that accepted the connection (SK_REUSEPORT picked the listener socket
    # of the CPU the kernel processed the SYN on). Flows hash onto workers, so keep going until both
    # workers got sessions (at least 6 sessions; two workers all-on-one after 30 is ~1e-9).
    ids, per_worker = set(), [0] * WORKERS
    before = settled(lab, 0)
    i = 0
    while i < 6 or (min(per_worker) == 0 and i < 30):
        r = swaks(lab, i)
        assert r.returncode == 0 and "queued as" in r.stdout, f"session {i}:\n{r.stdout}{r.stderr}\n" + open(log_path).read()
        ids.add(f"<dpdk-{i}@peer.example>")
        after = settled(lab, i + 1)
        steered = [after[f"steered{w}"] - before[f"steered{w}"] for w in range(WORKERS)]
        accepted = [after[f"accepted{w}"] - before[f"accepted{w}"] for w in range(WORKERS)]
        assert sum(accepted) == 1, (i, before, after)
        w = accepted.index(1)
        # SYN, ACK, the client's commands and data, QUIT, FIN: at least 6 packets, all on w's queue.
        assert steered[w] >= 6 and all(steered[o] == 0 for o in range(WORKERS) if o != w), (i, steered, accepted)
        per_worker[w] += 1
        before = after
        i += 1
    assert min(per_worker) > 0, per_worker

    # The path really was af_packet -> TAP -> kernel: the kernel received the peer's frames on the
    # TAP device and sent its replies there, while tc dropped every frame it saw on the veth.
    tap = netns.link_stats(lab.ns_gw, TAP)
    assert tap["rx_packets"] >= i * 6 and tap["tx_packets"] >= i * 6, tap
    qdisc = json.loads(netns.sh("tc", "-n", lab.ns_gw, "-s", "-j", "qdisc", "show", "dev", lab.v_gw, "ingress").stdout)
    assert qdisc[0]["kind"] == "clsact" and qdisc[0]["drops"] == qdisc[0]["packets"] >= i * 6, qdisc

    # The smtp-sink next hop got every message.
    got = delivered(lab, ids)
    assert ids <= got, (ids - got)

    m = lab.metrics(lab.ns_gw, STATS_PORT)
    assert netns.total(m, "mxedge_messages_accepted_total") == i, m
    assert netns.total(m, "mxedge_connections_accepted_total") == i, m
    # Each connection's packets were processed on its worker's CPU (RPS of the TAP queue).
    assert netns.total(m, "mxedge_incoming_cpu_mismatch_total") == 0, m
    for w in range(WORKERS):
        assert netns.total(m, "mxedge_connections_accepted_total", worker=str(w)) == per_worker[w], m
        assert netns.total(m, "mxedge_xdp_packets_total", reason=f"steered_worker_{w}") > 0, m
    # ARP (and anything else not SMTP) passed to the kernel: the TAP answered it.
    assert netns.total(m, "mxedge_xdp_packets_total", reason="pass_not_smtp") > 0, m
    # The lcore on CPU 1 counted everything.
    assert {labels["cpu"] for labels, _ in netns.samples(m, "mxedge_xdp_packets_total")} == {"1"}, m

    # The same counters through the data plane's management socket.
    if os.path.exists(ctl.path()):
        sock = os.path.join(lab.work, "dataplane.sock")
        stats = ctl.ok_json(sock, "stats")
        for w in range(WORKERS):
            assert int(stats["xdp_packets"][f"steered_worker_{w}"]) > 0, stats
        assert int(stats["xdp_packets"]["pass_not_smtp"]) > 0, stats
        assert int(stats["totals"]["messages_accepted"]) == i, stats

    gw.terminate()
    assert gw.wait(timeout=30) == 0, open(log_path).read()
    # The TAP device went with the process.
    assert netns.sh("ip", "-n", lab.ns_gw, "link", "show", TAP, check=False).returncode != 0


def test_blocklisted_source_cannot_connect_through_dpdk(dpdk_lab):
    lab = dpdk_lab
    ctl.skip_unless_built()
    gw, log_path = start_gateway(lab, blocklist=[f"{BLOCKED_IP}/32"])
    sock = os.path.join(lab.work, "dataplane.sock")

    def drops() -> int:
        return int(ctl.ok_json(sock, "stats")["xdp_packets"]["drop_blocklist"])

    r = swaks(lab, 0)
    assert r.returncode == 0 and "queued as" in r.stdout, r.stdout + r.stderr
    assert drops() == 0
    blocked = swaks(lab, 1, source=BLOCKED_IP, timeout=3)
    assert blocked.returncode != 0 and "queued as" not in blocked.stdout, blocked.stdout
    assert drops() >= 1
    m = lab.metrics(lab.ns_gw, STATS_PORT)
    assert netns.total(m, "mxedge_xdp_packets_total", reason="drop_blocklist") >= 1, m
    assert netns.total(m, "mxedge_connections_accepted_total") == 1, m  # the blocked SYNs never reached the kernel

    # Status names the DPDK port and its TAP device.
    status = ctl.ok_json(sock, "status")
    assert [x["ifname"] for x in status["dataplane"]["xdp_interfaces"]] == [f"net_af_packet0 (tap {TAP})"], status

    # Runtime changes through the data plane's management socket take effect on the wire.
    assert f"{BLOCKED_IP}/32" in ctl.ok_json(sock, "blocklist", "list")["prefixes"]
    assert ctl.ok_json(sock, "blocklist", "add", f"{PEER_IP}/32")["prefixes"] == [f"{PEER_IP}/32"]
    before = drops()
    r = swaks(lab, 2, timeout=3)
    assert r.returncode != 0 and "queued as" not in r.stdout, r.stdout
    assert drops() > before
    text = ctl.run(sock, "blocklist", "del", f"{PEER_IP}/32")
    assert text.returncode == 0 and f"removed {PEER_IP}/32" in text.stdout, text.stdout + text.stderr
    r = swaks(lab, 3)
    assert r.returncode == 0 and "queued as" in r.stdout, r.stdout + r.stderr
    # The allowlist wins over the blocklist, here too.
    assert ctl.ok_json(sock, "allowlist", "add", BLOCKED_IP)["prefixes"] == [BLOCKED_IP]
    r = swaks(lab, 4, source=BLOCKED_IP)
    assert r.returncode == 0 and "queued as" in r.stdout, r.stdout + r.stderr
    assert int(ctl.ok_json(sock, "stats")["xdp_packets"]["allowlisted"]) > 0

    # The SYN rate limit: one new connection per second, burst 1, then a quick series of connects
    # from one source: most SYNs are dropped by the lcore.
    budget = {"new_source_per_second": 1000, "new_source_burst": 2000}  # the config's defaults
    assert ctl.ok_json(sock, "ratelimit", "show") == {"syn_per_second": 1000, "burst": 2000, **budget}
    assert ctl.ok_json(sock, "ratelimit", "set", "--rate", "1", "--burst", "1") == {"syn_per_second": 1, "burst": 1,
                                                                                   **budget}
    burst = netns.sh("ip", "netns", "exec", lab.ns_peer, "python3", "-c", f"""
import socket
ok = 0
for _ in range(6):
    s = socket.socket()
    s.bind(("{PEER_IP}", 0))
    s.settimeout(0.3)
    try:
        s.connect(("{GW_IP}", {PORT}))
        ok += 1
    except OSError:
        pass
    s.close()
print(ok)
""")
    # The first SYN takes the burst, then one per second: 6 tries within at most 1.8 s.
    assert 1 <= int(burst.stdout) <= 3, burst.stdout
    assert int(ctl.ok_json(sock, "stats")["xdp_packets"]["drop_rate_limit"]) > 0
    assert ctl.ok_json(sock, "ratelimit", "set", "--rate", "0") == {"syn_per_second": 0, "burst": 0,
        "new_source_per_second": 0, "new_source_burst": 0}  # the budget acts only with the per-source limit
    r = swaks(lab, 5)
    assert r.returncode == 0 and "queued as" in r.stdout, r.stdout + r.stderr
    assert "event=mgmt.change plane=dataplane" in open(log_path).read()

    gw.terminate()
    assert gw.wait(timeout=30) == 0, open(log_path).read()


@pytest.mark.parametrize("case", ["xdp_and_dpdk", "unknown_port", "bad_eal_arg"])
def test_bad_dpdk_config_is_refused(dpdk_lab, case):
    lab = dpdk_lab
    if case == "xdp_and_dpdk":
        text = gateway_config(lab, xdp_interfaces=[lab.v_gw])
        # The loader points at the dpdk.ports line of the file and names both settings.
        ports_line = text.split("\n").index('  ports: ["net_af_packet0"]') + 1
        want_rc, want = 2, [f"bad.yaml:{ports_line}:", "the DPDK and XDP fast paths are exclusive: set dpdk.ports or "
                            "xdp.interfaces, not both", "is invalid; not starting"]
    elif case == "unknown_port":
        text = gateway_config(lab, ports=["net_nonexistent0"])
        want_rc, want = 1, ["event=dataplane.dpdk_failed", "dpdk.ports: no DPDK port named 'net_nonexistent0'"]
    else:
        text = gateway_config(lab, eal_extra=["--no-such-eal-option"])
        want_rc, want = 1, ["event=dataplane.dpdk_failed", "EAL init failed"]
    cfg = os.path.join(lab.work, "bad.yaml")
    with open(cfg, "w") as f:
        f.write(text + f"management:\n  socket: {lab.work}/mgmt.sock\n  dataplane_socket: {lab.work}/dataplane.sock\n")
    p = netns.sh("ip", "netns", "exec", lab.ns_gw, gateway_mod.binary_path(), "-c", cfg, check=False, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == want_rc, (p.returncode, out)
    for w in want:
        assert w in out, out
    assert "event=dataplane.ready" not in out, out
    # Nothing was left behind: no TAP device in the namespace.
    assert TAP not in netns.sh("ip", "-n", lab.ns_gw, "-o", "link", "show").stdout
