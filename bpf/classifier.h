/* classifier.h: the SMTP classifier of both fast paths, the XDP program (xdp_smtp.bpf.c) and the
 * DPDK fast path (dataplane/dpdk/classifier_env.c): one implementation of parsing and verdicts, not
 * two copies. For a frame it decides, in order:
 *   - malformed (parsing.h): drop, counted malformed;
 *   - non-first TCP fragment: pass, pass_fragment; not TCP, or TCP not to a configured SMTP port on
 *     a local address: pass, pass_not_smtp;
 *   - the source lists: blocklisted and not allowlisted: drop, drop_blocklist;
 *   - a SYN without ACK from a source that is not allowlisted, over its token bucket: drop,
 *     drop_rate_limit; from a source without a bucket yet, over the per-CPU new-source budget:
 *     drop, drop_new_source (and no bucket is created);
 *   - steering on: steer to worker pick_worker(flow_hash) (counted steered_worker_<i> by the
 *     caller once it has delivered the packet there); steering off: pass, pass_smtp.
 * The verdict says what to do and which exclusive counter to bump; the caller does it and counts,
 * because delivering to a worker is where the two fast paths differ (a cpumap redirect, a TAP
 * queue) and either may fall back to pass_no_worker.
 *
 * The environment. The includer defines `struct mxedge_env` and these functions (after including
 * this header; they are declared here), which are where the tables live:
 *   mxedge_env_config(env)            the runtime config (NULL: none yet, everything passes)
 *   mxedge_env_source_flags(env, pkt) the MXEDGE_PREFIX_* flags of the longest source-list match
 *                                     (0: on no list)
 *   mxedge_env_local(env, pkt)        1 when pkt's destination is in the local-address table
 *                                     (consulted only in the LPM modes of mxedge_config)
 *   mxedge_env_bucket(env, key)       the tat_ns of the source's SYN bucket, NULL when it has none
 *   mxedge_env_new_bucket(env, key, tat)  creates it (a full table may evict or refuse; either way
 *                                     the SYN that asked was admitted)
 *   mxedge_env_new_source_tat(env)    the tat_ns of this CPU's new-source budget (NULL: no budget)
 *   mxedge_env_now(env)               nanoseconds on the clock the buckets use
 *   mxedge_env_flow_hash_seed(env)    the steering hash's seed (steering.h)
 *
 * STANDARDS and SECURITY: see parsing.h and rate_limit.h; all input is unauthenticated.
 */
#ifndef MXEDGE_BPF_CLASSIFIER_H
#define MXEDGE_BPF_CLASSIFIER_H

#include <linux/if_ether.h>
#include <linux/types.h>

#include "mxedge_abi.h"
#include "parsing.h"
#include "portable.h"
#include "rate_limit.h"
#include "steering.h"

/* struct mxedge_verdict and enum mxedge_action are in mxedge_abi.h: the C++ owners read them. */

struct mxedge_env;
static __always_inline const struct mxedge_config *mxedge_env_config(struct mxedge_env *env);
static __always_inline __u32 mxedge_env_source_flags(struct mxedge_env *env,
						     const struct mxedge_packet *pkt);
static __always_inline int mxedge_env_local(struct mxedge_env *env, const struct mxedge_packet *pkt);
static __always_inline __u64 *mxedge_env_bucket(struct mxedge_env *env,
						const struct mxedge_rate_key *key);
static __always_inline void mxedge_env_new_bucket(struct mxedge_env *env,
						  const struct mxedge_rate_key *key, __u64 tat_ns);
static __always_inline __u64 *mxedge_env_new_source_tat(struct mxedge_env *env);
static __always_inline __u64 mxedge_env_now(struct mxedge_env *env);
static __always_inline __u32 mxedge_env_flow_hash_seed(struct mxedge_env *env);

#define MXEDGE_TCP_FLAGS_BYTE 13
#define MXEDGE_TCP_FLAG_SYN 0x02
#define MXEDGE_TCP_FLAG_ACK 0x10

