/* maps.h: the maps of the XDP program (xdp_smtp.bpf.c). The loader pins each of them under its pin
 * directory by the name given here, so blocklists, rate-limit state and counters survive a restart
 * of the data plane; it writes them only through dataplane/xdp/xdp_program.h. Key and value layouts
 * are in mxedge_abi.h.
 */
#ifndef MXEDGE_BPF_MAPS_H
#define MXEDGE_BPF_MAPS_H

#include <linux/bpf.h>
#include <linux/types.h>

#include <bpf/bpf_helpers.h>

#include "mxedge_abi.h"

/* Runtime configuration: SMTP ports, local-address mode, rate, worker set, steering switch. One
 * entry, rewritten whole by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mxedge_config);
} config SEC(".maps");

/* IPv4 source prefixes of the allowlist and the blocklist, with their MXEDGE_PREFIX_* flags. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MXEDGE_SOURCE_PREFIX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mxedge_lpm_v4_key);
	__type(value, struct mxedge_prefix_value);
} source_lists_v4 SEC(".maps");

/* IPv6 source prefixes of the allowlist and the blocklist, with their MXEDGE_PREFIX_* flags. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MXEDGE_SOURCE_PREFIX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mxedge_lpm_v6_key);
	__type(value, struct mxedge_prefix_value);
} source_lists_v6 SEC(".maps");

/* IPv4 destinations that are ours (consulted when MXEDGE_CFG_LOCAL_V4_LPM). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MXEDGE_LOCAL_PREFIX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mxedge_lpm_v4_key);
	__type(value, struct mxedge_prefix_value);
} local_v4 SEC(".maps");

/* IPv6 destinations that are ours (consulted when MXEDGE_CFG_LOCAL_V6_LPM). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MXEDGE_LOCAL_PREFIX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mxedge_lpm_v6_key);
	__type(value, struct mxedge_prefix_value);
} local_v6 SEC(".maps");

/* SYN token buckets per source /32 or /64. LRU, so a flood of spoofed sources evicts old buckets
 * instead of failing inserts (an evicted source restarts with a full bucket: per-source limits
 * cannot stop a spoofed flood; SYN cookies do that). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MXEDGE_RATE_BUCKETS);
	__type(key, struct mxedge_rate_key);
	__type(value, struct mxedge_rate_bucket);
} syn_buckets SEC(".maps");

/* This CPU's new-source budget: the GCRA tat_ns that SYNs from sources without a bucket are
 * charged to (mxedge_config.new_source_interval_ns). Per CPU, so it needs no atomics to scale. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} new_source_tat SEC(".maps");

/* CPU id -> redirect queue (qsize) of that CPU. The loader creates an entry for each worker's CPU;
 * a redirect to a CPU without one falls back to XDP_PASS. */
struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, MXEDGE_MAX_CPUS);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} worker_cpumap SEC(".maps");

/* Packets and bytes per verdict and reason, per CPU; summed only when read. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mxedge_counters);
} counters SEC(".maps");

#endif /* MXEDGE_BPF_MAPS_H */
