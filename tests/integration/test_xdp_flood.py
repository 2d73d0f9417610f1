"""A SYN flood against mxedge-dataplane with XDP attached natively to its veth, in two network
namespaces the test creates (and always deletes): the per-source SYN rate limit drops what each
flooding source sends beyond its allowance, legitimate SMTP sessions from the peer's own address
complete meanwhile, and the XDP counters account for every frame the gateway's veth received.

The flood: a raw AF_PACKET socket in the peer namespace writes complete Ethernet frames (IPv4 and TCP
checksums computed) to the peer's veth: SYNs to the SMTP listener from SOURCES spoofed addresses in
10.232.0.0/16 (outside the link's /24), round-robin, in whole rounds (round r: source port 1024 + r,
so no attempt repeats), as fast as it can, until the legitimate sessions are over (bounded by
FLOOD_SECONDS and FLOOD_MAX frames). The legitimate sessions (SESSIONS, smtplib, from the peer's
own address, which the rate limit applies to as well) run meanwhile.

The gateway namespace routes 10.232.0.0/16 back through the peer (DESIGN.md, "The lab"): the SYNs
the rate limit admits then reach TCP's SYN handling (SYN queue, then SYN cookies) as a real flood's
would, instead of being dropped by TCP for want of a route to answer them (ListenDrops, no SYN-ACK,
no SYN-queue pressure); their SYN-ACKs go to the peer namespace, which does not forward and drops
them. Nothing leaves the two namespaces: every address used here exists only on this veth pair or
behind that route.

What is comparable: with native XDP on a veth, every frame the veth takes off its ring runs the XDP
program, and the interface's rx_packets counts exactly those frames (dropped ones too). So the sum of
the program's exclusive counters (all reasons but "allowlisted") equals the growth of the gateway
veth's rx_packets since before the program was attached, provided the program's maps start empty
(a fresh bpffs here). Frames the peer's veth could not queue (its ring full) never reach XDP; they
show in the peer's tx_dropped and are subtracted from what the flood can be expected to exceed.
IPv6 is off and the neighbours are static, so no ND/ARP/MLD frames cross the link.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from lab import gateway as gateway_mod
from lab.netns import VethLab, link_stats, samples, sh

GW_IP, PEER_IP = "10.232.0.1", "10.232.0.2"
SPOOF_ROUTE = "10.232.0.0/16"  # the gateway's route back to the spoofed sources (outside the link's /24)
PORT = 2525
STATS_PORT = 9464
SYN_RATE, SYN_BURST = 5, 10
SOURCES = 1024
FLOOD_SECONDS = 12.0  # bounds; the flood normally stops when the legitimate sessions are over (~5 s)
FLOOD_MAX = 12_000_000  # ~1 Mpps on an idle machine: the sessions (~5 s) end first
SESSIONS = 20
SESSION_GAP = 0.25  # legitimate sessions start at most 4 per second (fits the peer's own allowance)

GENERATOR = r'''
import json, os, random, socket, struct, sys, time
p = json.loads(sys.argv[1])

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

def header(src, dst, dport, seq, ipid):
    """A SYN with source port 0 and TCP checksum 0, and the folded sum its checksum starts from."""
    tcp = struct.pack("!HHIIBBHHH", 0, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    partial = 0xFFFF & ~csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ipid, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes.fromhex(p["dst_mac"].replace(":", "")) + bytes.fromhex(p["src_mac"].replace(":", "")) + b"\x08\x00"
    return bytearray(eth + ip + tcp), partial

rng = random.Random(p["seed"])
dst = socket.inet_aton(p["dst"])
# Distinct spoofed sources in 10.232.1.0 .. 10.232.255.254 (never the link's 10.232.0.0/24).
chosen = rng.sample(range(256 + 1, 65535), p["sources"])
sources = [socket.inet_aton("10.232.%d.%d" % (n >> 8, n & 0xFF)) for n in chosen]
frames = [header(src, dst, p["dport"], rng.getrandbits(32), rng.getrandbits(16)) for src in sources]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((p["ifname"], 0))
send = s.send
pack_into = struct.pack_into
n = len(sources)
rounds = 0
errors = 0
sys.stdout.write("START\n"); sys.stdout.flush()
t_start = time.monotonic()
deadline = t_start + p["seconds"]
max_rounds = min(p["max_frames"] // n, 64000)
while rounds < max_rounds:
    # Round r: every source sends one SYN from port 1024 + r, so no connection attempt repeats.
    sport = 1024 + rounds
    for frame, partial in frames:
        c = partial + sport
        c = (c & 0xFFFF) + (c >> 16)
        pack_into("!H", frame, 34, sport)          # TCP source port
        pack_into("!H", frame, 50, ~c & 0xFFFF)    # TCP checksum
        try:
            send(frame)
        except OSError:
            errors += 1
    rounds += 1
    if time.monotonic() >= deadline or os.path.exists(p["stop_file"]):
        break
t_end = time.monotonic()
print(json.dumps({"rounds": rounds, "sources": n, "errors": errors, "t_start": t_start, "t_end": t_end,
                  "sources_sample": [socket.inet_ntoa(x) for x in sources[:4]]}))
'''

CLIENT = r'''
import json, smtplib, sys, time
p = json.loads(sys.argv[1])
out = []
t0 = time.monotonic()
for i in range(p["sessions"]):
    start = time.monotonic()
    entry = {"start": start}
    try:
        with smtplib.SMTP(p["host"], p["port"], source_address=(p["source"], 0), timeout=15) as c:
            c.ehlo("peer.example")
            c.sendmail("a@peer.example", ["u@lab.test"],
                       "From: a@peer.example\r\nTo: u@lab.test\r\nMessage-Id: <flood-%d@peer.example>\r\n"
                       "Subject: during the flood\r\n\r\nlegitimate\r\n" % i)
        entry["ok"] = True
    except Exception as e:
        entry.update(ok=False, error=repr(e))
    entry["end"] = time.monotonic()
    out.append(entry)
    wait = t0 + (i + 1) * p["gap"] - time.monotonic()
    if wait > 0:
        time.sleep(wait)
print(json.dumps(out))
'''


def snmp(ns: str) -> dict[str, int]:
    """The namespace's /proc/net/snmp and /proc/net/netstat counters as {"Tcp.ActiveOpens": n, ...}."""
    out: dict[str, int] = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = sh("ip", "netns", "exec", ns, "cat", path).stdout.splitlines()
        for names, values in zip(lines[::2], lines[1::2]):
            proto = names.split(":")[0]
            for name, value in zip(names.split()[1:], values.split()[1:]):
                out[f"{proto}.{name}"] = int(value)
    return out


