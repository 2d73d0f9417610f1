#!/bin/bash
# scenario-c-blocklisted-udp.sh - a control for scenario (c), not scenario (c) itself: UDP from
# blocklisted sources, which the gateway must NOT drop.
#
# WHAT IT GENERATES
#   udp-flood.sh with these defaults: sources drawn at random from 198.51.100.0/24 (the blocklist
#   of policy/examples/mxedge.yaml; set SOURCES or --sources to the prefix your gateway blocks),
#   UDP to port 25, 100000 pps, 30 s. With --family 6 (or both) the IPv6 source is the fixed
#   2001:db8:bad::1, inside the example's blocked 2001:db8:bad::/48.
#
#   Expected on the gateway: every frame counted pass_not_smtp, none drop_blocklist. The blocklist
#   applies only to TCP to a configured SMTP port (bpf/classifier.h); a UDP datagram to port 25
#   from a blocked source is not SMTP and goes to the kernel untouched. A drop_blocklist count
#   rising during this run is a bug.
#
# WHAT IT CANNOT DO
#   Scenario (c) proper, a flood from blocklisted sources that the fast path drops
#   (drop_blocklist), needs TCP to the SMTP port: mxedge-pktgen --sources 198.51.100.0/24, or
#   Pktgen-DPDK ../pktgen-dpdk/blocklist-flood-v4.pkt. Kernel pktgen sends UDP only, and one fixed
#   IPv6 source at most.
#
# USAGE
#   scenario-c-blocklisted-udp.sh --dev IFACE --dst IPv4[,IPv6] --dst-mac MAC [udp-flood.sh options]
set -euo pipefail
export SOURCES=${SOURCES:-198.51.100.0/24,2001:db8:bad::1} RATE=${RATE:-100000} DURATION=${DURATION:-30} \
	DPORT=${DPORT:-25}
exec "$(dirname "${BASH_SOURCE[0]}")/udp-flood.sh" "$@"
