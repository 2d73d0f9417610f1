#!/usr/bin/python3
"""bench_pktgen.py - mxedge-pktgen against trafgen (netsniff-ng), the packet generator DESIGN.md names
for SYN floods on these machines: frames per second each delivers to a receiver's XDP program from one
CPU, in one run. A benchmark: it prints figures and asserts nothing about speed.

    /usr/bin/python3 tests/load/pktgen/bench_pktgen.py [--seconds S] [--rounds N]   (root)

The lab: two network namespaces joined by a veth pair; the receiving end has xdp-filter's
xdpfilt_dny_all.o attached natively (deny mode, nothing allowed: every frame dropped in XDP, the
cheapest receiver there is), so the figure is the generator's rate plus the veth's delivery, the same
for both. Both generators make the same flood: IPv4 TCP SYNs to port 25, a random source address,
source port and sequence number per frame, correct checksums, on CPU 0 (trafgen -P 1 pins its one
process to CPU 0; mxedge-pktgen --cpus 0). The rate is the growth of the receiving veth's rx_packets
(every frame the XDP program saw) over the measured interval, after a warm-up second; rounds
alternate the generators, the median is printed with the ratio mxedge-pktgen / trafgen.

What differs by construction: trafgen writes frames into a PACKET_TX_RING socket and the kernel sends
each through the veth's ndo_start_xmit (an skb per frame; trafgen's qdisc bypass is on), while
mxedge-pktgen's frames are xdp_frames from BPF_PROG_RUN's page pool sent by ndo_xdp_xmit in batches
(no skb). On a NIC the first works with any driver; the second needs a driver that accepts XDP
redirects.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, TESTS)

from lab import gateway as gateway_mod  # noqa: E402
from lab.netns import VethLab, link_stats, sh  # noqa: E402

DROP_ALL = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_dny_all.o"
GW_IP, PEER_IP = "10.235.0.1", "10.235.0.2"

TRAFGEN_CFG = """\
{{
  eth(da={dst_mac}, sa={src_mac}),
  ipv4(daddr={dst}, saddr=drnd(), ttl=64, df),
  tcp(dp=25, sp=drnd(), seq=drnd(), syn, win=64240)
}}
"""


def rx(lab: VethLab) -> int:
    return link_stats(lab.ns_gw, lab.v_gw)["rx_packets"]


def measure(lab: VethLab, argv: list[str], seconds: float) -> float:
    """Starts a generator, skips its first second, returns frames/s the receiver saw over `seconds`."""
    p = subprocess.Popen(["ip", "netns", "exec", lab.ns_peer] + argv, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        time.sleep(1.0)
        if p.poll() is not None:
            raise SystemExit(f"{argv[0]} exited {p.returncode}: {p.stderr.read()}")
        a, ta = rx(lab), time.monotonic()
        time.sleep(seconds)
        b, tb = rx(lab), time.monotonic()
        return (b - a) / (tb - ta)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 2)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    pktgen = os.path.join(gateway_mod.build_dir(), "tests", "load", "mxedge-pktgen")
    for path in (pktgen, DROP_ALL, "/usr/sbin/trafgen"):
        if not os.path.exists(path):
            print(f"bench_pktgen: {path} is missing (build, or scripts/setup.sh)", file=sys.stderr)
            return 1
    results: dict[str, list[float]] = {"mxedge-pktgen": [], "trafgen": []}
    with VethLab("mxpb", gw_ip=GW_IP, peer_ips=[PEER_IP], quiet_link=True) as lab:
        sh("ip", "-n", lab.ns_gw, "link", "set", "dev", lab.v_gw, "xdpdrv", "obj", DROP_ALL, "sec", "xdp")
        cfg = os.path.join(lab.work, "syn.cfg")
        with open(cfg, "w") as f:
            f.write(TRAFGEN_CFG.format(dst_mac=lab.gw_mac, src_mac=lab.peer_mac, dst=GW_IP))
        runs = {
            "mxedge-pktgen": [pktgen, "--dev", lab.v_peer, "--dst", GW_IP, "--dst-mac", lab.gw_mac, "--mix", "syn",
                              "--sources", "random", "--cpus", "0", "--duration", str(args.seconds + 5), "--quiet"],
            "trafgen": ["/usr/sbin/trafgen", "--dev", lab.v_peer, "--conf", cfg, "-P", "1", "--no-sock-mem", "-Q",
                        "-C"],
        }
        for r in range(args.rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                v = measure(lab, runs[name], args.seconds)
                results[name].append(v)
                print(f"  round {r + 1} {name:14s} {v / 1e6:7.3f} Mpps", flush=True)
    m = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nSYN flood, random sources, one CPU, veth into an XDP drop program; median of {args.rounds} rounds "
          f"of {args.seconds:.0f} s")
    print(f"  mxedge-pktgen  {m['mxedge-pktgen'] / 1e6:7.3f} Mpps")
    print(f"  trafgen        {m['trafgen'] / 1e6:7.3f} Mpps")
    if m["trafgen"] > 0:
        print(f"  ratio mxedge-pktgen / trafgen: {m['mxedge-pktgen'] / m['trafgen']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
