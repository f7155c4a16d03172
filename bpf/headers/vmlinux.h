/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * A trimmed vmlinux.h: only the kernel types Periscope's programs read,
 * each marked preserve_access_index so that CO-RE relocates field offsets
 * against the running kernel's BTF at load time. Because no offset here is
 * trusted, the same header serves amd64 and arm64; only pt_regs differs per
 * architecture. Regenerate nothing: add a type by hand when a program needs
 * one, checking its fields with `bpftool btf dump file /sys/kernel/btf/vmlinux`.
 */
#ifndef __PERISCOPE_VMLINUX_H__
#define __PERISCOPE_VMLINUX_H__
/* bpf_tracing.h picks kernel pt_regs field names when this is defined. */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef short int __s16;
typedef short unsigned int __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long int __s64;
typedef long long unsigned int __u64;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef int pid_t;
typedef unsigned short umode_t;
typedef _Bool bool;
enum { false = 0, true = 1 };

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PROG_ARRAY = 3,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	long unsigned int r15;
	long unsigned int r14;
	long unsigned int r13;
	long unsigned int r12;
	long unsigned int bp;
	long unsigned int bx;
	long unsigned int r11;
	long unsigned int r10;
	long unsigned int r9;
	long unsigned int r8;
	long unsigned int ax;
	long unsigned int cx;
	long unsigned int dx;
	long unsigned int si;
	long unsigned int di;
	long unsigned int orig_ax;
	long unsigned int ip;
	long unsigned int cs;
	long unsigned int flags;
	long unsigned int sp;
	long unsigned int ss;
};
#elif defined(__TARGET_ARCH_arm64)
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
struct pt_regs {
	union {
		struct user_pt_regs user_regs;
		struct {
			__u64 regs[31];
			__u64 sp;
			__u64 pc;
			__u64 pstate;
		};
	};
	__u64 orig_x0;
	__s32 syscallno;
	__u32 unused2;
	__u64 sdei_ttbr1;
	__u64 pmr_save;
	__u64 stackframe[2];
	__u64 lockdep_hardirqs;
	__u64 exit_rcu;
};
#else
#error "unsupported architecture: build with -D__TARGET_ARCH_x86 or -D__TARGET_ARCH_arm64"
#endif

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct trace_entry {
	short unsigned int type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

struct trace_event_raw_sys_enter {
	struct trace_entry ent;
	long int id;
	long unsigned int args[6];
};

struct trace_event_raw_sys_exit {
	struct trace_entry ent;
	long int id;
	long int ret;
};

/* tcp:tcp_retransmit_skb in recent kernels: its own event class, with the
 * error of the attempt (the event also fires for attempts that failed, and
 * its raw form has err as third argument). Only the existence of err is
 * asked; before, it shared the class tcp_event_sk_skb with tcp_send_reset. */
struct trace_event_raw_tcp_retransmit_skb {
	int err;
};

struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be16 u6_addr16[8];
		__be32 u6_addr32[4];
	} in6_u;
};

struct sock_common {
	union {
		struct {
			__be32 skc_daddr;
			__be32 skc_rcv_saddr;
		};
	};
	union {
		struct {
			__be16 skc_dport;
			__u16 skc_num;
		};
	};
	short unsigned int skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct socket;

struct sock {
	struct sock_common __sk_common;
	struct socket *sk_socket;
};

/* The stream counters of a TCP socket (struct sock comes first in it;
 * CO-RE finds the fields by name). bytes_received since 4.1, bytes_sent
 * since 4.19. */
struct tcp_sock {
	u32 rcv_nxt;
	u32 copied_seq;
	u32 snd_nxt;
	u32 write_seq;
	u64 bytes_received;
	u64 bytes_sent;
};

struct file;

struct socket {
	short int type;
	struct file *file;
	struct sock *sk;
};

struct inode {
	umode_t i_mode;
	long unsigned int i_ino;
};

struct sk_buff {
	char cb[48];
};

/* What TCP keeps in sk_buff.cb (TCP_SKB_CB). */
struct tcp_skb_cb {
	__u32 seq;
	__u32 end_seq;
	union {
		u32 tcp_tw_isn;
		struct {
			u16 tcp_gso_segs;
			u16 tcp_gso_size;
		};
	};
	__u16 tcp_flags;
};

struct file {
	struct inode *f_inode;
	void *private_data;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
};

struct linux_binprm {
	const char *filename;
};

struct task_struct {
	pid_t pid;
	pid_t tgid;
	struct task_struct *group_leader;
	struct task_struct *real_parent;
	struct files_struct *files;
	struct mm_struct *mm;
};

#pragma clang attribute pop

#endif /* __PERISCOPE_VMLINUX_H__ */
