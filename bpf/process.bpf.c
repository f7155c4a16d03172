// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Process discovery without kprobes: raw tracepoints on exec, fork and exit
 * (their arguments are task_struct pointers read through CO-RE, so record
 * layout changes across kernels do not matter). Executable file mappings,
 * which is how late-loaded libraries (dlopen, python's lazy `import ssl`)
 * are noticed, come from the agent's syscall programs into this ring.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const struct exec_event *unused_exec_event __attribute__((unused));

/* sched_process_exec(p, old_pid, bprm): the new program's path and argv
 * travel with the event; argv is in the new program's memory, which the
 * kernel has just written. */
SEC("raw_tracepoint/sched_process_exec")
int process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	struct exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_DROPS);
		return 0;
	}
	fill_header(&e->hdr, EVENT_EXEC);
	e->hdr.pid = BPF_CORE_READ(t, tgid);
	e->ppid = BPF_CORE_READ(t, real_parent, tgid);
	e->filename[0] = 0;
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	__u64 start = BPF_CORE_READ(t, mm, arg_start), end = BPF_CORE_READ(t, mm, arg_end);
	__u64 n = end > start ? end - start : 0;
	if (n > EXEC_ARGS_CAP)
		n = EXEC_ARGS_CAP;
	e->args_len = 0;
	if (n > 0 && bpf_probe_read_user(e->args, n, (void *)start) == 0)
		e->args_len = n;
	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}

SEC("raw_tracepoint/sched_process_fork")
int process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 pid = BPF_CORE_READ(child, pid);
	if (pid != BPF_CORE_READ(child, tgid))
		return 0; /* a new thread, not a new process */
	emit_proc_event(EVENT_FORK, pid, BPF_CORE_READ(parent, tgid), -1);
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx->args[0];
	__u32 pid = BPF_CORE_READ(t, pid);
	if (pid != BPF_CORE_READ(t, tgid))
		return 0; /* a thread, not the group leader */
	emit_proc_event(EVENT_EXIT, pid, 0, -1);
	return 0;
}

/* Executable file mappings (mmap with PROT_EXEC) are reported in this
 * ring by the agent's syscall programs (bpf/syshooks.bpf.h). */
