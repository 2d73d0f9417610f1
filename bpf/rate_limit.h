/* rate_limit.h: the per-source SYN token bucket (GCRA form, see struct mxedge_rate_bucket in
 * mxedge_abi.h). Only a SYN without ACK reaches this code, so established flows are never limited.
 * Shared by both fast paths: where a bucket lives (an LRU hash map in BPF, an rte_hash in DPDK) is
 * the environment's business (classifier.h), the arithmetic is here.
 *
 * SECURITY: sources are unauthenticated; a spoofed flood creates one bucket per forged source and
 * the table evicts (BPF: the oldest, DPDK: expired) buckets or admits new sources when it is full,
 * so the per-source bucket limits well-behaved and non-spoofing sources only. Against spoofed
 * floods the classifier also charges every SYN from a source without a bucket to a per-CPU
 * new-source budget (classifier.h): past it such SYNs are dropped, and since a dropped SYN creates
 * no bucket, the table fills no faster than the budget and sources seen before the flood keep
 * their buckets. The price: a source seen for the first time during a spoofed flood competes with
 * the flood for that budget (its TCP retransmits the SYN). The bucket update races with other
 * CPUs; a lost compare-and-swap still charges the SYN, so a race can only make the limit stricter,
 * never let more SYNs through.
 */
#ifndef MXEDGE_BPF_RATE_LIMIT_H
#define MXEDGE_BPF_RATE_LIMIT_H

#include <linux/types.h>

#include "mxedge_abi.h"
#include "parsing.h"
#include "portable.h"

/* The bucket key of the packet's source: the IPv4 /32 or the IPv6 /64. */
static __always_inline void rate_key(const struct mxedge_packet *pkt, struct mxedge_rate_key *key)
{
	__u32 *prefix = (__u32 *)key->prefix;

	key->family = pkt->family;
	prefix[0] = pkt->saddr[0];
	prefix[1] = pkt->family == MXEDGE_FAMILY_IPV4 ? 0 : pkt->saddr[1];
}

/* One GCRA step: 1 when the event fits the budget (interval, burst tolerance) and is charged to
 * *tat_ns, 0 when it exceeds it. */
static __always_inline int gcra_step(__u64 interval, __u64 burst_ns, __u64 *tat_ns, __u64 now)
{
	__u64 tat, start;

	tat = *(volatile __u64 *)tat_ns;
	start = tat > now ? tat : now;
	if (start - now > burst_ns)
		return 0;
	if (__sync_val_compare_and_swap(tat_ns, tat, start + interval) != tat)
		__sync_fetch_and_add(tat_ns, interval);
	return 1;
}

/* The GCRA step on an existing bucket: 1 when the SYN fits (and is charged), 0 when it exceeds the
 * budget. A source without a bucket has a full one: its first SYN is admitted and creates the
 * bucket with tat = now + interval (the caller does that). */
static __always_inline int gcra_admit(const struct mxedge_config *cfg, __u64 *tat_ns, __u64 now)
{
	return gcra_step(cfg->syn_interval_ns, cfg->syn_burst_ns, tat_ns, now);
}

#endif /* MXEDGE_BPF_RATE_LIMIT_H */
