// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdp_smtp.bpf.c: the XDP program in front of the data plane (attach point: XDP on each configured
 * interface). For TCP to a configured SMTP port on a local address it applies, in order:
 *   1. the source lists: one LPM lookup in the family's source trie says whether the source is
 *      blocklisted and whether it is allowlisted (mxedge_abi.h); blocklisted and not allowlisted:
 *      dropped;
 *   2. for a SYN without ACK from a source that is not allowlisted: the source's token bucket (IPv4
 *      /32, IPv6 /64); over its rate: dropped;
 *   3. steering: the flow's worker CPU through the cpumap (XDP_REDIRECT), or plain XDP_PASS when
 * the flow already runs on that CPU, when steering is off, or when that CPU has no cpumap entry.
 * Everything else is XDP_PASS, untouched, except malformed frames, which are dropped (parsing.h
 * lists what counts as malformed and why dropping it is safe). Every packet bumps exactly one
 * exclusive per-CPU counter (mxedge_abi.h).
 *
 * Cost: an established SMTP packet costs one map lookup (the source trie) and the redirect; local
 * addresses are compared inline, the config and counters are array lookups the verifier inlines.
 *
 * STANDARDS: see parsing.h. SECURITY: all input is unauthenticated; the verifier proves every
 * packet access is bounds-checked; map contents are written only by the data plane (root, at
 * set-up, then through its API).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/types.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "mxedge_abi.h"
#include "parsing.h"
#include "rate_limit.h"
#include "steering.h"

/* Load-time knobs, set by the loader between open and load. */
const volatile __u32 flow_hash_seed = 0x6d786467;
const volatile __u8 use_test_clock = 0; /* tests only: take the time from test_clock_ns */

__u64 test_clock_ns = 0;

#define TCP_FLAGS_BYTE 13
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

static __always_inline __u64 now_ns(void)
{
	return use_test_clock ? test_clock_ns : bpf_ktime_get_coarse_ns();
}

static __always_inline void count(__u32 index, __u64 bytes)
{
	__u32 zero = 0;
	struct mxedge_counters *c = bpf_map_lookup_elem(&counters, &zero);

	if (c && index < MXEDGE_CTR_COUNT) {
		c->ctr[index].packets++;
		c->ctr[index].bytes += bytes;
	}
}

static __always_inline int verdict(__u32 index, __u64 bytes, int action)
{
	count(index, bytes);
	return action;
}

/* The source's MXEDGE_PREFIX_* flags from its family's source trie (0: on no list).
 *
 * The two lookups must stay two call sites: merged into one (the compiler likes to sink identical
 * calls out of both branches) the verifier sees two maps at one call and can no longer turn it into
 * a direct call of the trie's lookup. The empty asm after one of them keeps them apart. */
static __always_inline __u32 source_flags(const struct mxedge_packet *pkt)
{
	struct mxedge_prefix_value *entry;

	if (pkt->family == MXEDGE_FAMILY_IPV4) {
		struct mxedge_lpm_v4_key key = {.prefixlen = 32};

		*(__u32 *)key.addr = pkt->saddr[0];
		entry = bpf_map_lookup_elem(&source_lists_v4, &key);
	} else {
		struct mxedge_lpm_v6_key key = {.prefixlen = 128};
		__u32 *addr = (__u32 *)key.addr;

		addr[0] = pkt->saddr[0];
		addr[1] = pkt->saddr[1];
		addr[2] = pkt->saddr[2];
		addr[3] = pkt->saddr[3];
		entry = bpf_map_lookup_elem(&source_lists_v6, &key);
		asm volatile("" ::: "memory");
	}
	return entry ? entry->flags : 0;
}

static __always_inline int is_local_v4(const struct mxedge_config *cfg, const __u32 *daddr)
{
	__u32 dst = daddr[0], count = cfg->local_v4_count;
	int hit = 0;

	if (cfg->flags & MXEDGE_CFG_LOCAL_V4_ANY)
		return 1;
	if (cfg->flags & MXEDGE_CFG_LOCAL_V4_LPM) {
		struct mxedge_lpm_v4_key key = {.prefixlen = 32};

		*(__u32 *)key.addr = dst;
		return bpf_map_lookup_elem(&local_v4, &key) != NULL;
	}
#pragma unroll
	for (__u32 i = 0; i < MXEDGE_MAX_INLINE_LOCAL_V4; i++)
		hit |= i < count && *(const __u32 *)cfg->local_v4[i] == dst;
	return hit;
}

static __always_inline int is_local_v6(const struct mxedge_config *cfg, const __u32 *daddr)
{
	__u32 count = cfg->local_v6_count;
	int hit = 0;

	if (cfg->flags & MXEDGE_CFG_LOCAL_V6_ANY)
		return 1;
	if (cfg->flags & MXEDGE_CFG_LOCAL_V6_LPM) {
		struct mxedge_lpm_v6_key key = {.prefixlen = 128};
		__u32 *addr = (__u32 *)key.addr;

		addr[0] = daddr[0];
		addr[1] = daddr[1];
		addr[2] = daddr[2];
		addr[3] = daddr[3];
		return bpf_map_lookup_elem(&local_v6, &key) != NULL;
	}
#pragma unroll
	for (__u32 i = 0; i < MXEDGE_MAX_INLINE_LOCAL_V6; i++) {
		const __u32 *local = (const __u32 *)cfg->local_v6[i];

		hit |= i < count && local[0] == daddr[0] && local[1] == daddr[1] &&
		       local[2] == daddr[2] && local[3] == daddr[3];
	}
	return hit;
}

