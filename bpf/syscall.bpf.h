/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Syscalls seen from the raw tracepoints raw_syscalls:sys_enter and
 * sys_exit, which run for every syscall of the node: one program pair
 * dispatches on the syscall number instead of one program per syscall on
 * the syscalls:sys_{enter,exit}_* tracepoints, where the kernel builds a
 * perf record of the arguments for every event before any program runs
 * (that record alone cost more than the whole budget of a syscall here).
 *
 * The raw tracepoints pass the task's user registers and the number (enter)
 * or the return value (exit); the arguments are read from the registers of
 * the syscall ABI. Numbers differ per architecture: the tables below are
 * chosen at compile time (bpf2go builds each target).
 */
#ifndef __PERISCOPE_SYSCALL_BPF_H__
#define __PERISCOPE_SYSCALL_BPF_H__

#if defined(__TARGET_ARCH_x86)
#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_mmap 9
#define NR_readv 19
#define NR_writev 20
#define NR_dup 32
#define NR_dup2 33
#define NR_sendfile 40
#define NR_socket 41
#define NR_accept 43
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_accept4 288
#define NR_dup3 292
#define NR_recvmmsg 299
#define NR_sendmmsg 307
#define NR_close_range 436
/* The arguments of a syscall (arch/x86/entry/entry_64.S): di, si, dx, r10,
 * r8, r9. The kernel leaves them in place at exit (the result goes to ax). */
#define SYSCALL_ARG0(r) ((r)->di)
#define SYSCALL_ARG1(r) ((r)->si)
#define SYSCALL_ARG2(r) ((r)->dx)
#define SYSCALL_ARG3(r) ((r)->r10)
#define SYSCALL_ARG4(r) ((r)->r8)
#define SYSCALL_NR(r) ((r)->orig_ax)
/* A 64-bit task's syscall: ia32 syscalls (int 0x80, sysenter) of 32-bit
 * programs reach the same tracepoints with other numbers; their user code
 * segment is __USER32_CS, not __USER_CS (0x33). */
#define SYSCALL_MODE(r) ((r)->cs)
#define SYSCALL_NATIVE(mode) ((mode) == 0x33)
#elif defined(__TARGET_ARCH_arm64)
#define NR_dup 23
#define NR_dup3 24
#define NR_close 57
#define NR_read 63
#define NR_write 64
#define NR_readv 65
#define NR_writev 66
#define NR_sendfile 71
#define NR_mmap 222
#define NR_socket 198
#define NR_accept 202
#define NR_sendto 206
#define NR_recvfrom 207
#define NR_sendmsg 211
#define NR_recvmsg 212
#define NR_accept4 242
#define NR_recvmmsg 243
#define NR_sendmmsg 269
#define NR_close_range 436
/* No dup2: arm64 has only dup3. */
#define NR_dup2 (-2)
/* The arguments: x0-x5. x0 is overwritten by the result at exit: its value
 * at entry is kept in orig_x0. */
#define SYSCALL_ARG0(r) ((r)->orig_x0)
#define SYSCALL_ARG1(r) ((r)->regs[1])
#define SYSCALL_ARG2(r) ((r)->regs[2])
#define SYSCALL_ARG3(r) ((r)->regs[3])
#define SYSCALL_ARG4(r) ((r)->regs[4])
#define SYSCALL_NR(r) ((r)->syscallno)
/* AArch32 tasks (PSR_MODE32_BIT) use other numbers. */
#define SYSCALL_MODE(r) ((r)->pstate)
#define SYSCALL_NATIVE(mode) (!((mode) & 0x10))
#endif

/* The first arguments of the syscall being entered or left. */
struct syscall_args {
	__u64 arg[4];
};

/* The helpers syscall_args reads registers with when the kernel has them
 * (CO-RE tells: bpf_get_current_task_btf 5.11, common.bpf.h, and
 * bpf_task_pt_regs 5.15). */
static __always_inline bool have_task_regs(void)
{
	return bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs) && have_task_btf();
}

/* regs_args reads the arguments of a syscall from its user registers r,
 * a typed pointer (tp_btf): plain loads. It returns false for a syscall of
 * another ABI (a 32-bit program). */
static __always_inline bool regs_args(struct pt_regs *r, struct syscall_args *a)
{
	__u64 mode = SYSCALL_MODE(r);
	a->arg[0] = SYSCALL_ARG0(r);
	a->arg[1] = SYSCALL_ARG1(r);
	a->arg[2] = SYSCALL_ARG2(r);
	a->arg[3] = SYSCALL_ARG3(r);
	return SYSCALL_NATIVE(mode);
}

/* syscall_args reads the arguments of the current task's syscall from its
 * user registers regs (the raw tracepoints' first argument). It returns
 * false for a syscall of another ABI (a 32-bit program). Where the kernel
 * hands out the registers as a typed pointer they are plain loads; older
 * kernels copy them field by field. */
static __always_inline bool syscall_args(__u64 regs, struct syscall_args *a)
{
	if (have_task_regs()) {
		struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
		return r && regs_args(r, a);
	}
	struct pt_regs *r = (struct pt_regs *)regs;
	__u64 mode = 0;
	if (bpf_core_read(&mode, sizeof(mode), &SYSCALL_MODE(r)) != 0 || !SYSCALL_NATIVE(mode))
		return false;
	bpf_core_read(&a->arg[0], sizeof(a->arg[0]), &SYSCALL_ARG0(r));
	bpf_core_read(&a->arg[1], sizeof(a->arg[1]), &SYSCALL_ARG1(r));
	bpf_core_read(&a->arg[2], sizeof(a->arg[2]), &SYSCALL_ARG2(r));
	bpf_core_read(&a->arg[3], sizeof(a->arg[3]), &SYSCALL_ARG3(r));
	return true;
}

/* read_args reads the arguments of the syscall from its registers: a
 * typed pointer (tp_btf: plain loads) or an address (raw tracepoint). */
static __always_inline bool read_args(__u64 regs, bool typed, struct syscall_args *a)
{
	if (typed)
		return regs_args((struct pt_regs *)regs, a);
	return syscall_args(regs, a);
}

/* read_arg4 returns the fifth argument of the syscall (mmap's fd), read
 * as read_args does. */
static __always_inline __u64 read_arg4(__u64 regs, bool typed)
{
	if (typed)
		return SYSCALL_ARG4((struct pt_regs *)regs);
	struct pt_regs *r = (struct pt_regs *)regs;
	if (have_task_regs())
		r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 v = 0;
	if (r)
		bpf_core_read(&v, sizeof(v), &SYSCALL_ARG4(r));
	return v;
}

/* syscall_nr returns the number of the syscall whose user registers are
 * regs (at sys_exit, which is not given it), read as read_args does. */
static __always_inline long syscall_nr(__u64 regs, bool typed)
{
	struct pt_regs *r = (struct pt_regs *)regs;
	if (typed)
		return SYSCALL_NR(r);
	typeof(SYSCALL_NR(r)) nr = -1;
	if (bpf_core_read(&nr, sizeof(nr), &SYSCALL_NR(r)) != 0)
		return -1;
	return nr;
}

#endif /* __PERISCOPE_SYSCALL_BPF_H__ */
