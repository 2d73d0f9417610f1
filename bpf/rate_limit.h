/* rate_limit.h: the per-source SYN token bucket (GCRA form, see struct mxedge_rate_bucket in
 * mxedge_abi.h). Only a SYN without ACK reaches this code, so established flows are never limited.
 *
 * SECURITY: sources are unauthenticated; a spoofed flood creates one bucket per forged source and
 * the LRU map evicts the oldest buckets, so this limits well-behaved and non-spoofing sources only.
 * The bucket update races with other CPUs; a lost compare-and-swap still charges the SYN, so a race
 * can only make the limit stricter, never let more SYNs through.
 */
#ifndef MXEDGE_BPF_RATE_LIMIT_H
#define MXEDGE_BPF_RATE_LIMIT_H

#include <linux/types.h>

#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "mxedge_abi.h"
#include "parsing.h"

/* The bucket key of the packet's source: the IPv4 /32 or the IPv6 /64. */
static __always_inline void rate_key(const struct mxedge_packet *pkt, struct mxedge_rate_key *key)
{
	__u32 *prefix = (__u32 *)key->prefix;

	key->family = pkt->family;
	prefix[0] = pkt->saddr[0];
	prefix[1] = pkt->family == MXEDGE_FAMILY_IPV4 ? 0 : pkt->saddr[1];
}

/* 1 when the SYN fits the source's budget (and is charged to it), 0 when it exceeds it. */
static __always_inline int syn_admitted(const struct mxedge_config *cfg,
					const struct mxedge_packet *pkt, __u64 now)
{
	__u64 interval = cfg->syn_interval_ns;
	struct mxedge_rate_bucket *bucket;
	struct mxedge_rate_key key;
	__u64 tat, start;

	rate_key(pkt, &key);
	bucket = bpf_map_lookup_elem(&syn_buckets, &key);
	if (!bucket) {
		struct mxedge_rate_bucket fresh = {.tat_ns = now + interval};

		/* A full bucket: this SYN takes one token. Losing an insert race to another CPU
		 * admits both SYNs, which only a burst of 1 could notice. */
		bpf_map_update_elem(&syn_buckets, &key, &fresh, BPF_NOEXIST);
		return 1;
	}
	tat = *(volatile __u64 *)&bucket->tat_ns;
	start = tat > now ? tat : now;
	if (start - now > cfg->syn_burst_ns)
		return 0;
	if (__sync_val_compare_and_swap(&bucket->tat_ns, tat, start + interval) != tat)
		__sync_fetch_and_add(&bucket->tat_ns, interval);
	return 1;
}

#endif /* MXEDGE_BPF_RATE_LIMIT_H */
