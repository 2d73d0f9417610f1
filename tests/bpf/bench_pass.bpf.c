// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* bench_pass.bpf.c: the floor for tests/bpf/bench_xdp.cc: an XDP program that only returns
 * XDP_PASS. */
#include <linux/bpf.h>

#include <bpf/bpf_helpers.h>

SEC("xdp")
int bench_pass(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
