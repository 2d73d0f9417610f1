#!/bin/bash
# run-pktgen.sh - start Pktgen-DPDK with one of this directory's command files, with the lab's
# addresses filled in; or check those files against the command grammar they were written for.
#
# WHAT IT DOES
#   Copies FILE (a .pkt, or timed-run.lua plus the .pkt named by PKT) to a temporary directory,
#   replacing the placeholder values the files use:
#     00:00:5e:00:53:25  -> DST_MAC   the gateway port's MAC (required)
#     00:00:5e:00:53:01  -> SRC_MAC   the generator port's MAC (sequence frames; optional)
#     192.0.2.25         -> DST_IP    the gateway's IPv4 address (optional)
#     2001:db8::25       -> DST_IP6   the gateway's IPv6 address (optional)
#   then runs (printed first):
#     $PKTGEN -l $LCORES -n $MEMCH -a $PCI $EAL_EXTRA -- -P -T -m "$MAP" -f RENDERED
#   -l 0-2 and -m "[1:2].0": lcore 0 runs Pktgen's console and display, lcore 1 receives and
#   lcore 2 transmits on port 0 (Pktgen's "-m [rx:tx].port" matrix). -P: promiscuous, -T: colour.
#   -a is DPDK's allow-list option since DPDK 20.11 (before: -w).
#
# USAGE
#   DST_MAC=3c:fd:fe:00:00:01 PCI=0000:03:00.0 ./run-pktgen.sh syn-flood-v4.pkt
#   DST_MAC=... PCI=... PKT=blocklist-flood-v4.pkt DURATION=30 QUIT=1 ./run-pktgen.sh timed-run.lua
#   ./run-pktgen.sh --print FILE      print the command line and the rendered file, run nothing
#   ./run-pktgen.sh --check [FILE...] check .pkt files (default: all here) against the grammar
#   Environment: PKTGEN (default pktgen), PCI (required to run), LCORES (0-2), MEMCH (4),
#   MAP ("[1:2].0"), EAL_EXTRA (more EAL options, e.g. "--file-prefix pg"), and for timed-run.lua
#   PKT, DURATION, PORT, RESULT, QUIT (see timed-run.lua).
#
#   Pktgen needs hugepages and the port bound to vfio-pci, like mxedge's DPDK fast path
#   (dataplane/dpdk/README.md, "On real hardware"), on the generator host.
#
# WHAT --check CHECKS
#   Each non-comment line must match one of the command forms below, transcribed from the cli_map
#   tables of app/cli-functions.c (Pktgen-DPDK 23.x, 2023 revision) plus the TCP flag form of
#   Pktgen-DPDK 24.10.2 (pull request #294), with addresses and numbers of the right shape. It
#   catches typos and argument-order mistakes in these files; it does not prove that a given
#   Pktgen version accepts them (see the notes in the .pkt files).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() {
	printf '%s: error: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

# --- the grammar ---------------------------------------------------------------------------------
P='(all|[0-9]+([-,][0-9]+)*)'                  # portlist
N='[0-9]+'
MAC='([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}'
IP4='([0-9]{1,3}\.){3}[0-9]{1,3}'
IP6='[0-9a-fA-F:]*:[0-9a-fA-F:.]*'
SMMI='(start|min|max|inc|minimum|maximum|increment)'
FLAGS='(cwr|ece|urg|ack|psh|rst|syn|fin|clr)(,(cwr|ece|urg|ack|psh|rst|syn|fin|clr))*'
forms=(
	"^(start|stop) $P$"
	"^set $P (count|size|rate|burst|txburst|rxburst|sport|dport|ttl|seq_cnt|seqcnt|seqCnt|prime) [0-9.]+$"
	"^set $P type (ipv4|ipv6)$"
	"^set $P proto (udp|tcp|icmp)$"
	"^set $P (src|dst) mac $MAC$"
	"^set $P dst ip ($IP4|$IP6)$"
	"^set $P src ip ($IP4|$IP6)/$N$"
	"^set $P tcp (flag|flags) $FLAGS$"
	"^range $P type (ipv4|ipv6)$"
	"^range $P proto (tcp|udp)$"
	"^range $P (src|dst) mac $SMMI $MAC$"
	"^range $P (src|dst) ip $SMMI ($IP4|$IP6)$"
	"^range $P (src|dst) port $SMMI $N$"
	"^range $P (size|ttl) $SMMI $N$"
	"^range $P tcp (seq|ack) $SMMI $N$"
	"^range $P tcp (flag|flags) $FLAGS$"
	"^(enable|disable) $P (range|process|vlan|latency|random)$"
	"^(seq|sequence) $N $P dst $MAC src $MAC dst $IP4 src $IP4/$N sport $N dport $N ipv4 (udp|tcp|icmp) vlan $N size $N$"
	"^page (main|range|seq|sequence|stats|xstats|rate|log|cpu|config|cfg|[0-9])$"
)

