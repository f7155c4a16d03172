// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * An experiment for issue 15 (one uprobe hit per Go HTTP/1 server request):
 * which goroutine reads each request's bytes, relative to the goroutine
 * that serves it, and what a read-side hook outside the sockets collector
 * (the tcp_rcv_space_adjust tracepoint, which the kernel fires in
 * tcp_recvmsg for each copy of received bytes) costs. Events of one
 * process go to a ring; user space (main.go) orders and counts them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 target = 0;

enum { EV_SERVE = 1, EV_FINISH = 2, EV_READ = 3, EV_RCV = 4 };

struct ev {
	__u64 ts;
	__u64 g;
	__u64 x;   /* fd (EV_READ), struct sock * (EV_RCV) */
	__s64 ret; /* bytes read (EV_READ) */
	__u32 tid;
	__u32 kind;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} reading SEC(".maps");

/* What a production hook would look up per received copy: a socket's
 * entry. Nothing is ever stored: every lookup misses, as it would for
 * every socket but the Go servers'. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} armed SEC(".maps");

/* The repository's vmlinux.h is trimmed: the thread's TLS base, by CO-RE. */
struct thread_struct___ro {
	unsigned long fsbase;
} __attribute__((preserve_access_index));
struct task_struct___ro {
	struct thread_struct___ro thread;
} __attribute__((preserve_access_index));

/* cur_g is the running goroutine of the current thread, where the Go
 * runtime keeps it on amd64: the word below the thread's TLS base. */
static __always_inline __u64 cur_g(void)
{
	struct task_struct___ro *t = (struct task_struct___ro *)bpf_get_current_task();
	__u64 fs = BPF_CORE_READ(t, thread.fsbase);
	__u64 g = 0;
	if (fs)
		bpf_probe_read_user(&g, sizeof(g), (void *)(fs - 8));
	return g;
}

static __always_inline bool ours(void) { return (bpf_get_current_pid_tgid() >> 32) == target; }

static __always_inline void emit(__u32 kind, __u64 g, __u64 x, __s64 ret)
{
	struct ev *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->ts = bpf_ktime_get_ns();
	e->g = g;
	e->x = x;
	e->ret = ret;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->kind = kind;
	bpf_ringbuf_submit(e, 0);
}

SEC("uprobe")
int serve(struct pt_regs *ctx)
{
	emit(EV_SERVE, ctx->r14, 0, 0);
	return 0;
}

SEC("uprobe")
int finish(struct pt_regs *ctx)
{
	emit(EV_FINISH, ctx->r14, 0, 0);
	return 0;
}

#define NR_READ 0

SEC("raw_tracepoint/sys_enter")
int read_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] != NR_READ || !ours())
		return 0;
	struct pt_regs *r = (struct pt_regs *)ctx->args[0];
	__u64 fd = BPF_CORE_READ(r, di);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&reading, &tid, &fd, BPF_ANY);
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int read_exit(struct bpf_raw_tracepoint_args *ctx)
{
	if (!ours())
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *fd = bpf_map_lookup_elem(&reading, &tid);
	if (!fd)
		return 0;
	__u64 f = *fd;
	bpf_map_delete_elem(&reading, &tid);
	long ret = (long)ctx->args[1];
	if (ret > 0)
		emit(EV_READ, cur_g(), f, ret);
	return 0;
}

/* tcp_rcv_space_adjust(sk): one run per copy of received bytes in
 * tcp_recvmsg. The lookup every run would pay comes first. */
SEC("raw_tracepoint/tcp_rcv_space_adjust")
int rcv(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 sk = ctx->args[0];
	if (bpf_map_lookup_elem(&armed, &sk) || !ours())
		return 0;
	emit(EV_RCV, cur_g(), sk, 0);
	return 0;
}

/*
 * The cost comparison (readorder -mode two|one): today's kernel side per
 * request reduced to its two uprobe hits (serve_hit, finish_hit: nothing
 * but a return), against one uprobe hit and the read side of the proposed
 * design: a tp_btf program on tcp_rcv_space_adjust that finds the socket's
 * entry in socket-local storage (no hash: a miss on every other socket is
 * a pointer test) and, for the Go server's sockets, stores the time.
 */
SEC("uprobe")
int serve_hit(struct pt_regs *ctx) { return 0; }

SEC("uprobe")
int finish_hit(struct pt_regs *ctx) { return 0; }

/* uapi values the trimmed vmlinux.h leaves out */
#define MAP_SK_STORAGE 24 /* MAP_SK_STORAGE */
#define SK_STORAGE_CREATE 1 /* SK_STORAGE_CREATE */
#define NO_PREALLOC 1 /* BPF_F_NO_PREALLOC */

struct sk_start {
	__u64 start;
};

struct {
	__uint(type, MAP_SK_STORAGE);
	__uint(map_flags, NO_PREALLOC);
	__type(key, int);
	__type(value, struct sk_start);
} starts SEC(".maps");

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(rcv_store, struct sock *sk)
{
	struct sk_start *s = bpf_sk_storage_get(&starts, sk, 0, 0);
	if (!s) {
		if (!ours())
			return 0;
		s = bpf_sk_storage_get(&starts, sk, 0, SK_STORAGE_CREATE);
		if (!s)
			return 0;
	}
	if (!s->start)
		s->start = bpf_ktime_get_ns();
	return 0;
}