def delta(after: dict[str, int], before: dict[str, int], name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def by_reason(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for labels, value in samples(text, "mxedge_xdp_packets_total"):
        out[labels["reason"]] = out.get(labels["reason"], 0) + value
    return out


@pytest.fixture
def flood_lab():
    reason = gateway_mod.missing_binary_reason()
    if reason:
        pytest.skip(reason)
    with VethLab("mxf", gw_ip=GW_IP, peer_ips=[PEER_IP], quiet_link=True) as lab:
        # The route back to the spoofed sources, through the peer (which drops what it gets for them).
        sh("ip", "-n", lab.ns_gw, "route", "add", SPOOF_ROUTE, "via", PEER_IP, "dev", lab.v_gw)
        yield lab


def test_syn_flood_is_rate_limited_while_legitimate_sessions_complete(flood_lab):
    lab = flood_lab
    ns_gw, ns_peer, work = lab.ns_gw, lab.ns_peer, lab.work
    lab.start_in(ns_gw, ["/usr/sbin/smtp-sink", "-u", "nobody", "127.0.0.1:2600", "256"], "sink")
    spool = os.path.join(work, "spool")
    config_text = (f"""hostname: mx.lab.test
listeners:
  - {{name: smtp, address: "{GW_IP}:{PORT}", tls_mode: none}}
accepted_domains: [lab.test]
next_hop: {{host: 127.0.0.1, port: 2600, tls: none, retry_min: 1s, retry_max: 2s}}
workers: {{cores: [0, 1]}}
spool: {{directory: {spool}}}
stats: {{listen: "127.0.0.1:{STATS_PORT}"}}
xdp:
  interfaces: [{lab.v_gw}]
  attach_mode: native
  pin_dir: {lab.bpffs}/mxedge
  smtp_ports: [{PORT}]
  syn_rate: {SYN_RATE}
  syn_burst: {SYN_BURST}
""")
    # Baseline before the XDP program exists: its (fresh) counters must grow exactly as rx_packets does.
    gw_before = link_stats(ns_gw, lab.v_gw)
    peer_before = link_stats(ns_peer, lab.v_peer)
    peer_snmp_before, gw_snmp_before = snmp(ns_peer), snmp(ns_gw)

    gw, log_path = lab.start_gateway(config_text)
    text = open(log_path).read()
    assert re.search(r"event=xdp\.attached .*mode=native", text), text

    params = dict(ifname=lab.v_peer, src_mac=lab.peer_mac, dst_mac=lab.gw_mac, dst=GW_IP, dport=PORT,
                  sources=SOURCES, seconds=FLOOD_SECONDS, max_frames=FLOOD_MAX, seed=20240611,
                  stop_file=os.path.join(work, "stop"))
    flood = lab.start_in(ns_peer, [sys.executable, "-c", GENERATOR, json.dumps(params)], "flood",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = flood.stdout.readline()
    assert started == "START\n", started + flood.stderr.read()
    cparams = dict(host=GW_IP, port=PORT, source=PEER_IP, sessions=SESSIONS, gap=SESSION_GAP)
    client = lab.start_in(ns_peer, [sys.executable, "-c", CLIENT, json.dumps(cparams)], "client",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    c_out, c_err = client.communicate(timeout=25)
    open(os.path.join(work, "stop"), "w").close()  # the flood stops once the sessions are over
    f_out, f_err = flood.communicate(timeout=25)
    assert flood.returncode == 0, f_out + f_err
    assert client.returncode == 0, c_out + c_err
    result = json.loads(f_out.strip().splitlines()[-1])
    sessions = json.loads(c_out.strip().splitlines()[-1])

    # Every legitimate session completed, also while the flood ran.
    failed = [s for s in sessions if not s["ok"]]
    assert not failed, sessions
    assert len(sessions) == SESSIONS

    # Quiescence: the gateway's rx counter has stopped moving (sessions closed, flood over).
    last = None
    for _ in range(50):
        now = link_stats(ns_gw, lab.v_gw)["rx_packets"]
        if now == last:
            break
        last = now
        time.sleep(0.2)
    gw_mid = link_stats(ns_gw, lab.v_gw)
    m = lab.metrics(ns_gw, STATS_PORT)
    gw_after = link_stats(ns_gw, lab.v_gw)
    peer_after = link_stats(ns_peer, lab.v_peer)
    peer_snmp, gw_snmp = snmp(ns_peer), snmp(ns_gw)
    # SYNs the peer's own TCP sent: active opens plus SYN retransmissions.
    legit_syns = delta(peer_snmp, peer_snmp_before, "Tcp.ActiveOpens") + delta(peer_snmp, peer_snmp_before,
                                                                                 "TcpExt.TCPSynRetrans")
    gw_tcp = {k: delta(gw_snmp, gw_snmp_before, k) for k in (
        "Tcp.InSegs", "Tcp.OutSegs", "Tcp.PassiveOpens", "TcpExt.ListenDrops", "TcpExt.ListenOverflows",
        "TcpExt.SyncookiesSent", "TcpExt.TCPReqQFullDoCookies", "TcpExt.IPReversePathFilter", "Ip.InNoRoutes",
        "Ip.InAddrErrors", "Tcp.InCsumErrors")}
    assert gw_mid["rx_packets"] == gw_after["rx_packets"], "traffic on the link while the counters were read"

    # What the flood sent, and what it must have exceeded. Every source got `rounds` SYNs, the first no
    # earlier than t_start and the last no later than t_end. GCRA admits at most burst + floor(span /
    # interval) SYNs of a source over a span (+1 for the coarse clock's tick); the rest exceed it.
    rounds, n = result["rounds"], result["sources"]
    flood_sent = rounds * n - result["errors"]
    span = result["t_end"] - result["t_start"]
    allowance = SYN_BURST + int(span * SYN_RATE) + 1
    ring_drops = peer_after["tx_dropped"] - peer_before["tx_dropped"]  # never reached the gateway's XDP
    must_exceed = max(0, n * max(0, rounds - allowance) - result["errors"] - ring_drops)

    reasons = by_reason(m)
    dropped = reasons.get("drop_rate_limit", 0)
    program_total = sum(v for r, v in reasons.items() if r != "allowlisted")
    received = gw_after["rx_packets"] - gw_before["rx_packets"]
    summary = (f"flood: {flood_sent} SYNs from {n} sources in {span:.2f}s ({flood_sent / span / 1e3:.0f} kpps), "
               f"{rounds} each, allowance {allowance} each -> must exceed {must_exceed}; peer tx_dropped "
               f"{ring_drops}; legit SYNs {legit_syns}; gateway rx {received}; program {reasons}; sessions "
               f"took at most {max(s['end'] - s['start'] for s in sessions):.2f}s each; gateway TCP {gw_tcp}")
    print(summary)

    assert rounds > allowance, summary  # the flood really was far above the per-source limit
    assert dropped >= 0.99 * must_exceed, summary
    # Never more than the flood's share above each source's burst, plus whatever the peer's own SYNs lost.
    assert dropped <= n * (rounds - SYN_BURST) + legit_syns, summary
    # Every frame the gateway's veth took in ran through the program, counted exactly once.
    assert program_total == received, summary
    assert received >= flood_sent - ring_drops, summary
    assert reasons.get("pass_not_smtp", 0) == 0 and reasons.get("malformed", 0) == 0, summary
    # The flood SYNs the limit admitted reached TCP's SYN handling and were answered (a SYN-ACK from the
    # SYN queue or a SYN cookie): with no route back, TCP would drop each of them (ListenDrops) unanswered.
    admitted_flood = flood_sent - ring_drops - dropped  # at least; `dropped` may include the peer's own SYNs
    assert gw_tcp["TcpExt.ListenDrops"] == 0 and gw_tcp["Tcp.InCsumErrors"] == 0, summary
    assert gw_tcp["Tcp.OutSegs"] >= admitted_flood, summary
    # The legitimate sessions ran during the flood (unless it hit its bounds first, which is a failure).
    assert all(result["t_start"] < s["start"] and s["end"] < result["t_end"] for s in sessions), summary

    accepted = sum(v for _, v in samples(m, "mxedge_messages_accepted_total"))
    assert accepted == SESSIONS, summary

    gw.terminate()
    assert gw.wait(timeout=20) == 0
    assert "event=xdp.detached" in open(log_path).read()
    link = sh("ip", "-n", ns_gw, "link", "show", lab.v_gw).stdout
    assert "xdp" not in link, link
