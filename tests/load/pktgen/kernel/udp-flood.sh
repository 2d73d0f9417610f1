#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# udp-flood.sh - a UDP flood to the gateway with the kernel's pktgen (/proc/net/pktgen).
#
# WHAT IT GENERATES
#   UDP datagrams (IPv4, IPv6 or both) from --dev to one destination address and UDP port, from
#   random or sequential IPv4 sources in a range (or one fixed source), random UDP source ports,
#   with correct IPv4 header checksums and (flag UDPCSUM, the default here) UDP checksums; at a
#   fixed rate or as fast as the threads go, for a duration or a count. One pktgen device per
#   thread and family ("DEV@v4c<cpu>", "DEV@v6c<cpu>"), rate and count split between them.
#
#   For the gateway's fast path (bpf/classifier.h) every one of these frames is not TCP, so it is
#   XDP_PASS, counted pass_not_smtp, whatever its source and port: UDP to port 25 is not SMTP,
#   and the blocklist applies only to TCP to the SMTP ports. What this measures on real hardware:
#   the cost of the pass_not_smtp path at line rate, and that legitimate SMTP (mxedge-loadgen,
#   from another host or port) keeps flowing while the gateway's NIC is saturated.
#
# WHAT IT CANNOT DO
#   Kernel pktgen makes UDP only (IPv4/IPv6, optionally in MPLS/VLAN/IPsec): no TCP, so no SYN
#   flood, no SMTP, no blocklisted-SMTP flood, no fragments, no malformed frames. It is no
#   substitute for mxedge-pktgen or Pktgen-DPDK in the SYN-flood scenarios. IPv6 sources: one
#   fixed address only (src6; the src6_min/src6_max range was merged in 2020 and reverted, so
#   Linux has none), random sources are IPv4 only.
#
# USAGE
#   udp-flood.sh --dev IFACE --dst IPv4[,IPv6] --dst-mac MAC [options]
#     --src-mac MAC        source MAC (default: the device's own)
#     --family 4|6|both    address families (default 4)
#     --sources SPEC       IPv4 sources (default 198.18.0.0/15):
#                            A.B.C.D/LEN   random addresses inside the prefix
#                            random        random in 128.0.0.0/2, like mxedge-pktgen's "random"
#                            A.B.C.D or fixed:A.B.C.D   one fixed source
#                          a ",ADDR6" part sets the fixed IPv6 source (default: the device's own
#                          global address, which pktgen picks)
#     --seq                walk the IPv4 range in order instead of drawing at random
#     --dport N            UDP destination port (default 25)
#     --rate PPS           packets per second in all (default 100000; 0: as fast as possible)
#     --count N            packets in all (default 0: no limit)
#     --duration S         seconds (default 10; 0: until --count is reached or Ctrl-C)
#     --threads N          pktgen threads, one per CPU (default 1)
#     --cpus LIST          CPUs of those threads, e.g. 2,3 or 2-3 (default: the first N)
#     --size BYTES         pkt_size: frame length without FCS (default 60, a 64-byte frame on
#                          the wire; pktgen grows it when its own 16-byte header does not fit)
#     --clone-skb N        send each skb N+1 times (default 0). Must be 0 on veth (the kernel
#                          refuses it: no IFF_TX_SKB_SHARING). On a NIC raising it (e.g. 100)
#                          takes allocation off the critical path and gets closer to line rate,
#                          but a cloned packet is sent unchanged: sources and ports then change
#                          only every N+1 packets.
#     --burst N            packets per xmit_more batch (default 1; >1 refused on veth, like
#                          --clone-skb)
#     --no-udp-csum        leave the UDP checksum 0 (IPv4 only; an IPv6 UDP datagram without a
#                          checksum is discarded by the receiver's stack)
#     --dry-run            print the /proc/net/pktgen writes instead of doing them
#     --quiet              no progress messages
#   Every option has an environment variable, used when the option is not given:
#     DEV DST_IP DST_IP6 DST_MAC SRC_MAC FAMILY SOURCES SRC_MIN SRC_MAX SRC_RND(1/0) SRC6 DPORT
#     RATE COUNT DURATION THREADS CPUS PKT_SIZE CLONE_SKB BURST UDPCSUM(1/0) PG_DRY_RUN QUIET
#   SRC_MIN/SRC_MAX (an IPv4 range) replace --sources; SRC_RND=0 walks it in order.
#
#   Example (generator host, NIC enp1s0f0 cabled to the gateway's XDP port):
#     ./udp-flood.sh --dev enp1s0f0 --dst 192.0.2.25 --dst-mac 3c:fd:fe:00:00:01 \
#         --rate 0 --threads 4 --clone-skb 100 --duration 60
#   Output: each device's pkts-sofar/errors and "Result:" lines from /proc/net/pktgen/<dev>
#   (pps, Mb/s, errors), then the totals.
#
# SECURITY
#   Root. Sends forged source addresses: a lab link only. See common.sh about rem_device_all.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"

