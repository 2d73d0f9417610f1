#!/bin/bash
# scenario-b-udp-flood.sh - scenario (b) with kernel pktgen, as far as it can go: a UDP flood at
# the generator's top rate while the SMTP load of scenario (a) runs.
#
# WHAT IT GENERATES
#   udp-flood.sh with these defaults (each still overridable by option or environment):
#   unpaced (RATE=0), 60 s, random IPv4 sources in 198.18.0.0/15, UDP to port 25, threads as in
#   udp-flood.sh (THREADS/CPUS, default 1). Run mxedge-loadgen against the gateway from another
#   host or another port at the same time, e.g.
#     mxedge-loadgen --server 192.0.2.25:25 --rate 50 --duration 60 --json smtp.json
#   and compare its report with a run without the flood (tests/load/pktgen/README.md).
#
# WHAT IT CANNOT DO
#   Scenario (b) is a SYN flood; kernel pktgen sends no TCP. Every frame of this flood is
#   pass_not_smtp for the gateway's fast path (not TCP), so neither the SYN rate limit nor the
#   steering of SYNs is exercised. Use mxedge-pktgen (--mix syn) or Pktgen-DPDK
#   (../pktgen-dpdk/syn-flood-v4.pkt) for the SYN flood itself. What this run shows: the cost of
#   passing line-rate non-SMTP traffic, and whether SMTP sessions survive a saturated NIC.
#
# USAGE
#   scenario-b-udp-flood.sh --dev IFACE --dst IPv4[,IPv6] --dst-mac MAC [udp-flood.sh options]
#   On a NIC, add e.g. --threads 4 --clone-skb 100 to get near line rate (see udp-flood.sh about
#   what --clone-skb does to the per-packet sources). On veth keep --clone-skb 0 (the default).
set -euo pipefail
export RATE=${RATE:-0} DURATION=${DURATION:-60} SOURCES=${SOURCES:-198.18.0.0/15} DPORT=${DPORT:-25}
exec "$(dirname "${BASH_SOURCE[0]}")/udp-flood.sh" "$@"
