/* Fuzz target: the packet classifier both fast paths run (bpf/parsing.h, bpf/classifier.h), compiled
 * as user-space C, as the DPDK fast path compiles it. The environment here is a small one of its
 * own (a linear longest-match over a few prefixes, a small bucket table), because the classifier is
 * what takes the hostile bytes; the DPDK tables are exercised by tests/dpdk/.
 *
 * Input: byte 0 picks the config (local addresses any / inline / LPM, steering, rate limit, new-source budget, one or
 * several workers), byte 1 the clock step; the rest is the frame. Checked for every input: the
 * parsers read nothing outside the frame (ASan), and the verdict is coherent: an exclusive counter,
 * drops only for malformed/blocklist/rate limit, a steered frame's counter is its worker's and the
 * worker exists, allowlisted only for SMTP frames. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bpf/classifier.h"

struct prefix_entry {
	__u32 family;
	__u8 addr[16];
	__u32 length;
	__u32 flags;
};

#define BUCKETS 64

struct mxedge_env {
	struct mxedge_config config;
	const struct prefix_entry *sources;
	unsigned source_count;
	struct mxedge_rate_key keys[BUCKETS];
	__u64 tat[BUCKETS];
	unsigned used;
	__u64 new_source_tat;
	__u64 now;
};

static const struct prefix_entry kSources[] = {
	{MXEDGE_FAMILY_IPV4, {198, 51, 100, 0}, 24, MXEDGE_PREFIX_IN_BLOCK | MXEDGE_PREFIX_BLOCKED},
	{MXEDGE_FAMILY_IPV4, {198, 51, 100, 7}, 32,
	 MXEDGE_PREFIX_IN_ALLOW | MXEDGE_PREFIX_ALLOWED | MXEDGE_PREFIX_BLOCKED},
	{MXEDGE_FAMILY_IPV4, {203, 0, 113, 0}, 24, MXEDGE_PREFIX_IN_ALLOW | MXEDGE_PREFIX_ALLOWED},
	{MXEDGE_FAMILY_IPV6, {0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad}, 48,
	 MXEDGE_PREFIX_IN_BLOCK | MXEDGE_PREFIX_BLOCKED},
};

static int prefix_match(const __u8 *addr, const __u8 *prefix, __u32 length)
{
	__u32 whole = length / 8, rest = length % 8;

	if (memcmp(addr, prefix, whole) != 0)
		return 0;
	return rest == 0 || ((addr[whole] ^ prefix[whole]) & (0xff << (8 - rest))) == 0;
}

static const struct mxedge_config *mxedge_env_config(struct mxedge_env *env)
{
	return &env->config;
}

static __u32 longest(const struct prefix_entry *table, unsigned count, __u32 family, const __u32 *addr)
{
	__u32 best_len = 0, flags = 0;
	int found = 0;

	for (unsigned i = 0; i < count; i++) {
		if (table[i].family != family || !prefix_match((const __u8 *)addr, table[i].addr, table[i].length))
			continue;
		if (!found || table[i].length >= best_len) {
			best_len = table[i].length;
			flags = table[i].flags;
			found = 1;
		}
	}
	return flags;
}

static __u32 mxedge_env_source_flags(struct mxedge_env *env, const struct mxedge_packet *pkt)
{
	return longest(env->sources, env->source_count, pkt->family, pkt->saddr);
}

static int mxedge_env_local(struct mxedge_env *env, const struct mxedge_packet *pkt)
{
	static const struct prefix_entry local[] = {
		{MXEDGE_FAMILY_IPV4, {192, 0, 2, 0}, 28, 1},
		{MXEDGE_FAMILY_IPV6, {0x20, 0x01, 0x0d, 0xb8, 0, 1}, 64, 1},
	};
	(void)env;
	return longest(local, 2, pkt->family, pkt->daddr) != 0;
}

static __u64 *mxedge_env_bucket(struct mxedge_env *env, const struct mxedge_rate_key *key)
{
	for (unsigned i = 0; i < env->used; i++)
		if (memcmp(&env->keys[i], key, sizeof *key) == 0)
			return &env->tat[i];
	return NULL;
}

static void mxedge_env_new_bucket(struct mxedge_env *env, const struct mxedge_rate_key *key, __u64 tat_ns)
{
	if (env->used == BUCKETS)
		return; /* full: admitted without a bucket */
	env->keys[env->used] = *key;
	env->tat[env->used++] = tat_ns;
}

