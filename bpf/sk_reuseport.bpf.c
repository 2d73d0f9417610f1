// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* sk_reuseport.bpf.c: socket selection for one SO_REUSEPORT group of the data plane (attach point:
 * SO_ATTACH_REUSEPORT_EBPF on a listening socket of the group). Each worker owns one listening
 * socket of every group and runs pinned to one CPU. The XDP program steers a flow to its worker's
 * CPU, so the SYN is processed there; this program then picks, from the group's sockarray, the
 * socket of the worker pinned to the current CPU, so the connection is accepted by the worker that
 * will see all its packets. With no worker on this CPU (or the worker's socket gone), it selects
 * nothing and the kernel falls back to its own hash selection.
 *
 * The loader instantiates this object once per listener (a sockarray can only select within its own
 * group: bpf_sk_select_reuseport returns -EBADFD for a socket of another group).
 *
 * SECURITY: runs on SYNs from unauthenticated peers but reads nothing from the packet.
 */
#include <linux/bpf.h>
#include <linux/types.h>

#include <bpf/bpf_helpers.h>

#include "mxedge_abi.h"

/* The group's listening sockets by worker index (value: socket fd on update, socket cookie on
 * lookup). */
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, MXEDGE_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} worker_socks SEC(".maps");

/* CPU id -> the worker pinned to it (struct mxedge_cpu_worker; zero = none). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MXEDGE_MAX_CPUS);
	__type(key, __u32);
	__type(value, struct mxedge_cpu_worker);
} cpu_workers SEC(".maps");

/* Selection outcomes per CPU (enum mxedge_reuseport_counter_index); summed only when read. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MXEDGE_RP_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} rp_counters SEC(".maps");

static __always_inline int outcome(__u32 index)
{
	__u64 *n = bpf_map_lookup_elem(&rp_counters, &index);

	if (n)
		(*n)++;
	return SK_PASS;
}

SEC("sk_reuseport")
int mxedge_select_worker(struct sk_reuseport_md *md)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct mxedge_cpu_worker *w = bpf_map_lookup_elem(&cpu_workers, &cpu);
	__u32 worker;

	if (!w || !(w->flags & MXEDGE_CPU_HAS_WORKER))
		return outcome(MXEDGE_RP_NO_WORKER);
	worker = w->worker;
	if (bpf_sk_select_reuseport(md, &worker_socks, &worker, 0) != 0)
		return outcome(MXEDGE_RP_SELECT_FAILED);
	return outcome(MXEDGE_RP_SELECTED);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
