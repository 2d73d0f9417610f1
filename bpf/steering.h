/* steering.h: which worker a flow belongs to. A hash of the flow's addresses and ports (the
 * protocol is always TCP here) picks one of the configured workers, so every packet of a flow lands
 * on the same worker CPU whichever RX queue it arrived on. The hash needs not be symmetric: the XDP
 * program only sees the inbound direction.
 *
 * SECURITY: a peer chooses its source port and so its worker; the seed (a load-time knob) keeps it
 * from aiming many flows at one worker on purpose.
 */
#ifndef MXEDGE_BPF_STEERING_H
#define MXEDGE_BPF_STEERING_H

#include <linux/types.h>

#include "mxedge_abi.h"
#include "parsing.h"
#include "portable.h"

/* MurmurHash3's 32-bit block mix and finalizer: a few multiplies, good avalanche. */
static __always_inline __u32 rotl32(__u32 x, int r) { return (x << r) | (x >> (32 - r)); }

static __always_inline __u32 hash_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 hash_final(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 flow_hash(const struct mxedge_packet *pkt, __u32 seed)
{
	const __u32 *src = pkt->saddr;
	const __u32 *dst = pkt->daddr;
	__u32 h = seed;

	h = hash_mix(h, src[0]);
	h = hash_mix(h, dst[0]);
	if (pkt->family == MXEDGE_FAMILY_IPV6) {
		h = hash_mix(h, src[1]);
		h = hash_mix(h, src[2]);
		h = hash_mix(h, src[3]);
		h = hash_mix(h, dst[1]);
		h = hash_mix(h, dst[2]);
		h = hash_mix(h, dst[3]);
	}
	h = hash_mix(h, *(const __u32 *)&pkt->tcp->source); /* source and dest ports */
	return hash_final(h ^ pkt->family);
}

/* The worker index for a hash, spread evenly over worker_count (multiply-shift, no division). */
static __always_inline __u32 pick_worker(__u32 hash, __u32 worker_count)
{
	return (__u32)(((__u64)hash * worker_count) >> 32);
}

#endif /* MXEDGE_BPF_STEERING_H */
