/* classifier_env.h: the DPDK environment of the shared classifier (bpf/classifier.h), as a C API
 * the C++ fast path (dpdk_fast_path.h) calls. classifier.h is compiled once for BPF (the XDP
 * program) and once here, in classifier_env.c, as user-space C: the parsing and the verdicts are
 * the same source; only the tables differ.
 *
 * Tables. The source lists and local addresses live in rte_lpm (IPv4) and rte_lpm6 (IPv6) tables
 * whose next hop is the entry's MXEDGE_PREFIX_* flags, the same derived flags the BPF tries carry,
 * so the longest match answers "allowlisted?" and "blocklisted?" at once. The tables and the
 * config come in two copies ("sides"); the writer changes the side no lcore reads, publishes it,
 * waits for every lcore to pass a quiescent state (rte_rcu_qsbr), then repeats the change on the
 * other side. Lookups never take a lock, and neither rte_lpm6 (which has no RCU support in 22.11)
 * nor a multi-field config is ever read while it changes.
 *
 * SYN buckets are per lcore (an rte_hash of struct mxedge_rate_key to a slot of a tat array), so
 * no lcore writes another's state. Wire ports spread packets over lcores by an RSS hash of the IP
 * addresses, so one IPv4 source always lands on one lcore and its budget is exact; an IPv6 /64
 * whose addresses hash to different queues gets at most one budget per lcore. A bucket whose tat
 * is in the past is the same as no bucket (a full one), so expired buckets are removed by
 * mxedge_dpdk_sweep_buckets() without changing any verdict; a table that is still full admits a
 * new source's SYN without a bucket (as the BPF LRU map admits it after evicting), counted in
 * buckets_full.
 */
#ifndef MXEDGE_DATAPLANE_DPDK_CLASSIFIER_ENV_H
#define MXEDGE_DATAPLANE_DPDK_CLASSIFIER_ENV_H

#include <stdint.h>

#include "bpf/mxedge_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rte_lpm;
struct rte_lpm6;
struct rte_hash;
struct rte_mbuf;

/* One copy of what the writer changes: lookups read one side, whole. */
struct mxedge_dpdk_side {
	struct rte_lpm *source_v4;
	struct rte_lpm6 *source_v6;
	struct rte_lpm *local_v4;
	struct rte_lpm6 *local_v6;
	struct mxedge_config config;
};

/* An lcore's view: the side it reads in this burst, its own SYN buckets, the clock. */
struct mxedge_env {
	const struct mxedge_dpdk_side *side;
	struct rte_hash *buckets;	  /* key: struct mxedge_rate_key; position -> tat[position] */
	uint64_t *tat;			  /* one per bucket slot */
	const volatile uint64_t *test_clock; /* tests only: the clock in ns; NULL: the TSC */
	uint64_t tsc_hz;
	uint64_t ns_per_tsc_q32; /* ns per TSC tick, 32.32 fixed point (set by mxedge_dpdk_env_init_clock) */
	uint64_t now;		 /* the clock, read once per burst (when now_valid) */
	int now_valid;
	uint32_t flow_hash_seed;
	uint32_t sweep_next;   /* rte_hash_iterate cursor of the sweep */
	uint64_t new_source_tat; /* this lcore's new-source budget (mxedge_config.new_source_*) */
	uint64_t buckets_full; /* new sources admitted without a bucket because the table was full */
	uint64_t buckets_swept;
};

/* The verdict for one frame. */
void mxedge_dpdk_classify(struct mxedge_env *env, const void *frame, uint32_t length,
			  struct mxedge_verdict *verdict);

/* The verdicts for a burst of mbufs (single-segment frames; a multi-segment mbuf is classified by
 * its first segment, and a header cut by the segment end counts as malformed, as a truncated frame
 * would: the ports set up by the fast path never chain mbufs for frames up to their MTU). */
void mxedge_dpdk_classify_burst(struct mxedge_env *env, struct rte_mbuf **pkts, uint16_t count,
				struct mxedge_verdict *verdicts);

/* Removes up to `budget` expired buckets (tat at or before now) from the lcore's own table;
 * returns how many it examined. Called by the lcore itself between bursts. */
uint32_t mxedge_dpdk_sweep_buckets(struct mxedge_env *env, uint32_t budget);

/* The clock the buckets use, in ns (read now, not the burst's cached value). */
uint64_t mxedge_dpdk_now_ns(const struct mxedge_env *env);

/* Sets tsc_hz and the TSC-to-ns factor from rte_get_tsc_hz(). */
void mxedge_dpdk_env_init_clock(struct mxedge_env *env);

#ifdef __cplusplus
}
#endif

#endif /* MXEDGE_DATAPLANE_DPDK_CLASSIFIER_ENV_H */
