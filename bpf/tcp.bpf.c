// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * TCP retransmissions, charged to the process that owns the connection.
 *
 * The hook on tcp_retransmit_skb comes in two forms and user space attaches
 * the first one the kernel accepts: the tcp:tcp_retransmit_skb tracepoint
 * (4.15+) in its raw form, whose arguments are told apart through CO-RE
 * because they changed (recent kernels add `err` and fire it for failed
 * attempts too), else kprobes on tcp_retransmit_skb and on
 * __tcp_retransmit_skb (below).
 *
 * A retransmission runs in softirq or timer context: the current task is
 * whoever happened to be on the CPU. The owner of each socket is therefore
 * recorded where the owner is the current task: sock:inet_sock_set_state
 * entering SYN_SENT (inside connect()) and the return of accept()/accept4().
 * A socket whose owner is not known (opened before the agent started, or
 * accepted through io_uring) is reported with its inode, which user space
 * finds in /proc and writes back into the map.
 */
#include "common.bpf.h"
#include "sock.bpf.h"
#define TCPHDR_SYN 0x02

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* struct sock * -> its owner. LRU: a socket whose CLOSE was missed ages out;
 * a long-idle socket evicted by churn is found again through /proc. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_owner);
} owners SEC(".maps");

/* Force the record types into BTF so that bpf2go generates their Go mirrors. */
const struct retransmit_event *unused_retransmit_event __attribute__((unused));
const struct sock_owner *unused_sock_owner __attribute__((unused));

/* report sends one retransmission of skb on sk. max_segs bounds the segment
 * count (the kprobe runs before tcp_retransmit_skb splits skb); 0: none. */
static __always_inline void report(struct sock *sk, struct sk_buff *skb, __u32 max_segs)
{
	if (!sk)
		return;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;

	struct retransmit_event e = {};
	fill_header(&e.hdr, EVENT_RETRANSMIT);
	e.hdr.pid = 0;
	e.hdr.tid = 0;
	e.sock = (__u64)sk;
	e.family = family;
	e.state = BPF_CORE_READ(sk, __sk_common.skc_state);
	e.local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	e.remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__be32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e.local_addr, &l, 4);
		__builtin_memcpy(e.remote_addr, &r, 4);
	} else {
		BPF_CORE_READ_INTO(&e.local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e.remote_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}

	__u32 segs = 1;
	__u16 tcp_flags = 0;
	if (skb) {
		struct tcp_skb_cb *cb = (struct tcp_skb_cb *)&skb->cb[0];
		__u16 gso = BPF_CORE_READ(cb, tcp_gso_segs);
		tcp_flags = BPF_CORE_READ(cb, tcp_flags);
		if (gso > 1)
			segs = gso;
	}
	if (max_segs > 0 && segs > max_segs)
		segs = max_segs;
	e.segs = segs;
	if (tcp_flags & TCPHDR_SYN)
		e.flags |= RETRANSMIT_SYN;

	__u64 key = (__u64)sk;
	struct sock_owner *o = bpf_map_lookup_elem(&owners, &key);
	if (o) {
		e.hdr.pid = o->tgid;
		e.role = o->role;
		__builtin_memcpy(e.comm, o->comm, sizeof(e.comm));
	} else {
		e.ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	}
	output(&e, sizeof(e));
}

/* The raw form of tcp:tcp_retransmit_skb: its arguments (sk, skb, and err
 * on kernels whose record has an `err` field) rather than its record. A
 * program on a raw tracepoint is skipped only when it is already running on
 * the CPU, where a program on the classic tracepoint is skipped whenever any
 * tracing program is: a retransmission in a softirq that interrupted one of
 * the OpenSSL collector's probes would be lost. */