usage() {
	sed -n '/^# USAGE/,/^# SECURITY/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

DEV=${DEV:-}
DST_IP=${DST_IP:-}
DST_IP6=${DST_IP6:-}
DST_MAC=${DST_MAC:-}
SRC_MAC=${SRC_MAC:-}
FAMILY=${FAMILY:-4}
SOURCES=${SOURCES:-198.18.0.0/15}
SRC_MIN=${SRC_MIN:-}
SRC_MAX=${SRC_MAX:-}
SRC_RND=${SRC_RND:-1}
SRC6=${SRC6:-}
DPORT=${DPORT:-25}
RATE=${RATE:-100000}
COUNT=${COUNT:-0}
DURATION=${DURATION:-10}
THREADS=${THREADS:-1}
CPUS=${CPUS:-}
PKT_SIZE=${PKT_SIZE:-60}
CLONE_SKB=${CLONE_SKB:-0}
BURST=${BURST:-1}
UDPCSUM=${UDPCSUM:-1}
UDP_SRC_MIN=${UDP_SRC_MIN:-1024}
UDP_SRC_MAX=${UDP_SRC_MAX:-65535}

need_arg() { [[ $# -ge 2 && -n "$2" ]] || pg_die "$1 needs a value"; }
sources_given=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--dev) need_arg "$@"; DEV=$2; shift 2 ;;
	--dst)
		need_arg "$@"
		IFS=, read -r -a dsts <<<"$2"
		for a in "${dsts[@]}"; do
			if [[ "$a" == *:* ]]; then DST_IP6=$a; else DST_IP=$a; fi
		done
		shift 2
		;;
	--dst-mac) need_arg "$@"; DST_MAC=$2; shift 2 ;;
	--src-mac) need_arg "$@"; SRC_MAC=$2; shift 2 ;;
	--family) need_arg "$@"; FAMILY=$2; shift 2 ;;
	--sources) need_arg "$@"; SOURCES=$2; sources_given=1; shift 2 ;;
	--seq) SRC_RND=0; shift ;;
	--dport) need_arg "$@"; DPORT=$2; shift 2 ;;
	--rate) need_arg "$@"; RATE=$2; shift 2 ;;
	--count) need_arg "$@"; COUNT=$2; shift 2 ;;
	--duration) need_arg "$@"; DURATION=$2; shift 2 ;;
	--threads) need_arg "$@"; THREADS=$2; shift 2 ;;
	--cpus) need_arg "$@"; CPUS=$2; shift 2 ;;
	--size) need_arg "$@"; PKT_SIZE=$2; shift 2 ;;
	--clone-skb) need_arg "$@"; CLONE_SKB=$2; shift 2 ;;
	--burst) need_arg "$@"; BURST=$2; shift 2 ;;
	--no-udp-csum) UDPCSUM=0; shift ;;
	--dry-run) PG_DRY_RUN=1; shift ;;
	--quiet | -q) QUIET=1; shift ;;
	-h | --help) usage ;;
	*) printf '%s: unknown option %s\n' "${0##*/}" "$1" >&2; usage ;;
	esac