static __always_inline int mxedge_is_local_v4(struct mxedge_env *env, const struct mxedge_config *cfg,
					      const struct mxedge_packet *pkt)
{
	__u32 dst = pkt->daddr[0], count = cfg->local_v4_count;
	int hit = 0;

	if (cfg->flags & MXEDGE_CFG_LOCAL_V4_ANY)
		return 1;
	if (cfg->flags & MXEDGE_CFG_LOCAL_V4_LPM)
		return mxedge_env_local(env, pkt);
	MXEDGE_UNROLL
	for (__u32 i = 0; i < MXEDGE_MAX_INLINE_LOCAL_V4; i++)
		hit |= i < count && *(const __u32 *)cfg->local_v4[i] == dst;
	return hit;
}

static __always_inline int mxedge_is_local_v6(struct mxedge_env *env, const struct mxedge_config *cfg,
					      const struct mxedge_packet *pkt)
{
	const __u32 *daddr = pkt->daddr;
	__u32 count = cfg->local_v6_count;
	int hit = 0;

	if (cfg->flags & MXEDGE_CFG_LOCAL_V6_ANY)
		return 1;
	if (cfg->flags & MXEDGE_CFG_LOCAL_V6_LPM)
		return mxedge_env_local(env, pkt);
	MXEDGE_UNROLL
	for (__u32 i = 0; i < MXEDGE_MAX_INLINE_LOCAL_V6; i++) {
		const __u32 *local = (const __u32 *)cfg->local_v6[i];

		hit |= i < count && local[0] == daddr[0] && local[1] == daddr[1] &&
		       local[2] == daddr[2] && local[3] == daddr[3];
	}
	return hit;
}

/* TCP to one of the configured ports on one of our addresses. */
static __always_inline int mxedge_is_smtp(struct mxedge_env *env, const struct mxedge_config *cfg,
					  const struct mxedge_packet *pkt)
{
	__u16 port = bpf_ntohs(pkt->tcp->dest);
	int hit = 0;

	if (port == 0)
		return 0; /* 0 marks unused port slots */
	MXEDGE_UNROLL
	for (int i = 0; i < MXEDGE_MAX_SMTP_PORTS; i++)
		hit |= cfg->smtp_ports[i] == port;
	if (!hit)
		return 0;
	if (pkt->family == MXEDGE_FAMILY_IPV4)
		return mxedge_is_local_v4(env, cfg, pkt);
	return mxedge_is_local_v6(env, cfg, pkt);
}

/* MXEDGE_CTR_COUNT when the SYN fits the source's budget (and is charged to it), else the drop
 * counter: drop_rate_limit over its own bucket, drop_new_source over the new-source budget. */
static __always_inline __u32 mxedge_syn_admitted(struct mxedge_env *env, const struct mxedge_config *cfg,
						 const struct mxedge_packet *pkt)
{
	struct mxedge_rate_key key = {0};
	__u64 now = mxedge_env_now(env);
	__u64 *tat;

	rate_key(pkt, &key);
	tat = mxedge_env_bucket(env, &key);
	if (!tat) {
		/* A new source. Past the new-source budget it is dropped without a bucket, so a
		 * spoofed flood cannot churn the table faster than the budget. */
		if (cfg->new_source_interval_ns) {
			__u64 *budget = mxedge_env_new_source_tat(env);

			if (budget && !gcra_step(cfg->new_source_interval_ns, cfg->new_source_burst_ns,
						 budget, now))
				return MXEDGE_CTR_DROP_NEW_SOURCE;
		}
		/* A full bucket: this SYN takes one token. Losing an insert race to another CPU
		 * admits both SYNs, which only a burst of 1 could notice. */
		mxedge_env_new_bucket(env, &key, now + cfg->syn_interval_ns);
		return MXEDGE_CTR_COUNT;
	}
	return gcra_admit(cfg, tat, now) ? MXEDGE_CTR_COUNT : MXEDGE_CTR_DROP_RATE_LIMIT;
}