SEC("raw_tracepoint/tcp_retransmit_skb")
int tcp_retransmit_tp(struct bpf_raw_tracepoint_args *ctx)
{
	/* Recent kernels fire the tracepoint for failed attempts too: count
	 * only those that sent something, as older kernels did. */
	if (bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err) && (int)ctx->args[2] != 0)
		return 0;
	report((struct sock *)ctx->args[0], (struct sk_buff *)ctx->args[1], 0);
	return 0;
}

/*
 * The fallback for kernels without the tracepoint: kprobes, which run
 * before the attempt (they cannot tell failed attempts, and skb is not
 * split yet). Most resends go through tcp_retransmit_skb, which calls
 * __tcp_retransmit_skb; tail loss probes call __tcp_retransmit_skb
 * directly. Compilers inline __tcp_retransmit_skb into its wrapper on some
 * kernels (Debian's 6.1: a kprobe on it alone saw 3 resends of 44) and not
 * on others (Debian's 6.12), so both are probed: the wrapper counts and
 * marks its socket in flight for the current task until it returns, and
 * __tcp_retransmit_skb counts only a socket not so marked. A softirq that
 * interrupts a wrapper runs on the same task: the marks are a stack.
 */
#define WRAP_DEPTH 4

struct wrapped {
	__u64 sk[WRAP_DEPTH];
	__u32 depth;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* the task_struct */
	__type(value, struct wrapped);
} in_wrapper SEC(".maps");

SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(tcp_retransmit_kprobe, struct sock *sk, struct sk_buff *skb, int segs)
{
	report(sk, skb, segs > 0 ? (__u32)segs : 0);
	__u64 task = bpf_get_current_task();
	struct wrapped *w = bpf_map_lookup_elem(&in_wrapper, &task);
	if (!w) {
		struct wrapped n = {};
		bpf_map_update_elem(&in_wrapper, &task, &n, BPF_NOEXIST);
		w = bpf_map_lookup_elem(&in_wrapper, &task);
		if (!w)
			return 0;
	}
	__u32 d = w->depth;
	if (d < WRAP_DEPTH)
		w->sk[d & (WRAP_DEPTH - 1)] = (__u64)sk;
	w->depth = d + 1;
	return 0;
}

SEC("kretprobe/tcp_retransmit_skb")
int BPF_KRETPROBE(tcp_retransmit_kretprobe)
{
	__u64 task = bpf_get_current_task();
	struct wrapped *w = bpf_map_lookup_elem(&in_wrapper, &task);
	if (!w || w->depth == 0)
		return 0;
	if (--w->depth == 0)
		bpf_map_delete_elem(&in_wrapper, &task);
	return 0;
}

SEC("kprobe/__tcp_retransmit_skb")
int BPF_KPROBE(tcp_retransmit_inner_kprobe, struct sock *sk, struct sk_buff *skb, int segs)
{
	__u64 task = bpf_get_current_task();
	struct wrapped *w = bpf_map_lookup_elem(&in_wrapper, &task);
	if (w) {
		__u32 d = w->depth;
		if (d > 0 && d <= WRAP_DEPTH && w->sk[(d - 1) & (WRAP_DEPTH - 1)] == (__u64)sk)
			return 0; /* its wrapper counted it */
	}
	report(sk, skb, segs > 0 ? (__u32)segs : 0);
	return 0;
}

/* sock:inet_sock_set_state, raw: (sk, oldstate, newstate). TCP and MPTCP
 * subflows are TCP sockets; SCTP shares the tracepoint but never enters
 * SYN_SENT, and deleting a missing key is harmless. */
SEC("raw_tracepoint/inet_sock_set_state")
int tcp_set_state(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 sk = ctx->args[0];
	int state = (int)ctx->args[2];
	if (state == TCP_SYN_SENT)
		set_sock_owner(&owners, sk, OWNER_CONNECT); /* inside connect(): current owns it */
	else if (state == TCP_CLOSE)
		bpf_map_delete_elem(&owners, &sk);
	return 0;
}

/* The socket accept() and accept4() return is owned by the caller: the
 * agent's syscall programs record it in owners (bpf/syshooks.bpf.h). */
