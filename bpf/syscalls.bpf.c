// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * The agent's pair of syscall programs when the sockets collector is off:
 * the other collectors' hooks (bpf/syshooks.bpf.h) alone, on the raw
 * tracepoints raw_syscalls:sys_enter and sys_exit, dispatching on the
 * syscall number (bpf/syscall.bpf.h says why not syscalls:sys_*). As in
 * bpf/sockets.bpf.c, each program comes as tp_btf and as raw tracepoint:
 * user space keeps the pair the kernel loads (collectors/syscalls).
 */
#include "common.bpf.h"
#include "sock.bpf.h"
#include "classify.bpf.h"
#include "syscall.bpf.h"
#include "syshooks.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int enter(long nr, __u64 regs, bool typed)
{
	struct syscall_args a;
	if (hook_openssl && ssl_io_syscall(nr)) {
		if (read_args(regs, typed, &a))
			hook_socket_io(bpf_get_current_pid_tgid(), a.arg[0]);
		return 0;
	}
	switch (nr) {
	case NR_close:
		if ((hook_openssl || hook_gotls) && read_args(regs, typed, &a))
			hook_close(bpf_get_current_pid_tgid() >> 32, a.arg[0]);
		return 0;
	case NR_mmap:
		hook_mmap(regs, typed);
		return 0;
	}
	return 0;
}

/* The exit is attached only when the tcp collector's hook runs. */
static __always_inline int leave(__u64 regs, long ret, bool typed)
{
	long nr = syscall_nr(regs, typed);
	if (nr != NR_accept && nr != NR_accept4)
		return 0;
	struct syscall_args a;
	if (read_args(regs, typed, &a)) /* a native call: see bpf/sockets.bpf.c */
		hook_accepted(ret);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_btf, struct pt_regs *regs, long id) { return enter(id, (__u64)regs, true); }

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit_btf, struct pt_regs *regs, long ret) { return leave((__u64)regs, ret, true); }

SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx) { return enter(ctx->args[1], ctx->args[0], false); }

SEC("raw_tracepoint/sys_exit")
int sys_exit(struct bpf_raw_tracepoint_args *ctx) { return leave(ctx->args[0], ctx->args[1], false); }