static __always_inline void mxedge_set(struct mxedge_verdict *v, __u32 action, __u32 counter)
{
	v->action = action;
	v->counter = counter;
}

static __always_inline void mxedge_smtp_verdict(struct mxedge_env *env, const struct mxedge_config *cfg,
						const struct mxedge_packet *pkt,
						struct mxedge_verdict *v)
{
	__u8 tcp_flags = ((__u8 *)pkt->tcp)[MXEDGE_TCP_FLAGS_BYTE];
	int syn = (tcp_flags & (MXEDGE_TCP_FLAG_SYN | MXEDGE_TCP_FLAG_ACK)) == MXEDGE_TCP_FLAG_SYN;
	__u32 lists = mxedge_env_source_flags(env, pkt);
	__u32 workers = cfg->worker_count;
	__u32 worker, limited;

	if (lists & MXEDGE_PREFIX_BLOCKED) {
		if (!(lists & MXEDGE_PREFIX_ALLOWED)) {
			mxedge_set(v, MXEDGE_ACT_DROP, MXEDGE_CTR_DROP_BLOCKLIST);
			return;
		}
		v->allowlisted = 1;
	} else if (syn && cfg->syn_interval_ns) {
		if (lists & MXEDGE_PREFIX_ALLOWED) {
			v->allowlisted = 1;
		} else {
			limited = mxedge_syn_admitted(env, cfg, pkt);
			if (limited != MXEDGE_CTR_COUNT) {
				mxedge_set(v, MXEDGE_ACT_DROP, limited);
				return;
			}
		}
	}

	if (!(cfg->flags & MXEDGE_CFG_STEERING) || workers == 0) {
		mxedge_set(v, MXEDGE_ACT_PASS, MXEDGE_CTR_PASS_SMTP);
		return;
	}
	if (workers > MXEDGE_MAX_WORKERS)
		workers = MXEDGE_MAX_WORKERS;
	v->flow_hash = flow_hash(pkt, mxedge_env_flow_hash_seed(env));
	worker = pick_worker(v->flow_hash, workers);
	MXEDGE_OPAQUE(worker);
	if (worker >= MXEDGE_MAX_WORKERS) { /* unreachable; for the verifier */
		mxedge_set(v, MXEDGE_ACT_PASS, MXEDGE_CTR_PASS_SMTP);
		return;
	}
	v->worker = worker;
	v->cpu = cfg->worker_cpus[worker];
	mxedge_set(v, MXEDGE_ACT_STEER, MXEDGE_CTR_STEERED_WORKER0 + worker);
}

/* Classifies the frame [data, data_end) into *v (which it fills completely). */
static __always_inline void mxedge_classify(struct mxedge_env *env, void *data, void *data_end,
					    struct mxedge_verdict *v)
{
	struct mxedge_packet pkt = {0};
	const struct mxedge_config *cfg;
	__be16 proto;
	void *l3;
	int res;

	v->action = MXEDGE_ACT_PASS;
	v->counter = MXEDGE_CTR_PASS_NOT_SMTP;
	v->worker = 0;
	v->cpu = 0;
	v->allowlisted = 0;
	v->flow_hash = 0;

	res = parse_ethernet(data, data_end, &l3, &proto);
	if (res == MXEDGE_PARSE_MALFORMED) {
		mxedge_set(v, MXEDGE_ACT_DROP, MXEDGE_CTR_MALFORMED);
		return;
	}
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
		mxedge_set(v, MXEDGE_ACT_PASS, MXEDGE_CTR_PASS_FRAGMENT);
		return;
	case MXEDGE_PARSE_MALFORMED:
		mxedge_set(v, MXEDGE_ACT_DROP, MXEDGE_CTR_MALFORMED);
		return;
	default:
		return; /* pass_not_smtp */
	}

	cfg = mxedge_env_config(env);
	if (!cfg || !mxedge_is_smtp(env, cfg, &pkt))
		return; /* pass_not_smtp */
	mxedge_smtp_verdict(env, cfg, &pkt, v);
}

#endif /* MXEDGE_BPF_CLASSIFIER_H */
