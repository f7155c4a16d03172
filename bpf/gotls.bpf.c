// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Go crypto/tls plaintext, for any Go program (grpc-go, net/http, ...), from
 * the binary alone (Go >= 1.17 register ABI). Plain uprobes only, each on
 * an instruction the kernel emulates (a conditional branch or a direct
 * call: ~0.6 us a hit here, against ~20 us for an instruction it must
 * single-step); no uretprobes (goroutine stacks move) and no probes on RET
 * (single-stepped).
 *
 *   crypto/tls.(*Conn).Write(c, b []byte), on its stack-check branch:
 *     the plaintext is complete at entry (c in RAX, b in RBX/RCX). One hit.
 *   crypto/tls.(*Conn).Read(c, b []byte), on its stack-check branch:
 *     remembers c for the goroutine.
 *   the CALL runtime.memmove(dst, src, n) inside Read (the copy of
 *     bytes.Reader.Read, inlined): the plaintext handed to the caller is
 *     the n bytes at src (dst is b; the copy has not happened yet). Two
 *     hits per Read that returns data, one per Read that fails.
 *
 * A *tls.Conn maps to its socket through struct field offsets (DWARF or
 * the table in symbols/): c.conn (a net.Conn holding a *net.TCPConn) ->
 * conn.fd -> netFD.pfd.Sysfd; the bytes are keyed by the *tls.Conn and
 * bound to that descriptor, whose close ends the connection.
 *
 * One request, one span: connections net/http serves or dials are the
 * gohttp collector's, which reports their requests whole; their bytes are
 * never copied. One emulated hit per connection marks them: the server's
 * on the stack-check branch of net/http.(*conn).serve (its c.rwc, a
 * *tls.Conn when the server speaks TLS), the client's on the direct call
 * to the handshake in (*persistConn).addTLS (receiver in RAX). Connections
 * these marks miss (open before the probes were attached, or dialled by
 * the program: Transport.DialTLSContext) are learnt from the gohttp
 * collector, which records the socket of every request it sees in
 * nethttp_conns: a connection found there before its first byte is
 * copied is left alone, its bind record never sent.
 */
#include "common.bpf.h"
#include "sock.bpf.h"
#include "go.bpf.h"
#include "nethttp.bpf.h"
#include "plaintext.bpf.h"
#include "gotlsconn.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#if defined(__TARGET_ARCH_x86)
/* runtime.memmove(to, from, n) in the register ABI */
#define MEMMOVE_SRC(r) ((r)->bx)
#define MEMMOVE_LEN(r) ((r)->cx)
#elif defined(__TARGET_ARCH_arm64)
#define MEMMOVE_SRC(r) ((r)->regs[1])
#define MEMMOVE_LEN(r) ((r)->regs[2])
#endif

/* conn_state.fd of a connection marked by net/http's server before its
 * socket was looked up */
#define FD_UNKNOWN -2
/* How long such a mark waits for the connection's first TLS bytes. The
 * server marks every connection, plain ones (a *net.TCPConn, never seen by
 * the TLS probes) too: an old mark left by one must not claim a *tls.Conn
 * that the allocator puts at the same address later. */
#define MARK_TTL_NS (10ULL * 1000000000ULL)

/* Connections seen, by *tls.Conn. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct conn_state);
} conns SEC(".maps");

/* Socket -> *tls.Conn, so that close(fd) ends the connection. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fd_key);
	__type(value, __u64);
} fd_conn SEC(".maps");

/* Reads in flight: the *tls.Conn a goroutine is reading. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct g_key);
	__type(value, __u64);
} reads SEC(".maps");

/* Processes that made TLS calls report their exit in this ring, in order
 * with their data. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} tls_procs SEC(".maps");


const struct go_offsets *unused_go_offsets __attribute__((unused));

/* tls_fd is the descriptor of the socket under the *tls.Conn c, or -1. */
static __always_inline __s32 tls_fd(struct go_offsets *o, __u64 c)
{
	if (!o || o->tls_conn_conn < 0)
		return -1;
	return conn_fd(o, c, o->tls_conn_conn, false);
}

/* remember records c's socket (and flags) and maps the socket back to c. */
static __always_inline void remember(__u32 tgid, __u64 c, __s32 fd, __u32 flags)
{
	struct conn_key k = {.conn = c, .tgid = tgid};
	struct conn_state st = {.fd = fd, .flags = flags};
	if (fd == FD_UNKNOWN)
		st.marked = bpf_ktime_get_ns();
	bpf_map_update_elem(&conns, &k, &st, BPF_ANY);
	if (fd >= 0) {
		struct fd_key fk = {.tgid = tgid, .fd = fd};
		bpf_map_update_elem(&fd_conn, &fk, &c, BPF_ANY);
	}
}

/* gohttp_owns tells whether the gohttp collector saw a request on c, whose
 * socket is fd. */
static __always_inline bool gohttp_owns(__u32 tgid, __u64 c, __s32 fd)
{
	if (fd < 0)
		return false;
	struct nethttp_conn *v = nethttp_lookup(tgid, fd);
	return v && v->conn == c;
}

/* state returns what is known of c, learning its socket the first time c
 * is seen. */