static __u64 *mxedge_env_new_source_tat(struct mxedge_env *env)
{
	return &env->new_source_tat;
}

static __u64 mxedge_env_now(struct mxedge_env *env)
{
	return env->now;
}

static __u32 mxedge_env_flow_hash_seed(struct mxedge_env *env)
{
	(void)env;
	return 0x6d786467;
}

static struct mxedge_env g_env;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mxedge_verdict v;
	struct mxedge_config *c = &g_env.config;
	uint8_t mode, step;
	void *frame;

	if (size < 2)
		return 0;
	mode = data[0];
	step = data[1];
	data += 2;
	size -= 2;

	memset(c, 0, sizeof *c);
	c->smtp_ports[0] = 25;
	c->smtp_ports[1] = 465;
	c->smtp_ports[2] = 587;
	switch (mode & 3) {
	case 0:
		c->flags |= MXEDGE_CFG_LOCAL_V4_ANY | MXEDGE_CFG_LOCAL_V6_ANY;
		break;
	case 1: /* inline: 192.0.2.1 and 2001:db8:1::1 */
		c->local_v4_count = 1;
		c->local_v4[0][0] = 192, c->local_v4[0][1] = 0, c->local_v4[0][2] = 2, c->local_v4[0][3] = 1;
		c->local_v6_count = 1;
		c->local_v6[0][0] = 0x20, c->local_v6[0][1] = 0x01, c->local_v6[0][2] = 0x0d;
		c->local_v6[0][3] = 0xb8, c->local_v6[0][5] = 1, c->local_v6[0][15] = 1;
		break;
	default:
		c->flags |= MXEDGE_CFG_LOCAL_V4_LPM | MXEDGE_CFG_LOCAL_V6_LPM;
	}
	if (mode & 4)
		c->flags |= MXEDGE_CFG_STEERING;
	if (mode & 8) {
		c->syn_interval_ns = 200000000; /* 5 per second, burst 2 */
		c->syn_burst_ns = 200000000;
		if (mode & 128) { /* new sources: 2 per second, burst 1 */
			c->new_source_interval_ns = 500000000;
			c->new_source_burst_ns = 0;
		}
	}
	c->worker_count = (mode >> 4) & 7; /* 0..7 workers */
	for (unsigned i = 0; i < c->worker_count; i++)
		c->worker_cpus[i] = i;
	g_env.sources = kSources;
	g_env.source_count = sizeof kSources / sizeof kSources[0];
	g_env.now += (__u64)step * 1000000;

	/* A copy of exactly `size` bytes, so ASan sees any read past the frame. */
	frame = size ? __builtin_malloc(size) : NULL;
	if (size)
		memcpy(frame, data, size);
	mxedge_classify(&g_env, frame, (char *)frame + size, &v);

	if (v.counter >= MXEDGE_CTR_COUNT || v.counter == MXEDGE_CTR_ALLOWLISTED)
		__builtin_trap();
	switch (v.action) {
	case MXEDGE_ACT_DROP:
		if (v.counter != MXEDGE_CTR_MALFORMED && v.counter != MXEDGE_CTR_DROP_BLOCKLIST &&
		    v.counter != MXEDGE_CTR_DROP_RATE_LIMIT &&
		    !(v.counter == MXEDGE_CTR_DROP_NEW_SOURCE && c->new_source_interval_ns))
			__builtin_trap();
		break;
	case MXEDGE_ACT_STEER:
		if (!(c->flags & MXEDGE_CFG_STEERING) || v.worker >= c->worker_count ||
		    v.counter != MXEDGE_CTR_STEERED_WORKER0 + v.worker || v.cpu != c->worker_cpus[v.worker])
			__builtin_trap();
		break;
	case MXEDGE_ACT_PASS:
		if (v.counter != MXEDGE_CTR_PASS_NOT_SMTP && v.counter != MXEDGE_CTR_PASS_FRAGMENT &&
		    v.counter != MXEDGE_CTR_PASS_SMTP)
			__builtin_trap();
		break;
	default:
		__builtin_trap();
	}
	if (v.allowlisted && v.action == MXEDGE_ACT_PASS && v.counter != MXEDGE_CTR_PASS_SMTP)
		__builtin_trap();
	__builtin_free(frame);
	return 0;
}
