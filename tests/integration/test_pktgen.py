"""mxedge-pktgen (tests/load/pktgen) on a real veth pair: what it sends is what it says it sends.

The generator runs in one namespace of a VethLab; the other end of the veth has a bare XDP_PASS program
attached natively (a veth takes XDP frames only from a peer with NAPI, which an XDP program gives it),
so every generated frame reaches that namespace's stack, where a raw AF_PACKET socket captures it.
Each captured frame is checked independently of the generator: Ethernet addresses, the IPv4 header
checksum, the TCP/UDP checksum over the pseudo-header (IPv4 and IPv6), the source inside the asked
prefix, the kind (SYN, ACK, data, RST, UDP, fragment, malformed) by its headers, and the counts: as
many frames captured as the generator reports sent, per kind and family as its JSON says, and in the
proportions of the mix. Bad command lines are refused with exit status 2 and a message naming the
option.
"""

from __future__ import annotations

import ipaddress
import json
import os
import struct
import subprocess
import sys

import pytest

from lab import gateway as gateway_mod
from lab.netns import VethLab, sh

GW_IP, PEER_IP = "10.234.0.1", "10.234.0.2"
GW_IP6 = "fd00:6d78:10::1"
SRC4, SRC6 = "198.18.0.0/15", "2001:db8:f::/48"


def pktgen_path() -> str:
    return os.path.join(gateway_mod.build_dir(), "tests", "load", "mxedge-pktgen")


def bench_pass_object() -> str:
    return os.path.join(gateway_mod.build_dir(), "tests", "bpf", "gen", "bench_pass.bpf.o")


CAPTURE = r'''
import socket, sys, time
dev, count, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: past rmem_max (root)
s.bind((dev, 0))
s.settimeout(0.5)
print("READY", flush=True)
frames, end = [], time.time() + seconds
while len(frames) < count and time.time() < end:
    try:
        data, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    frames.append(data.hex())
open(out, "w").write("\n".join(frames))
'''


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s


def classify(frame: bytes, dst_mac: bytes, src_mac: bytes) -> tuple[str, int, str]:
    """(kind, family, source) of one generated frame, checking every checksum on the way."""
    assert frame[0:6] == dst_mac and frame[6:12] == src_mac, frame[:14].hex()
    ethertype = struct.unpack("!H", frame[12:14])[0]
    if ethertype == 0x0800:
        ihl = (frame[14] & 0x0f) * 4
        ip = frame[14:14 + ihl]
        assert csum(ip) == 0xffff, "IPv4 header checksum"
        total = struct.unpack("!H", ip[2:4])[0]
        proto, src, dst = ip[9], ip[12:16], ip[16:20]
        frag = struct.unpack("!H", ip[6:8])[0] & 0x1fff
        l4 = frame[14 + ihl:14 + total]
        family, source = 4, str(ipaddress.IPv4Address(src))
        if frag:
            return "frag", family, source
        if len(frame) < 14 + total:
            return "malformed", family, source
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
    elif ethertype == 0x86dd:
        ip = frame[14:54]
        plen = struct.unpack("!H", ip[4:6])[0]
        nxt, src, dst = ip[6], ip[8:24], ip[24:40]
        family, source = 6, str(ipaddress.IPv6Address(src))
        if nxt == 44:
            return "frag", family, source
        l4 = frame[54:54 + plen]
        if len(frame) < 54 + plen:
            return "malformed", family, source
        pseudo = src + dst + struct.pack("!IxxxB", len(l4), nxt)
        proto = nxt
    else:
        raise AssertionError(f"ethertype {ethertype:#x}")
    assert csum(pseudo + l4) == 0xffff, f"{'TCP' if proto == 6 else 'UDP'} checksum (IPv{family})"
    if proto == 17:
        return "udp", family, source
    assert proto == 6, proto
    flags = l4[13]
    payload = len(l4) - (l4[12] >> 4) * 4
    if flags == 0x02:
        return "syn", family, source
    if flags == 0x04:
        return "rst", family, source
    if flags == 0x18 and payload == 32:
        return "data", family, source
    if flags == 0x10 and payload == 0:
        return "ack", family, source
    raise AssertionError(f"TCP flags {flags:#x} payload {payload}")


@pytest.fixture
def lab():
    reason = gateway_mod.missing_binary_reason()
    if reason or not os.path.exists(pktgen_path()):
        pytest.skip(reason or f"{pktgen_path()} not built")
    with VethLab("mxpg", gw_ip=GW_IP, peer_ips=[PEER_IP], quiet_link=True) as lab:
        sh("ip", "-n", lab.ns_gw, "link", "set", "dev", lab.v_gw, "xdpdrv", "obj", bench_pass_object(), "sec", "xdp")
        yield lab


