# shellcheck shell=bash
# common.sh - shared functions of the kernel pktgen scripts (sourced, not run).
#
# DESCRIPTION
#   Helpers around the kernel's packet generator, /proc/net/pktgen (Documentation/networking/
#   pktgen.rst): one control file `pgctrl` (start, stop, reset), one file per generator thread
#   `kpktgend_<cpu>` (add_device, rem_device_all) and one file per device added to a thread
#   (count, pkt_size, ratep, src_min, flag ...). Every write to a thread or device file leaves
#   a "Result: OK: ..." or "Result: <error>" line in that file; pg_thread and pg_set check it, so a
#   parameter the running kernel does not know stops the script instead of being ignored.
#
#   Written for these scripts, not copied from the kernel's samples/pktgen/functions.sh; the
#   /proc interface is the same.
#
#   PG_DRY_RUN=1 makes pg_thread, pg_set, pg_ctrl and pg_run print what they would write instead
#   of writing it, and pg_load_module and pg_pick_cpus stop looking at the system:
#   the scripts' logic can be checked on a machine without pktgen (e.g. this project's build
#   machines).
#
#   Functions:
#     pg_die MSG...              print to stderr, exit 1
#     pg_info MSG...             print to stderr unless QUIET=1
#     pg_require_root            exit unless root
#     pg_load_module             modprobe pktgen, exit with an explanation when it is missing
#     pg_check_dev DEV           exit unless DEV exists (in this network namespace) and is up
#     pg_thread CPU CMD          write CMD to kpktgend_CPU and check the result
#     pg_set PGDEV CMD           write CMD to /proc/net/pktgen/PGDEV and check the result
#     pg_ctrl CMD                write CMD (start, stop, reset) to pgctrl
#     pg_pick_cpus N [LIST]      print N CPUs that have a pktgen thread (LIST: "0,2,4" or "0-3")
#     pg_ipv4_to_int ADDR        dotted quad -> integer;  pg_int_to_ipv4 N: the reverse
#     pg_cidr4_range CIDR        print "MIN MAX" of an IPv4 prefix (network and broadcast excluded
#                                when the prefix is shorter than /31)
#     pg_cleanup_register CPU... threads to clear (rem_device_all) and pktgen to stop on exit
#     pg_run DURATION            start, stop after DURATION seconds (0: when the counts are done
#                                or on Ctrl-C), wait for the threads
#     pg_report PGDEV...         print each device's result lines and the totals
#
# SECURITY
#   Root only. pktgen sends forged source addresses by design: use it on a lab link, never on a
#   network you share. rem_device_all clears every device on the threads these scripts use,
#   including devices some other pktgen user added to them.

PG_PROC=${PG_PROC:-/proc/net/pktgen}
QUIET=${QUIET:-0}
PG_DRY_RUN=${PG_DRY_RUN:-0}