done

# --- checks -------------------------------------------------------------------------------------
for v in RATE COUNT DURATION THREADS PKT_SIZE CLONE_SKB BURST DPORT UDP_SRC_MIN UDP_SRC_MAX; do
	[[ "${!v}" =~ ^[0-9]+$ ]] || pg_die "$v must be a non-negative integer, not '${!v}'"
done
((THREADS >= 1)) || pg_die "--threads must be at least 1"
((DPORT >= 1 && DPORT <= 65535)) || pg_die "--dport must be 1-65535"
((COUNT > 0 || DURATION > 0)) || pg_die "give --count or --duration (both 0 would run until Ctrl-C)"
[[ "$DST_MAC" =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] ||
	pg_die "--dst-mac is required (the gateway port's MAC, aa:bb:cc:dd:ee:ff), got '$DST_MAC'"
[[ -z "$SRC_MAC" || "$SRC_MAC" =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || pg_die "bad --src-mac '$SRC_MAC'"
case $FAMILY in
4) families=(4) ;;
6) families=(6) ;;
both) families=(4 6) ;;
*) pg_die "--family must be 4, 6 or both" ;;
esac

# Sources. SRC_MIN/SRC_MAX from the environment win unless --sources was given.
spec4=${SOURCES%%,*}
[[ "$SOURCES" == *,* ]] && SRC6=${SOURCES#*,}
if [[ $sources_given == 1 || -z "$SRC_MIN" || -z "$SRC_MAX" ]]; then
	case $spec4 in
	random) read -r SRC_MIN SRC_MAX < <(pg_cidr4_range 128.0.0.0/2) ;;
	fixed:*) SRC_MIN=${spec4#fixed:} SRC_MAX=${spec4#fixed:} ;;
	*/*) read -r SRC_MIN SRC_MAX < <(pg_cidr4_range "$spec4") ;;
	*:*) pg_die "--sources: give the IPv4 part first (e.g. 198.18.0.0/15,$spec4)" ;;
	*) SRC_MIN=$spec4 SRC_MAX=$spec4 ;;
	esac
fi
lo=$(pg_ipv4_to_int "$SRC_MIN")
hi=$(pg_ipv4_to_int "$SRC_MAX")
((lo <= hi)) || pg_die "source range $SRC_MIN-$SRC_MAX is empty"
if [[ -n "$SRC6" && "$SRC6" != *:* ]]; then
	pg_die "the IPv6 source '$SRC6' is not an IPv6 address (kernel pktgen takes one fixed IPv6 source)"
fi
if [[ "$SRC6" == */* ]]; then
	pg_die "kernel pktgen cannot draw IPv6 sources from a prefix ('$SRC6'): give one address"
fi
for f in "${families[@]}"; do
	if [[ $f == 4 && -z "$DST_IP" ]]; then pg_die "--family includes IPv4 but --dst has no IPv4 address"; fi
	if [[ $f == 6 && -z "$DST_IP6" ]]; then pg_die "--family includes IPv6 but --dst has no IPv6 address"; fi
done
[[ -z "$DST_IP" ]] || pg_ipv4_to_int "$DST_IP" >/dev/null

[[ "$PG_DRY_RUN" == 1 ]] || pg_require_root
pg_load_module
pg_check_dev "$DEV"
# No backing device (veth, dummy, bridge...): veth refuses clone_skb > 0 and burst > 1.
if [[ "$PG_DRY_RUN" != 1 && ! -e /sys/class/net/$DEV/device ]] && ((CLONE_SKB > 0 || BURST > 1)); then
	pg_info "warning: $DEV has no backing device (veth?); pktgen may refuse clone_skb/burst"