def run_pktgen(lab, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", lab.ns_peer, pktgen_path(), *args, check=False, timeout=timeout)


def test_every_frame_is_well_formed_from_the_asked_sources_in_the_asked_mix(lab):
    count = 4000
    out = os.path.join(lab.work, "frames.txt")
    cap = lab.start_in(lab.ns_gw, [sys.executable, "-c", CAPTURE, lab.v_gw, str(count), "30", out], "capture",
                       stdout=subprocess.PIPE, text=True)
    assert cap.stdout.readline().strip() == "READY"
    r = run_pktgen(lab, "--dev", lab.v_peer, "--dst", f"{GW_IP},{GW_IP6}", "--dst-mac", lab.gw_mac,
                   "--sources", f"{SRC4},{SRC6}", "--family", "both", "--mix", "mixed", "--count", str(count),
                   "--rate", "20000", "--json", "-", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["sent"] == count and report["short_frames"] == 0 and report["error"] == ""
    assert report["device_tx_packets"] >= count and "WARNING" not in r.stderr
    cap.wait(timeout=40)
    frames = [bytes.fromhex(line) for line in open(out).read().split()]
    assert len(frames) == count

    dst_mac = bytes.fromhex(lab.gw_mac.replace(":", ""))
    src_mac = bytes.fromhex(lab.peer_mac.replace(":", ""))
    seen: dict[tuple[str, int], int] = {}
    sources4, sources6 = set(), set()
    for f in frames:
        kind, family, source = classify(f, dst_mac, src_mac)
        seen[(kind, family)] = seen.get((kind, family), 0) + 1
        net = ipaddress.ip_network(SRC4 if family == 4 else SRC6)
        assert ipaddress.ip_address(source) in net, (kind, source)
        (sources4 if family == 4 else sources6).add(source)
    # Counts per stream: what the JSON says is what was captured.
    for st in report["streams"]:
        assert seen.get((st["kind"], st["family"]), 0) == st["sent"], (st, seen)
    # The mix's proportions (syn=40,ack=20,data=10,rst=10,udp=10,frag=5,malformed=5), within 3 points.
    weights = {"syn": 40, "ack": 20, "data": 10, "rst": 10, "udp": 10, "frag": 5, "malformed": 5}
    for kind, w in weights.items():
        share = 100 * sum(n for (k, _), n in seen.items() if k == kind) / count
        assert abs(share - w) <= 3, (kind, share, seen)
    fam4 = sum(n for (_, fam), n in seen.items() if fam == 4)
    assert abs(fam4 - count / 2) <= count * 0.03, seen
    # Random sources: nearly every frame from another address.
    assert len(sources4) > 0.9 * fam4 and len(sources6) > 0.9 * (count - fam4)


def test_a_fixed_source_and_a_rate(lab):
    r = run_pktgen(lab, "--dev", lab.v_peer, "--dst", GW_IP, "--dst-mac", lab.gw_mac, "--sources", "198.51.100.7",
                   "--rate", "5000", "--duration", "1", "--json", "-", "--quiet")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert 4000 <= report["sent"] <= 5600, report  # paced in tenth-of-a-second chunks
    assert report["streams"] == [{"kind": "syn", "family": 4, "sent": report["sent"], "frame_bytes": 58}]


def test_a_peer_without_xdp_is_reported(lab):
    sh("ip", "-n", lab.ns_gw, "link", "set", "dev", lab.v_gw, "xdpdrv", "off")
    r = run_pktgen(lab, "--dev", lab.v_peer, "--dst", GW_IP, "--dst-mac", lab.gw_mac, "--count", "1000", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "WARNING" in r.stderr and "refused 1000" in r.stderr, r.stderr


@pytest.mark.parametrize("args, message", [
    ([], "--dev is required"),
    (["--dev", "lo", "--dst", "10.0.0.1", "--dst-mac", "02:00:00:00:00:01"], "give --duration or --count"),
    (["--dev", "lo", "--dst", "10.0.0.1", "--dst-mac", "02:00:00:00:00:01", "--count", "1", "--sources",
      "10.0.0.0/40"], "--sources: '10.0.0.0/40': the prefix length must be 0..32"),
    (["--dev", "lo", "--dst", "10.0.0.1", "--dst-mac", "02:00:00:00:00:01", "--count", "1", "--mix", "syn=1,ping=2"],
     "--mix: unknown kind 'ping'"),
    (["--dev", "lo", "--dst", "10.0.0.1", "--dst-mac", "02:00:00:00:00:01", "--count", "1", "--family", "6"],
     "--family includes IPv6 but --dst has no IPv6 address"),
    (["--dev", "lo", "--dst", "10.0.0.1", "--dst-mac", "zz", "--count", "1"], "--dst-mac: expected"),
    (["--dev", "lo", "--dst", "10.0.0.1", "--dst-mac", "02:00:00:00:00:01", "--count", "1", "--cpus", "x"],
     "--cpus: expected a list"),
])
def test_bad_command_lines_are_refused(args, message):
    if not os.path.exists(pktgen_path()):
        pytest.skip("mxedge-pktgen not built")
    r = subprocess.run([pktgen_path(), *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr, r.stderr


def test_an_unknown_device_is_an_error():
    if not os.path.exists(pktgen_path()):
        pytest.skip("mxedge-pktgen not built")
    r = subprocess.run([pktgen_path(), "--dev", "mxnosuchdev0", "--dst", "10.0.0.1", "--dst-mac", "02:00:00:00:00:01",
                        "--count", "1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "--dev mxnosuchdev0: no such device" in r.stderr, r.stderr