pg_die() {
	printf '%s: error: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

pg_info() {
	[[ "$QUIET" == 1 ]] || printf '%s: %s\n' "${0##*/}" "$*" >&2
}

pg_require_root() {
	[[ $EUID -eq 0 ]] || pg_die "needs root (writes /proc/net/pktgen)"
}

pg_load_module() {
	[[ "$PG_DRY_RUN" == 1 ]] && return 0
	if [[ ! -e $PG_PROC/pgctrl ]]; then
		if ! modprobe pktgen 2>/dev/null; then
			pg_die "no kernel pktgen: 'modprobe pktgen' failed on $(uname -r)." \
				"The kernel needs CONFIG_NET_PKTGEN (Debian's kernels ship it as pktgen.ko;" \
				"this project's build machines do not have it: run inside the appliance image" \
				"or on a generator host with a Debian kernel)."
		fi
	fi
	[[ -e $PG_PROC/pgctrl ]] ||
		pg_die "pktgen is loaded but $PG_PROC/pgctrl is missing (is /proc mounted for this network namespace?)"
}

pg_check_dev() {
	local dev=$1 flags
	[[ -n "$dev" ]] || pg_die "no device given (--dev or DEV=)"
	[[ -e /sys/class/net/$dev ]] ||
		pg_die "device '$dev' does not exist in this network namespace (ip link show)"
	flags=$(<"/sys/class/net/$dev/flags")
	(((flags & 0x1) != 0)) || pg_die "device '$dev' is down (ip link set $dev up)"
}

# Writes one command to a pktgen file and checks the "Result:" line it leaves.
pg__write() {
	local file=$1 cmd=$2 result
	if [[ "$PG_DRY_RUN" == 1 ]]; then
		printf 'echo "%s" > %s\n' "$cmd" "$file"
		return 0
	fi
	[[ -e "$file" ]] || pg_die "$file does not exist"
	if ! printf '%s\n' "$cmd" >"$file" 2>/dev/null; then
		result=$(grep -m1 '^Result:' "$file" 2>/dev/null || true)
		pg_die "pktgen refused '$cmd' (${file##*/}): ${result:-write failed}"
	fi
	result=$(grep -m1 '^Result:' "$file" 2>/dev/null || true)
	[[ "$result" == "Result: OK:"* ]] || pg_die "pktgen refused '$cmd' (${file##*/}): ${result:-no result line}"
}

pg_thread() {
	local cpu=$1
	shift
	pg__write "$PG_PROC/kpktgend_$cpu" "$*"
}

pg_set() {
	local pgdev=$1
	shift
	pg__write "$PG_PROC/$pgdev" "$*"
}

# pgctrl keeps no result line; a failed write is the only error it reports.
pg_ctrl() {
	if [[ "$PG_DRY_RUN" == 1 ]]; then
		printf 'echo "%s" > %s\n' "$1" "$PG_PROC/pgctrl"
		return 0
	fi
	printf '%s\n' "$1" >"$PG_PROC/pgctrl" 2>/dev/null || pg_die "pktgen refused '$1' on pgctrl"
}

# Expands "0,2,5-7" into one CPU number per line.
pg__expand_list() {
	local part lo hi
	local IFS=,
	for part in $1; do
		if [[ "$part" =~ ^([0-9]+)-([0-9]+)$ ]]; then
			lo=${BASH_REMATCH[1]} hi=${BASH_REMATCH[2]}
			((lo <= hi)) || pg_die "bad CPU range '$part'"
			seq "$lo" "$hi"
		elif [[ "$part" =~ ^[0-9]+$ ]]; then
			echo "$part"
		else
			pg_die "bad CPU list '$1' (e.g. 0,2 or 1-3)"
		fi
	done
}

pg_pick_cpus() {
	local want=$1 list=${2:-} cpu f
	local -a picked=()
	if [[ "$PG_DRY_RUN" == 1 ]]; then
		if [[ -n "$list" ]]; then
			pg__expand_list "$list"
		else
			seq 0 $((want - 1))
		fi
		return 0
	fi
	if [[ -n "$list" ]]; then
		while read -r cpu; do
			[[ -e $PG_PROC/kpktgend_$cpu ]] || pg_die "CPU $cpu has no pktgen thread (kpktgend_$cpu; offline CPU?)"
			picked+=("$cpu")
		done < <(pg__expand_list "$list")
		((${#picked[@]} == want)) || pg_die "--cpus lists ${#picked[@]} CPUs but --threads is $want"
	else
		for f in "$PG_PROC"/kpktgend_*; do
			[[ -e "$f" ]] || continue
			picked+=("${f##*_}")
		done
		mapfile -t picked < <(printf '%s\n' "${picked[@]}" | sort -n)
		((${#picked[@]} >= want)) || pg_die "only ${#picked[@]} pktgen threads, --threads is $want"
		picked=("${picked[@]:0:want}")
	fi
	printf '%s\n' "${picked[@]}"
}

pg_ipv4_to_int() {
	local a b c d x
	[[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || pg_die "'$1' is not an IPv4 address"
	IFS=. read -r a b c d <<<"$1"
	for x in "$a" "$b" "$c" "$d"; do
		((10#$x <= 255)) || pg_die "'$1' is not an IPv4 address"
	done
	echo $(((10#$a << 24) | (10#$b << 16) | (10#$c << 8) | 10#$d))
}

pg_int_to_ipv4() {
	local n=$1
	echo "$(((n >> 24) & 255)).$(((n >> 16) & 255)).$(((n >> 8) & 255)).$((n & 255))"
}

pg_cidr4_range() {
	local addr=${1%/*} len=${1#*/} base mask lo hi
	if [[ "$1" != */* || ! "$len" =~ ^[0-9]+$ ]] || ((len > 32)); then
		pg_die "'$1' is not an IPv4 prefix (A.B.C.D/LEN)"
	fi
	base=$(pg_ipv4_to_int "$addr")
	mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
	lo=$((base & mask))
	hi=$((lo | (~mask & 0xffffffff)))
	if ((len < 31)); then
		lo=$((lo + 1))
		hi=$((hi - 1))
	fi
	echo "$(pg_int_to_ipv4 "$lo") $(pg_int_to_ipv4 "$hi")"
}

PG_CLEANUP_CPUS=()
PG_RUNNING=0
PG_START_PID=

pg__cleanup() {
	local cpu
	trap - EXIT INT TERM
	[[ "$PG_DRY_RUN" == 1 ]] && return 0
	if [[ "$PG_RUNNING" == 1 ]]; then
		printf 'stop\n' >"$PG_PROC/pgctrl" 2>/dev/null || true
		if [[ -n "$PG_START_PID" ]]; then
			wait "$PG_START_PID" 2>/dev/null || true
		fi
	fi
	for cpu in "${PG_CLEANUP_CPUS[@]}"; do
		printf 'rem_device_all\n' >"$PG_PROC/kpktgend_$cpu" 2>/dev/null || true
	done
}

pg_cleanup_register() {
	PG_CLEANUP_CPUS+=("$@")
	trap pg__cleanup EXIT
	trap 'pg__cleanup; exit 130' INT
	trap 'pg__cleanup; exit 143' TERM
}

# Writing "start" to pgctrl blocks until every running device has sent its count, or until
# "stop" is written or the writer gets a signal. It runs in the background so that DURATION can
# stop it.
pg_run() {
	local duration=${1:-0} waited=0
	if [[ "$PG_DRY_RUN" == 1 ]]; then
		printf 'echo start > %s   # blocks; stopped after %s s (0: runs to its counts)\n' \
			"$PG_PROC/pgctrl" "$duration"
		return 0
	fi
	PG_RUNNING=1
	(printf 'start\n' >"$PG_PROC/pgctrl") &
	PG_START_PID=$!
	if ((duration > 0)); then
		while ((waited < duration)) && kill -0 "$PG_START_PID" 2>/dev/null; do
			sleep 1
			waited=$((waited + 1))
		done
		if kill -0 "$PG_START_PID" 2>/dev/null; then
			pg_ctrl stop
		fi
	fi
	wait "$PG_START_PID" || true
	PG_START_PID=
	PG_RUNNING=0
}

# The lines of /proc/net/pktgen/<dev> worth keeping after a run, e.g.
#   pkts-sofar: 1000000  errors: 0
#   Result: OK: 1003225(c1002890+d334) usec, 1000000 (60byte,0frags)
#     996785pps 478Mb/sec (478456800bps) errors: 0
pg_report() {
	local pgdev sent errors total_sent=0 total_errors=0
	[[ "$PG_DRY_RUN" == 1 ]] && return 0
	for pgdev in "$@"; do
		printf '%s:\n' "$pgdev"
		grep -E 'pkts-sofar|^Result:' -A1 "$PG_PROC/$pgdev" | grep -v -- '^--$' | grep -Ev 'started:|^ *seq_num' | sed 's/^ */  /'
		sent=$(awk '/pkts-sofar:/ {print $2; exit}' "$PG_PROC/$pgdev")
		errors=$(awk '/pkts-sofar:/ {print $4; exit}' "$PG_PROC/$pgdev")
		total_sent=$((total_sent + ${sent:-0}))
		total_errors=$((total_errors + ${errors:-0}))
	done
	printf 'total: %d packets sent, %d errors (errors: the driver refused the packet)\n' \
		"$total_sent" "$total_errors"
}
