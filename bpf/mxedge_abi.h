/* mxedge_abi.h: the ABI between the BPF programs in bpf/ and their owner in dataplane/xdp/.
 *
 * Every map key and value the two sides exchange is defined here, once, as a struct of fixed-width
 * fields with no implicit padding, so the kernel side (clang -target bpf) and the C++ side (GCC or
 * clang, x86-64) agree on every byte. Compiled as C by the BPF side and as C++ by the loader; it
 * only includes <linux/types.h>.
 *
 * Changing a struct or a size here changes the pinned maps' layout: the loader notices that a
 * pinned map no longer matches (type, key size, value size, entries, flags) and replaces it, which
 * resets its content (see dataplane/xdp/xdp_program.h).
 */
#ifndef MXEDGE_BPF_MXEDGE_ABI_H
#define MXEDGE_BPF_MXEDGE_ABI_H

#include <linux/types.h>

/* Sizes. */
#define MXEDGE_MAX_SMTP_PORTS 8 /* destination ports classified as SMTP */
#define MXEDGE_MAX_WORKERS 64	/* workers the XDP program can steer to */
#define MXEDGE_MAX_CPUS 256 /* cpumap and cpu→worker sizes; a worker's CPU id must be below this \
			     */
#define MXEDGE_SOURCE_PREFIX_ENTRIES 131072 /* allowlist + blocklist prefixes, per address family  \
					     */
#define MXEDGE_LOCAL_PREFIX_ENTRIES 1024    /* local addresses per address family */
#define MXEDGE_MAX_INLINE_LOCAL_V4 8	    /* local IPv4 addresses the config carries inline */
#define MXEDGE_MAX_INLINE_LOCAL_V6 4	    /* local IPv6 addresses the config carries inline */
#define MXEDGE_RATE_BUCKETS 262144	    /* sources tracked by the SYN rate limit (LRU) */
#define MXEDGE_MAX_IPV6_EXT_HEADERS 8	    /* longer IPv6 header chains are counted malformed */

/* LPM trie keys (source lists, local addresses). prefixlen counts bits of addr; addr is in network
 * byte order, as on the wire. */
struct mxedge_lpm_v4_key {
	__u32 prefixlen; /* 0..32 */
	__u8 addr[4];
};

struct mxedge_lpm_v6_key {
	__u32 prefixlen; /* 0..128 */
	__u8 addr[16];
};

/* Source lists. The allowlist and the blocklist of a family share one LPM trie, so one lookup per
 * packet answers both questions. A source is allowlisted when any allowlist prefix contains it, and
 * likewise for the blocklist; "allowlist wins" means an allowlisted source is never dropped,
 * however the prefixes nest. The longest matching entry alone cannot say that (allow
 * 198.51.100.0/24 with block 198.51.100.7/32 returns the block entry), so the loader stores in
 * every entry, besides its own lists (IN_*), whether it or any shorter entry containing it is on
 * each list (ALLOWED, BLOCKED): every prefix containing the source contains the longest match, so
 * the longest match's ALLOWED/BLOCKED bits answer for the source. The loader recomputes them for
 * the entries under a prefix it adds or removes. */
#define MXEDGE_PREFIX_IN_ALLOW (1u << 0) /* this prefix is on the allowlist */
#define MXEDGE_PREFIX_IN_BLOCK (1u << 1) /* this prefix is on the blocklist */
#define MXEDGE_PREFIX_ALLOWED (1u << 2)	 /* it or a prefix containing it is on the allowlist */
#define MXEDGE_PREFIX_BLOCKED (1u << 3)	 /* it or a prefix containing it is on the blocklist */

/* Value of every LPM trie entry: MXEDGE_PREFIX_* for the source lists, 0 for local addresses. */
struct mxedge_prefix_value {
	__u32 flags;
};

/* SYN rate limit. A source is an IPv4 /32 or an IPv6 /64 (one end site: a host owns at least a /64,
 * so per-/128 buckets would let one host take 2^64 budgets). */
#define MXEDGE_FAMILY_IPV4 4
#define MXEDGE_FAMILY_IPV6 6