fi

mapfile -t cpus < <(pg_pick_cpus "$THREADS" "$CPUS")
pgdevs=()
for cpu in "${cpus[@]}"; do
	for f in "${families[@]}"; do
		pgdevs+=("$DEV@v${f}c$cpu")
	done
done
ndev=${#pgdevs[@]}
if ((RATE > 0)); then
	per_rate=$((RATE / ndev))
	((per_rate > 0)) || pg_die "--rate $RATE is less than one packet per second per device ($ndev devices)"
fi
per_count=$((COUNT / ndev))
extra_count=$((COUNT % ndev))
if ((COUNT > 0 && per_count == 0)); then
	pg_die "--count $COUNT is smaller than the number of pktgen devices ($ndev)"
fi

# --- configure ----------------------------------------------------------------------------------
pg_cleanup_register "${cpus[@]}"
for cpu in "${cpus[@]}"; do
	pg_thread "$cpu" rem_device_all
done

i=0
for cpu in "${cpus[@]}"; do
	for f in "${families[@]}"; do
		pgdev=$DEV@v${f}c$cpu
		pg_thread "$cpu" "add_device $pgdev"
		n=$per_count
		((i == 0)) && n=$((per_count + extra_count))
		pg_set "$pgdev" "count $n"
		pg_set "$pgdev" "clone_skb $CLONE_SKB"
		((BURST == 1)) || pg_set "$pgdev" "burst $BURST"
		pg_set "$pgdev" "pkt_size $PKT_SIZE"
		if ((RATE > 0)); then
			pg_set "$pgdev" "ratep $per_rate"
		else
			pg_set "$pgdev" "delay 0"
		fi
		pg_set "$pgdev" "dst_mac $DST_MAC"
		[[ -z "$SRC_MAC" ]] || pg_set "$pgdev" "src_mac $SRC_MAC"
		if [[ $f == 4 ]]; then
			pg_set "$pgdev" "dst_min $DST_IP"
			pg_set "$pgdev" "dst_max $DST_IP"
			pg_set "$pgdev" "src_min $SRC_MIN"
			pg_set "$pgdev" "src_max $SRC_MAX"
			if [[ "$SRC_RND" == 1 && "$SRC_MIN" != "$SRC_MAX" ]]; then
				pg_set "$pgdev" "flag IPSRC_RND"
			fi
		else
			pg_set "$pgdev" "dst6 $DST_IP6"
			[[ -z "$SRC6" ]] || pg_set "$pgdev" "src6 $SRC6"
		fi
		pg_set "$pgdev" "udp_dst_min $DPORT"
		pg_set "$pgdev" "udp_dst_max $DPORT"
		pg_set "$pgdev" "udp_src_min $UDP_SRC_MIN"
		pg_set "$pgdev" "udp_src_max $UDP_SRC_MAX"
		pg_set "$pgdev" "flag UDPSRC_RND"
		[[ "$UDPCSUM" != 1 ]] || pg_set "$pgdev" "flag UDPCSUM"
		pg_set "$pgdev" "flag NO_TIMESTAMP"
		# Several threads on a multi-queue NIC: each on the TX queue of its CPU (pktgen takes the
		# queue number modulo the device's queue count, so one-queue devices are fine).
		((THREADS == 1)) || pg_set "$pgdev" "flag QUEUE_MAP_CPU"
		i=$((i + 1))
	done
done

# --- run ----------------------------------------------------------------------------------------
pg_info "sending: ${pgdevs[*]}; UDP to port $DPORT of ${DST_IP}${DST_IP6:+ $DST_IP6}" \
	"from $SRC_MIN-$SRC_MAX${SRC6:+ / $SRC6}; rate ${RATE} pps (0: unpaced), count $COUNT, duration ${DURATION}s"
pg_run "$DURATION"
pg_report "${pgdevs[@]}"
