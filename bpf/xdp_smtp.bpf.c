// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdp_smtp.bpf.c: the XDP program in front of the data plane (attach point: XDP on each configured
 * interface). The classifier itself (source lists, SYN rate limit, which worker) is classifier.h,
 * which the DPDK fast path runs too; this file is its BPF environment (the maps of maps.h) and what
 * XDP does with a verdict:
 *   - drop: XDP_DROP; pass: XDP_PASS;
 *   - steer: the flow's worker CPU through the cpumap (XDP_REDIRECT), or plain XDP_PASS when the
 *     packet already is on that CPU; a CPU without a cpumap entry: XDP_PASS, pass_no_worker.
 * Every packet bumps exactly one exclusive per-CPU counter (mxedge_abi.h).
 *
 * Cost: an established SMTP packet costs one map lookup (the source trie) and the redirect; local
 * addresses are compared inline, the config and counters are array lookups the verifier inlines.
 *
 * STANDARDS: see parsing.h. SECURITY: all input is unauthenticated; the verifier proves every
 * packet access is bounds-checked; map contents are written only by the data plane (root, at
 * set-up, then through its API).
 */
#include <linux/bpf.h>
#include <linux/types.h>

#include <bpf/bpf_helpers.h>

#include "classifier.h"
#include "maps.h"
#include "mxedge_abi.h"

/* Load-time knobs, set by the loader between open and load. */
const volatile __u32 flow_hash_seed = 0x6d786467;
const volatile __u8 use_test_clock = 0; /* tests only: take the time from test_clock_ns */

__u64 test_clock_ns = 0;

/* The BPF environment of classifier.h: the maps. No state of its own. */
struct mxedge_env {
	int unused;
};

static __always_inline const struct mxedge_config *mxedge_env_config(struct mxedge_env *env __attribute__((unused)))
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&config, &zero);
}

/* The two lookups must stay two call sites: merged into one (the compiler likes to sink identical
 * calls out of both branches) the verifier sees two maps at one call and can no longer turn it into
 * a direct call of the trie's lookup. The empty asm after one of them keeps them apart. */
static __always_inline __u32 mxedge_env_source_flags(struct mxedge_env *env __attribute__((unused)),
						     const struct mxedge_packet *pkt)
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

static __always_inline int mxedge_env_local(struct mxedge_env *env __attribute__((unused)), const struct mxedge_packet *pkt)
{
	if (pkt->family == MXEDGE_FAMILY_IPV4) {
		struct mxedge_lpm_v4_key key = {.prefixlen = 32};

		*(__u32 *)key.addr = pkt->daddr[0];
		return bpf_map_lookup_elem(&local_v4, &key) != NULL;
	} else {
		struct mxedge_lpm_v6_key key = {.prefixlen = 128};
		__u32 *addr = (__u32 *)key.addr;
		void *hit;

		addr[0] = pkt->daddr[0];
		addr[1] = pkt->daddr[1];
		addr[2] = pkt->daddr[2];
		addr[3] = pkt->daddr[3];
		hit = bpf_map_lookup_elem(&local_v6, &key);
		asm volatile("" ::: "memory");
		return hit != NULL;
	}
}

static __always_inline __u64 *mxedge_env_bucket(struct mxedge_env *env __attribute__((unused)),
						const struct mxedge_rate_key *key)
{
	struct mxedge_rate_bucket *bucket = bpf_map_lookup_elem(&syn_buckets, key);

	return bucket ? &bucket->tat_ns : NULL;
}

/* The LRU map evicts its oldest bucket when full. Losing an insert race to another CPU admits both
 * SYNs (BPF_NOEXIST keeps the winner's bucket). */
static __always_inline void mxedge_env_new_bucket(struct mxedge_env *env __attribute__((unused)),
						  const struct mxedge_rate_key *key, __u64 tat_ns)
{
	struct mxedge_rate_bucket fresh = {.tat_ns = tat_ns};

	bpf_map_update_elem(&syn_buckets, key, &fresh, BPF_NOEXIST);
}

static __always_inline __u64 *mxedge_env_new_source_tat(struct mxedge_env *env __attribute__((unused)))
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&new_source_tat, &zero);
}

static __always_inline __u64 mxedge_env_now(struct mxedge_env *env __attribute__((unused)))
{
	return use_test_clock ? test_clock_ns : bpf_ktime_get_coarse_ns();
}

static __always_inline __u32 mxedge_env_flow_hash_seed(struct mxedge_env *env __attribute__((unused)))
{
	return flow_hash_seed;
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

SEC("xdp")
int mxedge_xdp_smtp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct mxedge_verdict v;
	int action;

	mxedge_classify(NULL, data, data_end, &v);
	if (v.allowlisted)
		count(MXEDGE_CTR_ALLOWLISTED, bytes);
	if (v.action == MXEDGE_ACT_DROP) {
		count(v.counter, bytes);
		return XDP_DROP;
	}
	if (v.action != MXEDGE_ACT_STEER) {
		count(v.counter, bytes);
		return XDP_PASS;
	}
	/* Already on the worker's CPU (RSS did the job): the stack takes it here, no cpumap hop. */
	if (v.cpu == bpf_get_smp_processor_id()) {
		count(v.counter, bytes);
		return XDP_PASS;
	}
	action = bpf_redirect_map(&worker_cpumap, v.cpu, XDP_PASS);
	count(action == XDP_REDIRECT ? v.counter : MXEDGE_CTR_PASS_NO_WORKER, bytes);
	return action;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