struct mxedge_rate_key {
	__u32 family;	/* MXEDGE_FAMILY_IPV4 or MXEDGE_FAMILY_IPV6 */
	__u8 prefix[8]; /* IPv4: the address then 4 zero bytes; IPv6: the first 64 bits */
};

/* The token bucket of one source, kept as GCRA (the "virtual scheduling" form of a token bucket):
 * tat_ns is the theoretical arrival time of the next SYN on the bpf_ktime_get_coarse_ns() clock
 * (CLOCK_MONOTONIC_COARSE: one tick of resolution, a few ns to read instead of tens; a tick of
 * error is nothing next to per-source rates of a few SYNs per second). A SYN at
 * time now is admitted when tat_ns - now <= syn_burst_ns (tat_ns below now counts as now);
 * admitting it moves tat_ns forward by syn_interval_ns. That admits `burst` SYNs at once and then
 * one per interval, exactly like a bucket of `burst` tokens refilled at `rate` per second, but it
 * is one u64 that a compare-and-swap can update, and it needs no division in the kernel. */
struct mxedge_rate_bucket {
	__u64 tat_ns;
};

/* Runtime configuration: the single entry of the config array map, written whole by the loader.
 * All zero (the state of a fresh map) means no SMTP ports: only malformed frames are dropped. */
#define MXEDGE_CFG_STEERING (1u << 0) /* redirect SMTP flows to worker CPUs through the cpumap */
#define MXEDGE_CFG_LOCAL_V4_ANY (1u << 1) /* no local addresses listed: every IPv4 dst is local */
#define MXEDGE_CFG_LOCAL_V6_ANY (1u << 2) /* no local addresses listed: every IPv6 dst is local */
#define MXEDGE_CFG_LOCAL_V4_LPM (1u << 3) /* IPv4 local addresses: ask the local_v4 trie */
#define MXEDGE_CFG_LOCAL_V6_LPM (1u << 4) /* IPv6 local addresses: ask the local_v6 trie */

/* Local addresses: the tries hold them all; when a family has only a few single addresses (the
 * usual case) the config also carries them inline and the program compares them without a map
 * lookup (neither ANY nor LPM set). */
struct mxedge_config {
	__u32 flags;	    /* MXEDGE_CFG_* */
	__u32 worker_count; /* entries used in worker_cpus; 0 turns steering off */
	__u16 smtp_ports[MXEDGE_MAX_SMTP_PORTS]; /* host byte order; 0 marks an unused slot */
	__u64 syn_interval_ns; /* 1e9 / SYNs per second per source; 0 turns the rate limit off */
	__u64 syn_burst_ns;    /* (burst - 1) * syn_interval_ns: the GCRA tolerance */
	__u32 local_v4_count;  /* entries used in local_v4 */
	__u32 local_v6_count;  /* entries used in local_v6 */
	__u8 local_v4[MXEDGE_MAX_INLINE_LOCAL_V4][4]; /* network byte order */
	__u8 local_v6[MXEDGE_MAX_INLINE_LOCAL_V6][16];
	__u32 worker_cpus[MXEDGE_MAX_WORKERS]; /* worker index -> CPU id, the key into the cpumap */
	/* The new-source budget: SYNs from sources that have no SYN bucket yet (never seen, or
	 * evicted) share one GCRA budget per CPU, so a flood of spoofed sources, each new, cannot
	 * pass the per-source limit by being new every time. Only consulted when syn_interval_ns is
	 * set. 1e9 / new sources per second per CPU; 0 turns it off. */
	__u64 new_source_interval_ns;
	__u64 new_source_burst_ns; /* (burst - 1) * new_source_interval_ns */
};

/* Counters. Every packet the XDP program sees is counted in exactly one of the exclusive counters
 * (MXEDGE_CTR_PASS_NOT_SMTP .. MXEDGE_CTR_DROP_RATE_LIMIT, MXEDGE_CTR_DROP_NEW_SOURCE and the
 * MXEDGE_CTR_STEERED_WORKER0 + i block), so their sum is the number of packets. MXEDGE_CTR_ALLOWLISTED is not exclusive: it marks
 * packets from allowlisted sources that the blocklist matched or that are SYNs the rate limit would
 * have examined; they are also counted as steered or passed. */
