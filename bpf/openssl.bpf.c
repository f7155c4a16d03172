// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * OpenSSL plaintext: uprobes on SSL_read/SSL_write and their _ex forms.
 *
 * SSL_read: the entry remembers the arguments per thread, the return copies
 * the plaintext. SSL_write: the data is complete at entry and is copied
 * there, so that it is in the ring before its bytes can reach a peer on this
 * node (the peer's span is linked to this one); the return only reports when
 * OpenSSL took fewer bytes than offered. Return values are C ints: keep them
 * signed 32-bit.
 *
 * SSL* to socket without per-version struct offsets: while a thread is inside
 * SSL_*, the first read/write-family syscall it makes on a TCP socket names
 * the SSL's fd (nested-syscall correlation, in the agent's raw syscall
 * programs: bpf/syshooks.bpf.h). For
 * SSL_read the window closes at return. For SSL_write it stays open until the
 * thread's next SSL_* call, because libraries that write into a memory BIO
 * (node) send the ciphertext right after SSL_write returns.
 *
 * SSL_do_handshake marks the SSL* as seen from its start: a connection
 * whose handshake the agent did not see (open before it started) has no
 * request ordinal the two ends of a cross-node lookup would agree on.
 */
#include "common.bpf.h"
#include "sock.bpf.h"
#include "plaintext.bpf.h"
#include "sslbind.bpf.h"


char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct ssl_call {
	__u64 ssl;
	__u64 buf;
	__u64 done; /* size_t *readbytes / *written of the _ex forms, else 0 */
	__u64 num;  /* bytes offered to SSL_write */
	__u32 dir;
	__u32 _pad;
};


/* In-flight calls by thread (pid_tgid). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_call);
} ssl_calls SEC(".maps");

SSL_BIND_MAPS();

/* Processes that made SSL calls, so that their exit is reported in order
 * with their data (a separate ring would let the exit overtake it). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} ssl_procs SEC(".maps");

static __always_inline void emit_data(__u64 id, struct ssl_call *c, __u64 n)
{
	struct ssl_key k = {.ssl = c->ssl, .tgid = id >> 32};
	__s32 *fd = bpf_map_lookup_elem(&ssl_fd, &k);
	emit_plaintext(c->ssl, fd ? *fd : -1, c->dir, c->buf, n);
}

static __always_inline int enter(struct pt_regs *ctx, __u32 dir, __u64 done)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call c = {
		.ssl = (__u64)PT_REGS_PARM1(ctx),
		.buf = (__u64)PT_REGS_PARM2(ctx),
		.done = done,
		.dir = dir,
	};
	if (dir == DIR_WRITE) {
		/* int num for SSL_write, size_t num for SSL_write_ex */
		c.num = done ? (__u64)PT_REGS_PARM3(ctx) : (__u64)(int)PT_REGS_PARM3(ctx);
		if ((__s64)c.num <= 0)
			return 0;
	}
	bpf_map_update_elem(&ssl_calls, &id, &c, BPF_ANY);
	bpf_map_update_elem(&pending_bind, &id, &c.ssl, BPF_ANY);
	__u32 tgid = id >> 32;
	if (!bpf_map_lookup_elem(&ssl_procs, &tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&ssl_procs, &tgid, &one, BPF_ANY);
	}
	if (dir == DIR_WRITE)
		emit_data(id, &c, c.num);
	return 0;
}

static __always_inline int leave(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *p = bpf_map_lookup_elem(&ssl_calls, &id);
	if (!p) {
		count(COUNTER_CALLS_LOST);
		return 0;
	}
	struct ssl_call c = *p;
	bpf_map_delete_elem(&ssl_calls, &id);
	if (c.dir == DIR_READ)
		bpf_map_delete_elem(&pending_bind, &id);

	int ret = (int)PT_REGS_RC(ctx);
	__u64 n = 0;
	if (c.done) {
		/* The _ex shape (SSL_read_ex, SSL_write_ex and OpenSSL's internal
		 * ssl_read_internal/ssl_write_internal): > 0 on success, count via
		 * the pointer. */
		if (ret > 0 && bpf_probe_read_user(&n, sizeof(n), (void *)c.done) != 0)
			n = 0;
	} else if (ret > 0) {
		n = ret;
	}
	if (c.dir == DIR_WRITE) {
		write_result(c.ssl, c.num, n);
		return 0;
	}
	if (n > 0)
		emit_data(id, &c, n);
	return 0;
}

SEC("uprobe/SSL_read")
int ssl_read_enter(struct pt_regs *ctx) { return enter(ctx, DIR_READ, 0); }

SEC("uprobe/SSL_write")
int ssl_write_enter(struct pt_regs *ctx) { return enter(ctx, DIR_WRITE, 0); }

SEC("uprobe/SSL_read_ex")
int ssl_read_ex_enter(struct pt_regs *ctx) { return enter(ctx, DIR_READ, (__u64)PT_REGS_PARM4(ctx)); }

SEC("uprobe/SSL_write_ex")
int ssl_write_ex_enter(struct pt_regs *ctx) { return enter(ctx, DIR_WRITE, (__u64)PT_REGS_PARM4(ctx)); }

/* SSL_do_handshake(ssl) (SSL_connect and SSL_accept call it): the agent
 * sees this SSL* from its start, so that both ends number its requests
 * from the first (sslbind.bpf.h flags its bind). One entry hit per call,
 * no return probe: a mark left by an SSL* never bound is only ever read by
 * a later SSL* at the same address, created after it, so seen whole too. */
SEC("uprobe/SSL_do_handshake")
int ssl_handshake(struct pt_regs *ctx)
{
	struct ssl_key k = {.ssl = (__u64)PT_REGS_PARM1(ctx), .tgid = bpf_get_current_pid_tgid() >> 32};
	__u8 one = 1;
	bpf_map_update_elem(&ssl_fresh, &k, &one, BPF_ANY);
	return 0;
}

/* One return program serves all four functions: the entry recorded the kind. */
SEC("uretprobe/SSL_call")
int ssl_leave(struct pt_regs *ctx) { return leave(ctx); }

/* SSL_free: the connection of this SSL* ends here (bpf/sslbind.bpf.h).
 * An entry probe only; SSL_free(NULL) is a no-op, and so are the frees of
 * a process that never read or wrote through OpenSSL. */
SEC("uprobe/SSL_free")
int ssl_free(struct pt_regs *ctx)
{
	__u64 ssl = (__u64)PT_REGS_PARM1(ctx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!ssl || !bpf_map_lookup_elem(&ssl_procs, &tgid))
		return 0;
	struct ssl_bind_maps m = {&pending_bind, &ssl_fd, &fd_ssl, &ssl_fresh, &events, &counters, wakeup_flags()};
	ssl_bind_free(&m, tgid, ssl);
	return 0;
}

/* The syscall side of the SSL* to socket binding runs in the agent's
 * syscall programs, on this object's maps (bpf/syshooks.bpf.h). */

SEC("raw_tracepoint/sched_process_exit")
int ssl_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return mark_exit((struct task_struct *)ctx->args[0], &ssl_procs);
}

SEC("raw_tracepoint/sched_process_exec")
int ssl_process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	return mark_exec((struct task_struct *)ctx->args[0]);
}