static __always_inline struct conn_state *state(struct pt_regs *ctx, __u64 c)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct conn_key k = {.conn = c, .tgid = tgid};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &k);
	if (st && st->fd == FD_UNKNOWN) {
		/* Marked by net/http's server: c is a *tls.Conn, whose socket
		 * can be read now; an old mark is another connection's. */
		if (bpf_ktime_get_ns() - st->marked < MARK_TTL_NS) {
			__u32 flags = st->flags;
			remember(tgid, c, tls_fd(offsets_of(ctx), c), flags);
			return bpf_map_lookup_elem(&conns, &k);
		}
		st = 0;
	}
	if (st)
		return st;
	__s32 fd = tls_fd(offsets_of(ctx), c);
	remember(tgid, c, fd, 0);
	if (!bpf_map_lookup_elem(&tls_procs, &tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&tls_procs, &tgid, &one, BPF_ANY);
	}
	return bpf_map_lookup_elem(&conns, &k);
}

/* emit_data sends the plaintext of c unless net/http owns c, binding c to
 * its socket before its first bytes. A connection gohttp learns late (its
 * first request seen after gotls met it) stops here from then on. */
static __always_inline void emit_data(struct conn_state *st, __u64 c, __u32 dir, __u64 buf, __s64 len)
{
	if (!st || (st->flags & CONN_NETHTTP))
		return;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (gohttp_owns(tgid, c, st->fd)) {
		if (st->flags & CONN_BOUND)
			nethttp_supersede(c, st->fd);
		st->flags = (st->flags & ~CONN_BOUND) | CONN_NETHTTP;
		return;
	}
	if (len <= 0 || !buf)
		return;
	if (!(st->flags & CONN_BOUND) && st->fd >= 0) {
		st->flags |= CONN_BOUND;
		struct bind_event b = {};
		fill_header(&b.hdr, EVENT_BIND);
		b.conn = c;
		b.fd = st->fd;
		sock_tuple(st->fd, &b.tuple);
		output(&b, sizeof(b));
	}
	emit_plaintext(c, st->fd, dir, buf, (__u64)len);
}

SEC("uprobe/go_tls_write")
int go_tls_write(struct pt_regs *ctx)
{
	__u64 c = GO_ARG1(ctx);
	emit_data(state(ctx, c), c, DIR_WRITE, GO_ARG2(ctx), (__s64)GO_ARG3(ctx));
	return 0;
}

SEC("uprobe/go_tls_read")
int go_tls_read(struct pt_regs *ctx)
{
	struct g_key k = {.g = GO_G(ctx), .tgid = bpf_get_current_pid_tgid() >> 32};
	__u64 c = GO_ARG1(ctx);
	/* A server's first Read comes right after its handshake: the
	 * connection's socket (and a net/http mark) are settled here. */
	state(ctx, c);
	bpf_map_update_elem(&reads, &k, &c, BPF_ANY);
	return 0;
}

SEC("uprobe/go_tls_read_copy")
int go_tls_read_copy(struct pt_regs *ctx)
{
	struct g_key k = {.g = GO_G(ctx), .tgid = bpf_get_current_pid_tgid() >> 32};
	__u64 *cp = bpf_map_lookup_elem(&reads, &k);
	if (!cp) {
		count(COUNTER_CALLS_LOST);
		return 0;
	}
	__u64 c = *cp;
	bpf_map_delete_elem(&reads, &k);
	emit_data(state(ctx, c), c, DIR_READ, MEMMOVE_SRC(ctx), (__s64)MEMMOVE_LEN(ctx));
	return 0;
}

/* A call to the TLS handshake from net/http's client: the *tls.Conn
 * (receiver, in the first argument register) is net/http's. */
SEC("uprobe/go_tls_nethttp")
int go_tls_nethttp(struct pt_regs *ctx)
{
	__u64 c = GO_ARG1(ctx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	remember(tgid, c, tls_fd(offsets_of(ctx), c), CONN_NETHTTP);
	return 0;
}

/* net/http.(*conn).serve(c): c.rwc is net/http's server connection, a
 * *tls.Conn when it speaks TLS (else a *net.TCPConn, which the TLS probes
 * never see). Go 1.27 runs the handshake through an interface call, whose
 * probe would be single-stepped: the connection is marked here instead,
 * its socket read when its first bytes come. */
SEC("uprobe/go_tls_nethttp_serve")
int go_tls_nethttp_serve(struct pt_regs *ctx)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o || o->conn_rwc < 0)
		return 0;
	__u64 c = read_ptr(GO_ARG1(ctx), o->conn_rwc + 8);
	if (c)
		remember(bpf_get_current_pid_tgid() >> 32, c, FD_UNKNOWN, CONN_NETHTTP);
	return 0;
}

/* close(2) of a connection's socket ends it: the agent's syscall programs
 * see it (bpf/gotlsconn.bpf.h). */

SEC("raw_tracepoint/sched_process_exit")
int go_tls_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return mark_exit((struct task_struct *)ctx->args[0], &tls_procs);
}

SEC("raw_tracepoint/sched_process_exec")
int go_tls_process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	return mark_exec((struct task_struct *)ctx->args[0]);
}
