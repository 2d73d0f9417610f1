#!/usr/bin/python3
"""bench_resolver.py - mxedge's DNSSEC-validating destination resolution against unbound.

Run from the repository root, as root, after building (build/ or $MXEDGE_BUILD_DIR):

    /usr/bin/python3 tests/load/resolver/bench_resolver.py [--quick] [--json out.json]

It prints figures; it is not a test. Exit status 0 when every measurement completed.

Both sides resolve the same destinations of the signed DNS lab (tests/lab/dns.py: dN.bench.test,
each MX 10 mx.dN.bench.test with A, AAAA and TLSA 3 1 1, all signed with ECDSA P-256) from the same
root hints with the same trust anchor, and validate everything:
  - mxedge: controlplane/resolver (libunbound in-process) through DestinationResolver — MX, then A and
    AAAA in parallel, then TLSA because the addresses are secure;
  - unbound 1.17 (Debian's daemon, one thread, the lab's configuration) asked the same queries in the
    same order by a minimal UDP stub client in the benchmark binary (MX; A+AAAA at once; TLSA when
    both address answers carry AD).
Measurements (tests/load/resolver/bench_resolver.cc), interleaved per destination so that both see
the same machine state:
  cold_empty_cache   a fresh resolver context per destination (libunbound initialized beforehand
                     with a local-data lookup) vs unbound with its caches flushed (flush_zone . and
                     flush_infra all) before each destination: root priming, DNSKEY and DS fetches
                     for ., test. and bench.test, then the destination's records;
  cold_destination   long-lived resolvers with the root, test. and bench.test keys cached, each
                     destination asked for the first time (the steady state of a running gateway);
  warm_destination_latency  the same destinations again: mxedge answers from its destination cache,
                     unbound answers the four queries from its cache (a UDP round trip each step);
  warm_throughput    mxedge DestinationResolver::cached() lookups per second on one core vs unbound
                     cached answers per second with 64 queries in flight (4 queries = 1 destination).
The lab's NSD answers all authoritative queries on loopback for both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, TESTS)

from lab import dns, gateway as gateway_mod, util  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer destinations (a smoke run)")
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args()
    binary = os.path.join(gateway_mod.build_dir(), "tests", "load", "mxedge-bench-resolver")
    if not os.path.exists(binary):
        print(f"bench_resolver: {binary} is not built", file=sys.stderr)
        return 1
    cold_empty = 10 if args.quick else 60
    destinations = 200 if args.quick else 1200
    warm_seconds = 1.0 if args.quick else 3.0

    with util.LabDir("mxedge-bench-dns-") as d, dns.DnsLab(d.sub("dns")) as lab:
        lab.start_unbound(extra={"verbosity": 0, "log-servfail": "no"})
        names_file = os.path.join(d.path, "names")
        with open(names_file, "w") as f:
            for i in range(min(destinations, lab.bench_domains)):
                f.write(f"d{i}.bench.test\n")
        ctl = f"unbound-control -c {lab.unbound_conf}"
        flush = f"{ctl} flush_zone . >/dev/null && {ctl} flush_infra all >/dev/null"
        p = subprocess.run([binary, lab.trust_anchor_file, lab.root_hints_file, lab.unbound_address, flush, names_file,
                            str(cold_empty), str(warm_seconds)], capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            print(p.stdout, p.stderr, file=sys.stderr)
            return 1
        results = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]

    by = {r["measure"]: r for r in results}
    print("mxedge resolver vs unbound 1.17 (same lab, same anchor, same queries); times in ms")
    print(f"{'measure':28} {'mxedge med':>10} {'p99':>8} {'unbound med':>12} {'p99':>8} {'ratio med':>9} {'ratio p99':>9}")
    for key in ("cold_empty_cache", "cold_destination", "warm_destination_latency"):
        r = by[key]
        m, u = r["mxedge"], r["unbound"]
        print(f"{key:28} {m['median_ms']:10.3f} {m['p99_ms']:8.3f} {u['median_ms']:12.3f} {u['p99_ms']:8.3f} "
              f"{m['median_ms'] / u['median_ms']:9.2f} {m['p99_ms'] / u['p99_ms']:9.2f}"
              + (f"   (n={m['n']}, not DANE: {r['not_dane']})" if "not_dane" in r else f"   (n={m['n']})"))
    w = by["warm_throughput"]
    print(f"warm throughput, one core: mxedge {w['mxedge_destinations_per_s'] / 1e6:.2f} M destinations/s "
          f"(hit rate {w['mxedge_hit_rate']:.3f}); unbound {w['unbound_queries_per_s']:,.0f} queries/s = "
          f"{w['unbound_destinations_per_s']:,.0f} destinations/s; ratio "
          f"{w['mxedge_destinations_per_s'] / w['unbound_destinations_per_s']:,.0f}x")
    print("targets: cold latency <= 1.2x unbound's; warm lookups >= 1M/s per core")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
