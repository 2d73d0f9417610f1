/* classifier_env.c: bpf/classifier.h compiled as user-space C over DPDK tables (see
 * classifier_env.h). DPDK's headers come first: they bring <netinet/in.h>, which must precede the
 * UAPI <linux/in.h> that parsing.h includes. */
#include <errno.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_hash.h>
#include <rte_lpm.h>
#include <rte_lpm6.h>
#include <rte_mbuf.h>

#include "dataplane/dpdk/classifier_env.h"

#include "bpf/classifier.h"

static __always_inline const struct mxedge_config *mxedge_env_config(struct mxedge_env *env)
{
	return &env->side->config;
}

static __always_inline __u32 lpm_flags(const struct rte_lpm *v4, const struct rte_lpm6 *v6,
				       const struct mxedge_packet *pkt, const __u32 *addr)
{
	uint32_t hop = 0;

	if (pkt->family == MXEDGE_FAMILY_IPV4) {
		if (rte_lpm_lookup(v4, rte_be_to_cpu_32(addr[0]), &hop) != 0)
			return 0;
		return hop;
	}
	if (rte_lpm6_lookup(v6, (const uint8_t *)addr, &hop) != 0)
		return 0;
	return hop;
}

static __always_inline __u32 mxedge_env_source_flags(struct mxedge_env *env,
						     const struct mxedge_packet *pkt)
{
	return lpm_flags(env->side->source_v4, env->side->source_v6, pkt, pkt->saddr);
}

static __always_inline int mxedge_env_local(struct mxedge_env *env, const struct mxedge_packet *pkt)
{
	uint32_t hop = 0;

	if (pkt->family == MXEDGE_FAMILY_IPV4)
		return rte_lpm_lookup(env->side->local_v4, rte_be_to_cpu_32(pkt->daddr[0]), &hop) == 0;
	return rte_lpm6_lookup(env->side->local_v6, (const uint8_t *)pkt->daddr, &hop) == 0;
}

static __always_inline __u64 *mxedge_env_bucket(struct mxedge_env *env,
						const struct mxedge_rate_key *key)
{
	int32_t pos = rte_hash_lookup(env->buckets, key);

	return pos < 0 ? NULL : (__u64 *)&env->tat[pos];
}

static __always_inline void mxedge_env_new_bucket(struct mxedge_env *env,
						  const struct mxedge_rate_key *key, __u64 tat_ns)
{
	int32_t pos = rte_hash_add_key(env->buckets, key);

	if (pos < 0) {
		env->buckets_full++;
		return;
	}
	env->tat[pos] = tat_ns;
}

void mxedge_dpdk_env_init_clock(struct mxedge_env *env)
{
	uint64_t hz = rte_get_tsc_hz();

	env->tsc_hz = hz ? hz : 1;
	env->ns_per_tsc_q32 = (uint64_t)(((unsigned __int128)1000000000ull << 32) / env->tsc_hz);
}

uint64_t mxedge_dpdk_now_ns(const struct mxedge_env *env)
{
	if (env->test_clock)
		return *env->test_clock;
	/* The TSC: a few cycles to read, a multiply to convert (no division per SYN). */
	return (uint64_t)(((unsigned __int128)rte_rdtsc() * env->ns_per_tsc_q32) >> 32);
}

/* Per lcore, as the XDP program's is per CPU. */
static __always_inline __u64 *mxedge_env_new_source_tat(struct mxedge_env *env)
{
	return (__u64 *)&env->new_source_tat;
}

/* Once per burst: a SYN's bucket needs the time, and the burst takes well under a microsecond. */
static __always_inline __u64 mxedge_env_now(struct mxedge_env *env)
{
	if (!env->now_valid) {
		env->now = mxedge_dpdk_now_ns(env);
		env->now_valid = 1;
	}
	return env->now;
}

static __always_inline __u32 mxedge_env_flow_hash_seed(struct mxedge_env *env)
{
	return env->flow_hash_seed;
}

void mxedge_dpdk_classify(struct mxedge_env *env, const void *frame, uint32_t length,
			  struct mxedge_verdict *verdict)
{
	void *data = (void *)frame; /* the classifier never writes the frame */

	env->now_valid = 0;
	mxedge_classify(env, data, (char *)data + length, verdict);
}

void mxedge_dpdk_classify_burst(struct mxedge_env *env, struct rte_mbuf **pkts, uint16_t count,
				struct mxedge_verdict *verdicts)
{
	/* Every frame's first line is requested before the first is parsed: with a cold pool the
	 * misses overlap instead of queueing one per frame. */
	for (uint16_t i = 0; i < count; i++)
		rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void *));
	env->now_valid = 0;
	for (uint16_t i = 0; i < count; i++) {
		void *data = rte_pktmbuf_mtod(pkts[i], void *);

		mxedge_classify(env, data, (char *)data + rte_pktmbuf_data_len(pkts[i]), &verdicts[i]);
	}
}

uint32_t mxedge_dpdk_sweep_buckets(struct mxedge_env *env, uint32_t budget)
{
	uint64_t now = mxedge_dpdk_now_ns(env);
	uint32_t examined = 0;
	const void *key;
	void *data;

	while (examined < budget) {
		int32_t pos = rte_hash_iterate(env->buckets, &key, &data, &env->sweep_next);

		if (pos < 0) {
			env->sweep_next = 0; /* wrapped: start again next time */
			break;
		}
		examined++;
		if (env->tat[pos] <= now && rte_hash_del_key(env->buckets, key) >= 0)
			env->buckets_swept++;
	}
	return examined;
}