/* TCP to one of the configured ports on one of our addresses. */
static __always_inline int is_smtp(const struct mxedge_config *cfg, const struct mxedge_packet *pkt)
{
	__u16 port = bpf_ntohs(pkt->tcp->dest);
	int hit = 0;

	if (port == 0)
		return 0; /* 0 marks unused port slots */
#pragma unroll
	for (int i = 0; i < MXEDGE_MAX_SMTP_PORTS; i++)
		hit |= cfg->smtp_ports[i] == port;
	if (!hit)
		return 0;
	if (pkt->family == MXEDGE_FAMILY_IPV4)
		return is_local_v4(cfg, pkt->daddr);
	return is_local_v6(cfg, pkt->daddr);
}

static __always_inline int steer(const struct mxedge_config *cfg, const struct mxedge_packet *pkt,
				 __u64 bytes)
{
	__u32 workers = cfg->worker_count;
	__u32 worker, cpu;
	int action;

	if (!(cfg->flags & MXEDGE_CFG_STEERING) || workers == 0)
		return verdict(MXEDGE_CTR_PASS_SMTP, bytes, XDP_PASS);
	if (workers > MXEDGE_MAX_WORKERS)
		workers = MXEDGE_MAX_WORKERS;
	worker = pick_worker(flow_hash(pkt, flow_hash_seed), workers);
	if (worker >= MXEDGE_MAX_WORKERS)
		return verdict(MXEDGE_CTR_PASS_SMTP, bytes,
			       XDP_PASS); /* unreachable; for the verifier */
	cpu = cfg->worker_cpus[worker];
	/* Already on the worker's CPU (RSS did the job): the stack takes it here, no cpumap hop. */
	if (cpu == bpf_get_smp_processor_id())
		return verdict(MXEDGE_CTR_STEERED_WORKER0 + worker, bytes, XDP_PASS);
	action = bpf_redirect_map(&worker_cpumap, cpu, XDP_PASS);
	if (action == XDP_REDIRECT)
		return verdict(MXEDGE_CTR_STEERED_WORKER0 + worker, bytes, action);
	return verdict(MXEDGE_CTR_PASS_NO_WORKER, bytes, action);
}

static __always_inline int smtp_verdict(const struct mxedge_config *cfg,
					const struct mxedge_packet *pkt, __u64 bytes)
{
	__u8 tcp_flags = ((__u8 *)pkt->tcp)[TCP_FLAGS_BYTE];
	int syn = (tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	__u32 lists = source_flags(pkt);

	if (lists & MXEDGE_PREFIX_BLOCKED) {
		if (!(lists & MXEDGE_PREFIX_ALLOWED))
			return verdict(MXEDGE_CTR_DROP_BLOCKLIST, bytes, XDP_DROP);
		count(MXEDGE_CTR_ALLOWLISTED, bytes);
	} else if (syn && cfg->syn_interval_ns) {
		if (lists & MXEDGE_PREFIX_ALLOWED)
			count(MXEDGE_CTR_ALLOWLISTED, bytes);
		else if (!syn_admitted(cfg, pkt, now_ns()))
			return verdict(MXEDGE_CTR_DROP_RATE_LIMIT, bytes, XDP_DROP);
	}
	return steer(cfg, pkt, bytes);
}

SEC("xdp")
int mxedge_xdp_smtp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct mxedge_packet pkt = {};
	struct mxedge_config *cfg;
	__u32 zero = 0;
	__be16 proto;
	void *l3;
	int res;

	res = parse_ethernet(data, data_end, &l3, &proto);
	if (res == MXEDGE_PARSE_MALFORMED)
		return verdict(MXEDGE_CTR_MALFORMED, bytes, XDP_DROP);
	if (proto == bpf_htons(ETH_P_IP))
		res = parse_ipv4(l3, data_end, &pkt);
	else if (proto == bpf_htons(ETH_P_IPV6))
		res = parse_ipv6(l3, data_end, &pkt);
	else
		res = MXEDGE_PARSE_NOT_TCP;

	switch (res) {
	case MXEDGE_PARSE_TCP:
		break;
	case MXEDGE_PARSE_FRAGMENT:
		return verdict(MXEDGE_CTR_PASS_FRAGMENT, bytes, XDP_PASS);
	case MXEDGE_PARSE_MALFORMED:
		return verdict(MXEDGE_CTR_MALFORMED, bytes, XDP_DROP);
	default:
		return verdict(MXEDGE_CTR_PASS_NOT_SMTP, bytes, XDP_PASS);
	}

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !is_smtp(cfg, &pkt))
		return verdict(MXEDGE_CTR_PASS_NOT_SMTP, bytes, XDP_PASS);
	return smtp_verdict(cfg, &pkt, bytes);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