check_file() {
	local file=$1 line n=0 bad=0 form ok
	while IFS= read -r line || [[ -n "$line" ]]; do
		n=$((n + 1))
		line=${line%%#*}
		line=$(printf '%s' "$line" | sed -e 's/[[:space:]]*$//' -e 's/^[[:space:]]*//')
		[[ -n "$line" ]] || continue
		ok=0
		for form in "${forms[@]}"; do
			if [[ "$line" =~ $form ]]; then
				ok=1
				break
			fi
		done
		if ((ok == 0)); then
			printf '%s:%d: not a known command form: %s\n' "$file" "$n" "$line" >&2
			bad=$((bad + 1))
		fi
	done <"$file"
	return $((bad > 0))
}

if [[ "${1:-}" == --check ]]; then
	shift
	files=("$@")
	if ((${#files[@]} == 0)); then
		files=("$here"/*.pkt)
	fi
	status=0
	for f in "${files[@]}"; do
		if check_file "$f"; then
			printf '%s: ok\n' "${f##*/}"
		else
			status=1
		fi
	done
	if command -v luac >/dev/null 2>&1; then
		luac -p "$here/timed-run.lua" && printf 'timed-run.lua: ok (luac -p)\n'
	else
		printf 'timed-run.lua: not checked (no luac)\n'
	fi
	exit $status
fi

# --- render and run ------------------------------------------------------------------------------
print_only=0
if [[ "${1:-}" == --print ]]; then
	print_only=1
	shift
fi
[[ $# -eq 1 ]] || {
	sed -n '/^# USAGE/,/^# WHAT --check/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}
file=$1
[[ -e "$file" ]] || file=$here/$1
[[ -e "$file" ]] || die "no file '$1'"

DST_MAC=${DST_MAC:-}
[[ "$DST_MAC" =~ ^$MAC$ ]] || die "DST_MAC must be the gateway port's MAC (aa:bb:cc:dd:ee:ff), got '$DST_MAC'"
[[ -z "${SRC_MAC:-}" || "$SRC_MAC" =~ ^$MAC$ ]] || die "bad SRC_MAC '$SRC_MAC'"
[[ -z "${DST_IP:-}" || "$DST_IP" =~ ^$IP4$ ]] || die "bad DST_IP '$DST_IP'"
[[ -z "${DST_IP6:-}" || "$DST_IP6" =~ ^$IP6$ ]] || die "bad DST_IP6 '$DST_IP6'"

render() {
	local src=$1 dst=$2
	local -a expr=(-e "s/00:00:5e:00:53:25/$DST_MAC/g")
	[[ -z "${SRC_MAC:-}" ]] || expr+=(-e "s/00:00:5e:00:53:01/$SRC_MAC/g")
	[[ -z "${DST_IP:-}" ]] || expr+=(-e "s/\\b192\\.0\\.2\\.25\\b/$DST_IP/g")
	[[ -z "${DST_IP6:-}" ]] || expr+=(-e "s/\\b2001:db8::25\\b/$DST_IP6/g")
	sed "${expr[@]}" "$src" >"$dst"
}

out=$(mktemp -d /tmp/mxedge-pktgen-dpdk.XXXXXX)
rendered=$out/${file##*/}
render "$file" "$rendered"
if [[ "$file" == *.lua ]]; then
	pkt=${PKT:-syn-flood-v4.pkt}
	[[ -e "$pkt" ]] || pkt=$here/$pkt
	[[ -e "$pkt" ]] || die "PKT: no file '${PKT:-syn-flood-v4.pkt}'"
	render "$pkt" "$out/${pkt##*/}"
	export PKTGEN_PKT=$out/${pkt##*/}
elif [[ "$file" != *.pkt ]]; then
	die "'$file' is neither a .pkt nor a .lua file"
fi

PKTGEN=${PKTGEN:-pktgen}
LCORES=${LCORES:-0-2}
MEMCH=${MEMCH:-4}
MAP=${MAP:-[1:2].0}
PCI=${PCI:-}
read -r -a eal_extra <<<"${EAL_EXTRA:-}"
cmd=("$PKTGEN" -l "$LCORES" -n "$MEMCH" -a "${PCI:-PCI-ADDRESS}" "${eal_extra[@]}" -- -P -T -m "$MAP" -f "$rendered")

printf 'rendered into %s\n' "$out" >&2
printf '%q ' "${cmd[@]}" >&2
printf '\n' >&2
if ((print_only)); then
	cat "$rendered"
	[[ -z "${PKTGEN_PKT:-}" ]] || cat "$PKTGEN_PKT"
	exit 0
fi
[[ -n "$PCI" ]] || die "PCI must name the generator's DPDK port (e.g. 0000:03:00.0)"
command -v "$PKTGEN" >/dev/null 2>&1 || die "'$PKTGEN' not found (Pktgen-DPDK is not packaged in Debian 12: build it from https://github.com/pktgen/Pktgen-DPDK and set PKTGEN)"
exec "${cmd[@]}"