enum mxedge_counter_index {
	MXEDGE_CTR_PASS_NOT_SMTP = 0, /* XDP_PASS: not TCP to an SMTP port on a local address */
	MXEDGE_CTR_PASS_FRAGMENT = 1, /* XDP_PASS: non-first fragment of a TCP datagram */
	MXEDGE_CTR_MALFORMED = 2,     /* XDP_DROP: truncated or inconsistent headers */
	MXEDGE_CTR_PASS_SMTP = 3,     /* XDP_PASS: SMTP, steering off */
	MXEDGE_CTR_PASS_NO_WORKER =
	    4, /* XDP_PASS: SMTP, the chosen worker CPU has no cpumap entry */
	MXEDGE_CTR_DROP_BLOCKLIST = 5, /* XDP_DROP: source in the blocklist, not in the allowlist */
	MXEDGE_CTR_DROP_RATE_LIMIT = 6, /* XDP_DROP: SYN over the source's rate */
	MXEDGE_CTR_ALLOWLISTED = 7,	/* not exclusive, see above */
	MXEDGE_CTR_DROP_NEW_SOURCE = 8, /* XDP_DROP: SYN from a source without a bucket, over the
					 * new-source budget */
	MXEDGE_CTR_STEERED_WORKER0 =
	    9, /* XDP_REDIRECT to worker i's CPU: MXEDGE_CTR_STEERED_WORKER0 + i */
	MXEDGE_CTR_COUNT = MXEDGE_CTR_STEERED_WORKER0 + MXEDGE_MAX_WORKERS,
};

struct mxedge_counter {
	__u64 packets;
	__u64 bytes; /* frame bytes as XDP saw them, from the Ethernet header on */
};

/* The single per-CPU entry of the counters map. */
struct mxedge_counters {
	struct mxedge_counter ctr[MXEDGE_CTR_COUNT];
};

/* What classifier.h decides for a frame; the fast path that ran it delivers and counts. */
enum mxedge_action {
	MXEDGE_ACT_PASS = 0,  /* to the kernel stack, untouched */
	MXEDGE_ACT_DROP = 1,
	MXEDGE_ACT_STEER = 2, /* to worker `worker` (CPU `cpu`) */
};

struct mxedge_verdict {
	__u32 action;	   /* enum mxedge_action */
	__u32 counter;	   /* the exclusive counter (mxedge_counter_index) */
	__u32 worker;	   /* MXEDGE_ACT_STEER: the worker index, below MXEDGE_MAX_WORKERS */
	__u32 cpu;	   /* MXEDGE_ACT_STEER: that worker's CPU (mxedge_config.worker_cpus) */
	__u32 allowlisted; /* also count MXEDGE_CTR_ALLOWLISTED */
	__u32 flow_hash;   /* MXEDGE_ACT_STEER: the flow's hash */
};

/* SK_REUSEPORT: the worker pinned to a CPU (value of the cpu→worker array, indexed by CPU id). A
 * zeroed entry (flags without MXEDGE_CPU_HAS_WORKER) means no worker runs there. */
#define MXEDGE_CPU_HAS_WORKER (1u << 0)

struct mxedge_cpu_worker {
	__u32 worker; /* index into the sockarray */
	__u32 flags;  /* MXEDGE_CPU_HAS_WORKER */
};

/* Outcomes of the SK_REUSEPORT program, counted per CPU (array index). */
enum mxedge_reuseport_counter_index {
	MXEDGE_RP_SELECTED = 0,	 /* the current CPU's worker socket was selected */
	MXEDGE_RP_NO_WORKER = 1, /* no worker on this CPU: kernel's hash selection */
	MXEDGE_RP_SELECT_FAILED =
	    2, /* worker known but its socket is missing: kernel's hash selection */
	MXEDGE_RP_COUNT = 3,
};

#endif /* MXEDGE_BPF_MXEDGE_ABI_H */
