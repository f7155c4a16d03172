// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Plaintext of TCP sockets at the syscall boundary, for every runtime.
 *
 * Every read/write-family syscall of the node runs these programs, so the
 * common case leaves after one map lookup: fds caches, per (process, fd),
 * whether the descriptor is a TCP socket (decided once through CO-RE) and
 * which protocol its connection speaks (decided from the first bytes of a
 * call, bpf/classify.bpf.h). Files, pipes, UNIX and UDP sockets stop there.
 * Bytes are copied only for connections whose protocol a parser in user
 * space handles (parsed_protos); calls on other TCP connections are
 * counted.
 *
 * Writes are copied at syscall entry (the data is complete there, and is in
 * the ring before it can reach a peer on this node); a write the kernel
 * took only part of is corrected at exit by a write_result record, as for
 * SSL_write. Reads are copied at exit, where the kernel has filled the
 * buffer. sendfile moves bytes user space never sees: only its size is
 * reported.
 *
 * The cache is invalidated where a descriptor number can change what it
 * names: close, dup2/dup3 onto it, and the descriptors socket(), accept()
 * and dup() return. The records are those of the OpenSSL collector (data,
 * bind, write_result, close), keyed by the socket instead of an SSL*.
 *
 * This pair of programs is the agent's only hook on syscalls: it also runs
 * what the other collectors need from them (bpf/syshooks.bpf.h).
 */
#include "common.bpf.h"
#include "sock.bpf.h"
#include "classify.bpf.h"
#include "chunks.bpf.h"
#include "syscall.bpf.h"
#include "syshooks.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Bytes copied per call, at most DATA_CAP (set by user space). */
const volatile __u32 capture_bytes = DATA_CAP;
/* Protocols whose bytes are copied: a bit per enum proto. */
const volatile __u32 parsed_protos = 1 << PROTO_HTTP1;
/* When set, only processes in `selected` are traced. */
const volatile __u8 filter_selected = 0;
/* Set by user space on kernels with BPF atomic compare-and-exchange (5.12):
 * the fd_other cache is used. */
const volatile __u8 fd_cache = 0;

/* Keys of socket connections: the socket's address, marked apart from the
 * SSL* pointers of the OpenSSL collector and the keys of whole requests
 * (bits 62 and 63, correlator/request.go). */
#define CONN_SOCKET (1ULL << 61)
#define CONN_ADDR_MASK ((1ULL << 48) - 1)

/* Walked iovecs of readv/writev/recvmsg/sendmsg for their bytes. */
#define MAX_IOV 16
/* Summed iovecs of a vectored write for its size: all of them (UIO_MAXIOV,
 * the most a call takes). A size short of the bytes the call moves would
 * cut its message short, and its record would end before the next one
 * starts: a gap of lost bytes to user space. */
#define MAX_IOV_SIZE 1024

enum fd_kind {
	FD_OTHER = 1, /* not a TCP socket */
	FD_TCP = 2,
};


struct fd_state {
	__u64 conn;  /* CONN_SOCKET | socket address */
	__u64 file;  /* the struct file the descriptor named when cached */
	__u64 sk;    /* its struct sock (FD_TCP) */
	__u8 kind;   /* enum fd_kind */
	__u8 proto;  /* enum proto */
	__u8 bound;  /* the bind record was sent */
	__u8 tries;  /* calls that did not classify */
	__u8 owner_checks; /* unparsed calls that asked nethttp_conns (gohttp_owned) */
	__u8 _pad[3];
	/* traced_process's answer for the descriptor's process, cached:
	 * the selection epoch it was given at (low 32 bits), whether the
	 * process is traced (bit 32) and its enum skip (bits 40-47). */
	__u64 sel;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fd_key);
	__type(value, struct fd_state);
} fds SEC(".maps");

/* Descriptors known not to be TCP sockets (or to be connections another
 * collector reports whole: gohttp_owned; or of a process not traced:
 * untraced), per process, in a table that is indexed, not hashed: the
 * read or write of a file, a pipe or a terminal, the bulk of the node's
 * syscalls, leaves after one array load instead of a lookup in fds. A
 * slot holds an owner (its top
 * 64 - FD_OTHER_FDS bits: a process ID, below 2^22 (PID_MAX_LIMIT), and
 * a block of FD_OTHER_FDS descriptors above it) and a bit per descriptor
 * of the block; a process has FD_OTHER_BLOCKS slots, one per block.
 * Bits are added by compare-and-exchange against the slot's current
 * value, and a slot is emptied (a plain store) whenever one of its
 * descriptors may name something else (close, dup2 onto it, a new
 * descriptor; all of a process's slots at exec, fork of a new process,
 * close_range, and when user space selects it: collectors/sockets
 * forgetOther, whose index formula is other_slot's): an addition racing
 * with it fails, so a stale bit never survives. Owners whose slots share
 * an index take turns.
 * Descriptors below FD_OTHER_MAX (1024: a Go server with a thousand
 * connections) are covered; the owner then takes 22 + 5 bits of a slot's
 * top 32, and exec, fork and close_range walk the 32 slots of the process
 * (one array load each). */
#define FD_OTHER_FDS 32
#define FD_OTHER_BLOCKS 32
#define FD_OTHER_MAX (FD_OTHER_FDS * FD_OTHER_BLOCKS)
#define FD_OTHER_PID_BITS 22
#define FD_OTHER_SLOTS 65536
_Static_assert(FD_OTHER_PID_BITS + 5 <= 64 - FD_OTHER_FDS && FD_OTHER_BLOCKS <= 32,
	       "a slot's owner holds the process ID and the block");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FD_OTHER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} fd_other SEC(".maps");

/* other_owner is the owner of the slot of block b of process tgid. */
static __always_inline __u64 other_owner(__u32 tgid, __u32 b)
{
	return (__u64)(tgid | (b << FD_OTHER_PID_BITS)) << FD_OTHER_FDS;
}

/* other_slot returns the slot of block b of process tgid (block 0 at
 * the process ID, the others spread away from it). */
static __always_inline __u64 *other_slot(__u32 tgid, __u32 b)
{
	__u32 i = (tgid + b * 0x9E37) % FD_OTHER_SLOTS;
	return bpf_map_lookup_elem(&fd_other, &i);
}

/* known_other reports whether descriptor fd of process tgid is known not
 * to be a TCP socket (or to be another collector's connection, or of a
 * process not traced). */
static __always_inline bool known_other(__u32 tgid, __s32 fd)
{
	if (!fd_cache || fd < 0 || fd >= FD_OTHER_MAX || tgid >= (1U << FD_OTHER_PID_BITS))
		return false;
	__u32 b = (__u32)fd / FD_OTHER_FDS, bit = (__u32)fd % FD_OTHER_FDS;
	__u64 *p = other_slot(tgid, b);
	if (!p)
		return false;
	__u64 v = *(volatile __u64 *)p;
	return (v >> FD_OTHER_FDS) << FD_OTHER_FDS == other_owner(tgid, b) && (v & (1ULL << bit));
}

/* note_other records that descriptor fd of process tgid is not a TCP
 * socket (nothing if the slot changed meanwhile). */
static __always_inline void note_other(__u32 tgid, __s32 fd)
{
	if (!fd_cache || fd < 0 || fd >= FD_OTHER_MAX || tgid >= (1U << FD_OTHER_PID_BITS))
		return;
	__u32 b = (__u32)fd / FD_OTHER_FDS, bit = (__u32)fd % FD_OTHER_FDS;
	__u64 *p = other_slot(tgid, b);
	if (!p)
		return;
	__u64 old = *(volatile __u64 *)p;
	__u64 owner = other_owner(tgid, b);
	__u64 new = ((old >> FD_OTHER_FDS) << FD_OTHER_FDS == owner ? old : owner) | (1ULL << bit);
	if (new != old)
		__sync_val_compare_and_swap(p, old, new);
}

/* forget_block empties block b's slot of process tgid if it holds bit
 * (any: bit < 0). */
static __always_inline void forget_block(__u32 tgid, __u32 b, int bit)
{
	__u64 *p = other_slot(tgid, b);
	if (!p)
		return;
	__u64 v = *(volatile __u64 *)p;
	if ((v >> FD_OTHER_FDS) << FD_OTHER_FDS != other_owner(tgid, b))
		return;
	if (bit >= 0 && !(v & (1ULL << bit)))
		return;
	*(volatile __u64 *)p = 0;
}

/* forget_other empties the slot of process tgid that holds descriptor fd
 * if fd's bit is set (all of the process's slots: fd < 0). */
static __always_inline void forget_other(__u32 tgid, __s32 fd)
{
	if (!fd_cache || tgid >= (1U << FD_OTHER_PID_BITS))
		return;
	if (fd >= 0) {
		if (fd < FD_OTHER_MAX)
			forget_block(tgid, (__u32)fd / FD_OTHER_FDS, (__u32)fd % FD_OTHER_FDS);
		return;
	}
	for (__u32 b = 0; b < FD_OTHER_BLOCKS; b++)
		forget_block(tgid, b, -1);
}

enum call_kind {
	CALL_BUF = 1,      /* buf, count */
	CALL_IOV = 2,      /* iovec array, count */
	CALL_MSG = 3,      /* struct user_msghdr */
	CALL_SENDFILE = 4, /* bytes only */
	CALL_MMSG = 5,     /* one struct mmsghdr (recvmmsg/sendmmsg of one message) */
	CALL_NEWFD = 6,    /* socket/accept/accept4/dup: the result is a descriptor */
};

/* A call between its entry and its exit, by thread. */
struct call {
	__u64 buf;
	__u64 count;
	__u64 requested; /* bytes a write offered (copied at entry) */
	__s32 fd;
	__u8 kind; /* enum call_kind */
	__u8 dir;
	__u8 copied; /* the write's data was sent at entry */
	__u8 skip;   /* enum skip of the process */
	/* A read user space found blocked when the agent started (its entry
	 * was missed): fd and buf are the syscall's arguments as
	 * /proc/PID/task/TID/syscall showed them, nr its number; only the
	 * exit of that syscall takes it. For CALL_NEWFD, nr is the syscall's
	 * number when it is accept or accept4 (its exit reports the owner of
	 * the socket: bpf/syshooks.bpf.h). */
	__u8 found;
	/* A read on a connection whose state its exit would not change
	 * (bound, a parsed protocol settled for good): the exit takes conn,
	 * sk and proto from here instead of looking the descriptor up. */
	__u8 settled;
	__u8 proto;
	__u8 _pad1;
	__u32 nr;
	__u32 _pad;
	__u64 mmsg; /* CALL_MMSG: the struct mmsghdr, whose msg_len is the size */
	__u64 conn; /* copied: the connection written to (its exit needs no lookup); settled */
	__u64 sk;   /* settled */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct call);
} calls SEC(".maps");

/* Calls in flight, a slot per thread, found by the address of the
 * thread's user registers (struct pt_regs, at the top of its kernel stack:
 * the same from a syscall's entry to its exit, and different for every
 * thread alive), hashed. The exit of every syscall of the node leaves after
 * one array load, before any helper call, unless the slot holds its call
 * or counts calls in `calls`.
 *
 * A thread's call goes in its slot when the slot is free or already its
 * own (regs: its registers' address, taken by compare-and-exchange, on
 * kernels with it: call_slots); the exit takes it back with a copy, where
 * the calls hash costs an update, a lookup and a delete (~330 ns here).
 * Threads whose registers hash to a slot another thread holds use calls,
 * counted in the slot's hashed (atomic adds: it is shared), as do all
 * threads without call_slots. A slot whose owner's registers are the
 * thread's own but whose thread ID is not is a call of a thread that died
 * without its exit: it is taken over. */
#define CALL_SLOTS 16384

struct call_slot {
	__u64 regs;   /* address of the owner's registers; 0: free */
	__u64 id;     /* the owner's bpf_get_current_pid_tgid */
	__u64 hashed; /* calls in `calls` of threads hashing here */
	struct call c;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CALL_SLOTS);
	__type(key, __u32);
	__type(value, struct call_slot);
} thread_calls SEC(".maps");

/* Set by user space on kernels with BPF atomic compare-and-exchange (5.12):
 * calls go in their thread's slot. */
const volatile __u8 call_slots = 0;
/* Which of the CALL_SLOTS slots threads hash to (a power of two less one):
 * all but for tests, which shrink it so that threads share slots and their
 * calls take the calls hash (plaintext.call_slots). */
const volatile __u32 call_slot_mask = CALL_SLOTS - 1;

/* A tp_btf program's registers are a typed pointer, on which the verifier
 * allows no arithmetic: stored in a map value (privileged programs may) it
 * reads back as a number. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} regs_addr SEC(".maps");

/* slot_of returns the call slot of the thread whose syscall registers are
 * regs: a typed pointer (tp_btf) or an address (raw tracepoint); *addr is
 * their address. Kernel stacks are at least page aligned: the bits above a
 * page tell them apart. */
static __always_inline struct call_slot *slot_of(__u64 regs, bool typed, __u64 *addr)
{
	if (typed) {
		__u32 zero = 0;
		__u64 *v = bpf_map_lookup_elem(&regs_addr, &zero);
		if (!v)
			return 0;
		*v = regs;
		regs = *(volatile __u64 *)v;
	}
	*addr = regs;
	__u32 i = (((regs >> 12) * 0x9E3779B97F4A7C15ULL) >> 50) & call_slot_mask;
	return bpf_map_lookup_elem(&thread_calls, &i);
}

/* Set by user space while some thread it found blocked in a read (adopted)
 * may not have left it: exits look at adopted only then. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} adopting SEC(".maps");

/* Threads user space found blocked in a read when the agent started (see
 * struct call), a bit per thread ID: set by user space only, cleared at the
 * thread's first syscall exit, which ends that read. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4194304 / 64);
	__type(key, __u32);
	__type(value, __u64);
} adopted SEC(".maps");

/* What skip_pids holds for a process. */
enum skip {
	SKIP_NONE = 0,
	SKIP_ALL = 1,  /* no socket traced: the agent itself */
	SKIP_HTTP = 2, /* net/http's connections not traced: another collector sees them whole */
};

/* Processes whose sockets are not traced (SKIP_ALL: the agent itself) or
 * whose net/http connections are not (SKIP_HTTP: Go programs whose net/http
 * the gohttp collector probes; it sees their requests whole, but not their
 * database calls, nor HTTP/2 that does not go through net/http: grpc-go's
 * h2c). There HTTP/1 is net/http's; an HTTP/2 connection is traced until
 * gohttp records a request on its socket (nethttp_conns: net/http's own
 * h2c), and the correlator drops what was sent before. Written by user
 * space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} skip_pids SEC(".maps");

/* When filter_selected is set: the processes discovery has decided on,
 * selected or not. A process it has not seen yet (started a moment ago) is
 * traced, so that a short-lived client is not missed; user space holds what
 * such a process sent until discovery decides on it, and drops it if it
 * turns out not to be selected. A forked child inherits its parent's
 * entry (sock_process_fork); an exec removes it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8); /* 1: selected, 0: not */
} selected SEC(".maps");

/* Local or remote ports whose connections are not traced. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} ignore_ports SEC(".maps");

/* Processes that sent records, so that their exit is reported in order
 * with their data. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} sock_procs SEC(".maps");

/* A data record and room for a copy that starts near its end. */
struct scratch_rec {
	struct data_event e;
	__u8 spill[DATA_CAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_rec);
} scratch SEC(".maps");

struct iovec_user {
	__u64 base;
	__u64 len;
};

/* struct mmsghdr is a struct user_msghdr (56 bytes on 64-bit ABIs)
 * followed by msg_len. */
#define MMSG_LEN_OFF 56

/* The start of struct user_msghdr (a stable ABI). */
struct msghdr_user {
	__u64 name;
	__s32 namelen;
	__s32 _pad;
	__u64 iov;
	__u64 iovlen;
};

static __always_inline bool ignored_port(__u16 port)
{
	return port && bpf_map_lookup_elem(&ignore_ports, &port);
}

/* fd_state returns the cached state of descriptor fd of process tgid,
 * deciding it on first sight. */
static __always_inline struct fd_state *fd_state(__u32 tgid, __s32 fd)
{
	struct fd_key k = {.tgid = tgid, .fd = fd};
	struct fd_state *s = bpf_map_lookup_elem(&fds, &k);
	if (s)
		return s;
	struct fd_state n = {.kind = FD_OTHER};
	struct file *f = fd_file(fd);
	n.file = (__u64)f;
	struct sock *sk = (struct sock *)file_sock(f);
	if (sk) {
		n.kind = FD_TCP;
		n.sk = (__u64)sk;
		n.conn = CONN_SOCKET | ((__u64)sk & CONN_ADDR_MASK);
		__u16 lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		__u16 rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (ignored_port(lport) || ignored_port(rport))
			n.proto = PROTO_IGNORED;
	}
	bpf_map_update_elem(&fds, &k, &n, BPF_NOEXIST);
	return bpf_map_lookup_elem(&fds, &k);
}

/* Selection epochs: [0] is bumped by user space whenever it changes
 * skip_pids or selected, [1] by the programs when they change selected
 * (exec, fork). The answer of traced_process cached in a descriptor's
 * fd_state holds while their sum is the same: unselected processes (a load
 * generator beside a traced server) leave their calls after the descriptor
 * lookup, without the two process lookups. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} sel_epoch SEC(".maps");

static __always_inline __u32 selection_epoch(void)
{
	__u32 k0 = 0, k1 = 1;
	__u64 *u = bpf_map_lookup_elem(&sel_epoch, &k0);
	__u64 *b = bpf_map_lookup_elem(&sel_epoch, &k1);
	return (u ? *(volatile __u64 *)u : 0) + (b ? *(volatile __u64 *)b : 0);
}

static __always_inline void bump_selection(void)
{
	__u32 k1 = 1;
	__u64 *b = bpf_map_lookup_elem(&sel_epoch, &k1);
	if (b)
		__sync_fetch_and_add(b, 1);
}

/* traced_process returns whether process tgid is traced, and sets *skip. */
static __always_inline bool traced_process(__u32 tgid, __u8 *skip)
{
	__u8 *sk = bpf_map_lookup_elem(&skip_pids, &tgid);
	*skip = sk ? *sk : SKIP_NONE;
	if (*skip == SKIP_ALL)
		return false;
	if (!filter_selected)
		return true;
	__u8 *sel = bpf_map_lookup_elem(&selected, &tgid);
	return !sel || *sel;
}

/* traced_fd is traced_process for the process of descriptor state s,
 * cached in s, at selection epoch epoch (selection_epoch, read by the
 * caller before: a change made meanwhile bumps it past what is stored). */
static __always_inline bool traced_fd(struct fd_state *s, __u32 tgid, __u32 epoch, __u8 *skip)
{
	__u64 sel = *(volatile __u64 *)&s->sel;
	if ((__u32)sel == epoch && (sel >> 48)) {
		*skip = (sel >> 40) & 0xff;
		return (sel >> 32) & 1;
	}
	bool traced = traced_process(tgid, skip);
	*(volatile __u64 *)&s->sel = (1ULL << 48) | ((__u64)*skip << 40) | ((__u64)traced << 32) | epoch;
	return traced;
}

static __always_inline bool parsed(__u8 proto) { return proto < 32 && (parsed_protos & (1U << proto)); }

/* settled reports whether a bound connection of protocol proto keeps its
 * state through its calls: parsed, and neither HTTP/2 (net/http may claim
 * it, settle) nor MySQL (it may turn to TLS, data_bytes). */
static __always_inline bool settled(__u8 proto)
{
	return parsed(proto) && proto != PROTO_HTTP2 && proto != PROTO_MYSQL;
}

/* first_bytes reads the first bytes a call moves. */
static __always_inline __u32 first_bytes(struct call *c, __u8 *b, __u64 n)
{
	__u64 src = c->buf;
	if (c->kind == CALL_IOV || c->kind == CALL_MSG || c->kind == CALL_MMSG) {
		struct iovec_user v;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)c->buf) != 0)
			return 0;
		src = v.base;
		if (v.len < n)
			n = v.len;
	} else if (c->kind != CALL_BUF) {
		return 0;
	}
	if (n > CLASSIFY_BYTES)
		n = CLASSIFY_BYTES;
	if (n == 0 || bpf_probe_read_user(b, CLASSIFY_BYTES, (void *)src) != 0)
		return 0;
	return n;
}

/* settle classifies a connection from a call of n bytes, and reports
 * whether its bytes are wanted. */
static __always_inline bool settle(struct fd_state *s, struct call *c, __u64 n)
{
	if (s->proto == PROTO_HTTP2 && c->skip == SKIP_HTTP) {
		struct nethttp_conn *v = nethttp_lookup(bpf_get_current_pid_tgid() >> 32, c->fd);
		if (v && v->file == s->file) {
			s->proto = PROTO_IGNORED;
			if (s->bound)
				nethttp_supersede(s->conn, c->fd);
			s->bound = 0;
		}
	}
	if (s->proto == PROTO_UNKNOWN) {
		__u8 b[CLASSIFY_BYTES] = {};
		__u32 got = first_bytes(c, b, n);
		__u8 p = classify(b, got);
		if (c->skip == SKIP_HTTP && p == PROTO_HTTP1)
			p = PROTO_IGNORED;
		if (p != PROTO_UNKNOWN) {
			s->proto = p;
		} else if (++s->tries >= CLASSIFY_TRIES) {
			s->proto = PROTO_OTHER;
			count(COUNTER_UNCLASSIFIED_CONNS);
		}
	}
	if (parsed(s->proto))
		return true;
	count(COUNTER_UNPARSED_CALLS);
	return false;
}

/* send_bind reports the socket of a connection at its first call whose
 * bytes are wanted: a write at its entry (moved 0), a read at its exit
 * (moved: the bytes it took). */
static __always_inline void send_bind(struct fd_state *s, __s32 fd, bool write, __u64 moved)
{
	if (s->bound)
		return;
	s->bound = 1;
	struct bind_event b = {};
	struct sock *sk = (struct sock *)fd_sock(fd);
	if (!sk)
		return;
	sk_tuple(sk, &b.tuple);
	fill_header(&b.hdr, EVENT_BIND);
	b.conn = s->conn;
	b.fd = fd;
	b.flags = BIND_PLAINTEXT;
	if (sk_stream_start(sk, write, moved))
		b.flags |= BIND_STREAM_START;
	output(&b, sizeof(b));
	__u32 tgid = b.hdr.pid;
	if (!bpf_map_lookup_elem(&sock_procs, &tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&sock_procs, &tgid, &one, BPF_ANY);
	}
}

/* copy_iov copies up to want bytes from an iovec array into dst; it
 * returns the bytes copied and sets *last to the last iovec read. */
static __always_inline __u32 copy_iov(__u8 *dst, __u64 iov, __u64 iovcnt, __u32 want, struct iovec_user *last)
{
	__u32 off = 0;
#pragma unroll
	for (int i = 0; i < MAX_IOV; i++) {
		if (i >= iovcnt)
			break;
		struct iovec_user v;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(v))) != 0)
			break;
		*last = v;
		if (off >= want)
			continue;
		__u32 n = want - off;
		if (v.len < n)
			n = v.len;
		if (n > DATA_CAP)
			n = DATA_CAP;
		off &= DATA_CAP - 1;
		if (bpf_probe_read_user(dst + off, n, (void *)v.base) != 0)
			break;
		off += n;
	}
	return off;
}

/* current_goroutine returns the low 32 bits of the runtime.g of the Go
 * code that made this syscall (Go keeps it in a register, and the
 * syscall path does not touch it), or 0 on kernels without the helpers
 * (bpf/syscall.bpf.h). gohttp keys requests by the same g: the correlator
 * links a database call to the server request its goroutine serves. */
static __always_inline __u32 current_goroutine(void)
{
	if (!have_task_regs())
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 g = 0;
	if (!regs || bpf_probe_read_kernel(&g, sizeof(g), &GO_G(regs)) != 0)
		return 0;
	return (__u32)g;
}

/* data_fields fills data record e of call c, which moved size bytes, at
 * its entry (a write) or once done, but for its bytes. */
static __always_inline void data_fields(struct data_event *e, struct fd_state *s, struct call *c, __u64 size, bool done)
{
	e->conn = s->conn;
	e->dir = c->dir;
	e->size = size > 0xffffffff ? 0xffffffff : (__u32)size;
	e->fd = c->fd;
	e->tail_len = 0;
	e->goroutine = c->skip == SKIP_HTTP ? current_goroutine() : 0;
	e->seq = 0;
	e->flags = 0;
	/* The socket of the descriptor's file (fresh checked it names the
	 * file the state was cached for), read first, outside the CO-RE
	 * access, since fd_state is the programs' own type. */
	struct sock *sk = (struct sock *)s->sk;
	if (sk) {
		e->seq = sk_call_seq(sk, c->dir == DIR_WRITE, done, size);
		e->flags = DATA_SEQ;
	}
}

/* data_bytes completes data record e, whose data holds captured bytes of
 * a call of size bytes that ended at tail_from + TAIL_CAP (0: unknown). */
static __always_inline void data_bytes(struct data_event *e, struct fd_state *s, struct call *c, __u64 size,
				       __u32 captured, __u64 tail_from)
{
	e->captured = captured;
	/* After MySQL's SSL request the connection carries TLS records: its
	 * bytes are no longer copied (counted as unparsed calls). The client
	 * knows from its request; the server from the ClientHello it reads
	 * next (that one record still reaches user space, which drops it). */
	if (s->proto == PROTO_MYSQL &&
	    (mysql_ssl_request(e->data, captured) || (c->dir == DIR_READ && tls_handshake_record(e->data, captured))))
		s->proto = PROTO_TLS;
	if (size > captured && tail_from && size >= TAIL_CAP) {
		if (bpf_probe_read_user(e->tail, TAIL_CAP, (void *)tail_from) == 0)
			e->tail_len = TAIL_CAP;
	}
}

/* emit_in writes the data record of call c (one buffer, or no bytes:
 * sendfile), want of whose size bytes are copied, in the ring, in a
 * record with room for room bytes of data (a reserve takes a constant
 * size; the reader copies the whole record), built there: no per-CPU
 * copy to move in (nor to share with another task's program where the
 * syscall tracepoints are preemptible, 6.13+), and stamped after the
 * reserve (stamp). */
#define emit_in(s, c, size, done, want, room)                                              \
	({                                                                                 \
		struct data_event *__e = bpf_ringbuf_reserve(&events, DATA_HEAD + (room), 0); \
		if (__e) {                                                                 \
			fill_header(&__e->hdr, EVENT_DATA);                                \
			data_fields(__e, (s), (c), (size), (done));                        \
			__u32 __n = (want);                                                \
			/* Bound the length where the helper takes it (older        \
			 * verifiers lose a bound proved on another register). */  \
			asm volatile("" : "+r"(__n));                                      \
			if (__n > (room))                                                  \
				__n = (room);                                              \
			if (__n && bpf_probe_read_user(__e->data, __n, (void *)(c)->buf) != 0) \
				__n = 0;                                                   \
			__u64 __tail = (c)->kind == CALL_BUF ? (c)->buf + (size) - TAIL_CAP : 0; \
			data_bytes(__e, (s), (c), (size), __n, __tail);                    \
			bpf_ringbuf_submit(__e, wakeup_flags());                           \
		} else {                                                                   \
			count(COUNTER_RINGBUF_DROPS);                                      \
		}                                                                          \
	})

/* emit sends a data record of a call that moved size bytes, at its entry
 * (a write) or once done. */
static __always_inline void emit(struct fd_state *s, struct call *c, __u64 size, bool done)
{
	__u32 want = capture_bytes;
	if (want > DATA_CAP)
		want = DATA_CAP;
	if (size < want)
		want = size;
	if (c->kind == CALL_SENDFILE) {
		emit_in(s, c, size, done, 0, 0);
		return;
	}
	bool chunks = c->kind == CALL_BUF && size > DATA_CAP && want == DATA_CAP && chunked_proto(s->proto);
	if (c->kind == CALL_BUF && !chunks) {
		/* Rooms a power of two apart: a record takes less than twice
		 * its bytes of the ring (a pipeline of 16 Redis commands, ~720
		 * bytes, took a 2,048-byte room, three times its size). */
		if (want <= 128)
			emit_in(s, c, size, done, want, 128);
		else if (want <= 256)
			emit_in(s, c, size, done, want, 256);
		else if (want <= 512)
			emit_in(s, c, size, done, want, 512);
		else if (want <= 1024)
			emit_in(s, c, size, done, want, 1024);
		else if (want <= 2048)
			emit_in(s, c, size, done, want, 2048);
		else
			emit_in(s, c, size, done, want, DATA_CAP);
		return;
	}
	/* Vectored calls and chunks: built in the per-CPU scratch. */
	__u32 zero = 0;
	struct scratch_rec *r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r)
		return;
	struct data_event *e = &r->e;
	fill_header(&e->hdr, EVENT_DATA);
	data_fields(e, s, c, size, done);
	if (chunks) {
		output_chunks(e, c->buf, size);
		return;
	}
	struct iovec_user last = {};
	__u32 captured = 0;
	__u64 tail_from = 0;
	if (c->kind == CALL_IOV || c->kind == CALL_MSG || c->kind == CALL_MMSG) {
		captured = copy_iov(e->data, c->buf, c->count, want, &last);
		/* The last iovec ends the call only if the call moved them all
		 * (a write: its size is their sum). */
		if (c->dir == DIR_WRITE && last.len >= TAIL_CAP)
			tail_from = last.base + last.len - TAIL_CAP;
	}
	if (captured > DATA_CAP)
		captured = DATA_CAP;
	data_bytes(e, s, c, size, captured, tail_from);
	output_data(e, e->captured);
}

/* forget drops the cached state of a descriptor that now names something
 * else or nothing, reporting the close of a traced connection. */
static __always_inline void forget_fd(__u32 tgid, __s32 fd)
{
	struct fd_key k = {.tgid = tgid, .fd = fd};
	struct fd_state *s = bpf_map_lookup_elem(&fds, &k);
	if (!s)
		return;
	if (s->bound) {
		struct close_event c = {};
		fill_header(&c.hdr, EVENT_CLOSE);
		c.conn = s->conn;
		c.fd = fd;
		output(&c, sizeof(c));
	}
	bpf_map_delete_elem(&fds, &k);
	nethttp_forget(tgid, fd);
}

static __always_inline void forget(__u32 tgid, __s32 fd)
{
	forget_other(tgid, fd);
	forget_fd(tgid, fd);
}

/* fresh returns the state of a TCP connection's descriptor after checking
 * that the descriptor still names the file it was cached for: a close the
 * programs missed (close_range beyond its walk, close-on-exec, a reused PID)
 * then a new file on the number must not pass for the old connection. Only
 * connections whose bytes are copied pay the check. It returns 0 when the
 * descriptor no longer names a TCP socket of a wanted protocol. */
static __always_inline struct fd_state *fresh(struct fd_state *s, __u32 tgid, __s32 fd)
{
	if (s->file == (__u64)fd_file(fd))
		return s;
	forget(tgid, fd);
	s = fd_state(tgid, fd);
	if (!s || s->kind != FD_TCP || (s->proto != PROTO_UNKNOWN && !parsed(s->proto)))
		return 0;
	return s;
}

/* begin_call records call c of thread id, whose syscall's registers are
 * regs (slot_of), until its exit: in the thread's slot, else in calls. */
static __always_inline void begin_call(__u64 id, __u64 regs, bool typed, struct call *c)
{
	__u64 addr;
	struct call_slot *s = slot_of(regs, typed, &addr);
	if (!s)
		return;
	if (call_slots) {
		__u64 owner = *(volatile __u64 *)&s->regs;
		if (owner == addr || (owner == 0 && __sync_val_compare_and_swap(&s->regs, 0, addr) == 0)) {
			s->id = id;
			s->c = *c;
			return;
		}
	}
	if (bpf_map_update_elem(&calls, &id, c, BPF_ANY) == 0)
		__sync_fetch_and_add(&s->hashed, 1);
}

/* slot_call empties slot s, which holds a call of registers addr, moving
 * it into c if thread id began it (begin_call), and reports whether it
 * did; a call of a dead thread that had the same registers is dropped. */
static __always_inline bool slot_call(struct call_slot *s, __u64 addr, __u64 id, struct call *c)
{
	bool mine = s->id == id;
	if (mine)
		*c = s->c;
	__sync_val_compare_and_swap(&s->regs, addr, 0);
	return mine;
}

/* take_call moves the call thread id began (begin_call) in calls into c,
 * and reports whether there was one. */
static __always_inline bool take_call(__u64 id, struct call *c)
{
	struct call *p = bpf_map_lookup_elem(&calls, &id);
	if (!p)
		return false;
	*c = *p;
	bpf_map_delete_elem(&calls, &id);
	return true;
}

/* adopted_exit clears thread id's bit in adopted and reports whether it
 * was set: this exit ends the read user space found the thread in. */
static __always_inline bool adopted_exit(__u64 id)
{
	__u32 tid = (__u32)id, w = tid / 64;
	__u64 bit = 1ULL << (tid % 64);
	__u64 *a = bpf_map_lookup_elem(&adopted, &w);
	if (!a || !(*a & bit))
		return false;
	__sync_fetch_and_add(a, -bit);
	return true;
}

/* The read/write family: a program each, reached by a tail call from
 * sys_enter once the descriptor is known to be a TCP socket (one program
 * for them all would be too large to verify: each shape of call is checked
 * apart with its kind known). */
enum io_prog {
	IO_READ_BUF,
	IO_WRITE_BUF,
	IO_READ_IOV,
	IO_WRITE_IOV,
	IO_READ_MSG,
	IO_WRITE_MSG,
	IO_READ_MMSG,
	IO_WRITE_MMSG,
	IO_SENDFILE,
	IO_CLOSE_RANGE, /* not of the family: a walk too long to verify inline */
	IO_PROGS,
};

/* io_prog returns the program of syscall nr, or -1 when nr is not of the
 * read/write family. */
static __always_inline int io_prog(long nr)
{
	switch (nr) {
	case NR_read:
	case NR_recvfrom:
		return IO_READ_BUF;
	case NR_write:
	case NR_sendto:
		return IO_WRITE_BUF;
	case NR_readv:
		return IO_READ_IOV;
	case NR_writev:
		return IO_WRITE_IOV;
	case NR_recvmsg:
		return IO_READ_MSG;
	case NR_sendmsg:
		return IO_WRITE_MSG;
	case NR_recvmmsg:
		return IO_READ_MMSG;
	case NR_sendmmsg:
		return IO_WRITE_MMSG;
	case NR_sendfile:
		return IO_SENDFILE;
	}
	return -1;
}

/* call_syscall reports whether syscall nr may begin a call (begin_call):
 * the read/write family and the syscalls that return a descriptor. */
static __always_inline bool call_syscall(long nr)
{
	if (io_prog(nr) >= 0)
		return true;
	switch (nr) {
	case NR_socket:
	case NR_accept:
	case NR_accept4:
	case NR_dup:
		return true;
	}
	return false;
}

/* iov_size returns the size of a vectored write: the sum of the lengths
 * of its count iovecs at iov (up to MAX_IOV_SIZE). A global function: the
 * verifier checks it once, on its own, and what follows a call goes on
 * from one state, where an inlined loop would leave one for each way out
 * of it, each walking the rest of the write (its copy, its records) again:
 * verifying the three vectored write programs took seconds. The loop is
 * not unrolled: 1,024 steps are verified as a bounded loop. */
__attribute__((noinline)) __u64 iov_size(__u64 iov, __u64 count)
{
	__u64 size = 0;
	for (int i = 0; i < MAX_IOV_SIZE; i++) {
		struct iovec_user v;
		if (i >= count || bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(v))) != 0)
			break;
		size += v.len;
	}
	return size;
}

/* Unparsed calls of a descriptor that look for it in nethttp_conns before
 * giving up: a net/http connection is recorded there at its first request,
 * a few calls after its handshake. */
#define OWNER_CHECKS 16

/* gohttp_owned reports whether the connection of descriptor fd (state s,
 * whose bytes are not copied) of process tgid is one the Go collector
 * reports whole (nethttp_conns): a net/http connection of a Go program,
 * over crypto/tls or plain, whose syscalls have nothing left to do here
 * (no parser, and no SSL_* of OpenSSL to bind). Such a descriptor then
 * goes with the ones that are not TCP sockets (note_other): its calls
 * leave before the lookup in fds, the costliest step of their path.
 * Asked only where that can be recorded, and a bounded number of times. */
static __always_inline bool gohttp_owned(struct fd_state *s, __u32 tgid, __s32 fd)
{
	if (!fd_cache || fd < 0 || fd >= FD_OTHER_MAX || s->owner_checks >= OWNER_CHECKS)
		return false;
	s->owner_checks++;
	__u8 skip;
	traced_fd(s, tgid, selection_epoch(), &skip);
	if (skip != SKIP_HTTP)
		return false;
	struct nethttp_conn *v = nethttp_lookup(tgid, fd);
	return v && v->file == s->file;
}

/* untraced goes on with a call on descriptor fd, a TCP socket of process
 * tgid, which is not traced (traced_fd at selection epoch epoch): the
 * descriptor goes with the ones that are not TCP sockets (note_other), so
 * that the process's next calls on it leave at known_other, before the
 * tail call and the lookup in fds (a load generator beside a traced
 * server makes as many calls as the server). Nothing is lost: such a
 * process has no SSL_* probed either (its calls need no hook_socket_io),
 * and a process whose selection changes has its slots emptied: at exec
 * and fork by the programs, and by user space when it selects one
 * (after bumping the epoch). A bit added after that empties its slot
 * again here: the epoch has moved past the one it was decided at. */
static __always_inline void untraced(__u32 tgid, __s32 fd, __u32 epoch)
{
	note_other(tgid, fd);
	if (selection_epoch() != epoch)
		forget_other(tgid, fd);
}

/* on_enter starts a call on fd; the syscall's registers are regs (a typed
 * pointer when typed). */
static __always_inline int on_enter(__u64 regs, bool typed, __s32 fd, __u8 dir, __u8 kind, __u64 buf, __u64 len)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct fd_state *s = fd_state(tgid, fd);
	if (!s)
		return 0;
	if (s->kind != FD_TCP) {
		note_other(tgid, fd);
		return 0;
	}
	hook_socket_io(id, fd);
	if (s->proto != PROTO_UNKNOWN && !parsed(s->proto)) {
		count(COUNTER_UNPARSED_CALLS);
		if (gohttp_owned(s, tgid, fd))
			note_other(tgid, fd);
		return 0;
	}
	__u8 skip;
	__u32 epoch = selection_epoch();
	if (!traced_fd(s, tgid, epoch, &skip)) {
		untraced(tgid, fd, epoch);
		return 0;
	}
	s = fresh(s, tgid, fd);
	if (!s)
		return 0;
	struct call c = {.buf = buf, .count = len, .fd = fd, .kind = kind, .dir = dir, .skip = skip};
	if (kind == CALL_MMSG) {
		/* The message vector's length is len: one message is a
		 * recvmsg/sendmsg whose size comes back in msg_len. */
		if (len != 1)
			return 0;
		c.mmsg = buf;
	}
	if (kind == CALL_MSG || kind == CALL_MMSG) {
		struct msghdr_user m;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)buf) != 0)
			return 0;
		c.buf = m.iov;
		c.count = m.iovlen;
	}
	if (dir == DIR_WRITE && kind != CALL_SENDFILE) {
		__u64 size = len;
		if (kind != CALL_BUF)
			size = iov_size(c.buf, c.count);
		if (size == 0 || !settle(s, &c, size))
			return 0;
		send_bind(s, fd, true, 0);
		emit(s, &c, size, false);
		c.requested = size;
		c.copied = 1;
		c.conn = s->conn;
	} else if (s->bound && settled(s->proto)) {
		c.settled = 1;
		c.conn = s->conn;
		c.sk = s->sk;
		c.proto = s->proto;
	}
	begin_call(id, regs, typed, &c);
	return 0;
}

/* found_read completes a read user space found blocked when the agent
 * started (its entry was missed; see struct call) at the exit of syscall
 * nr, and returns the state of its descriptor if its bytes are wanted. */
static __always_inline struct fd_state *found_read(struct call *c, __u32 tgid, long nr)
{
	__u8 skip;
	if (nr != c->nr || !traced_process(tgid, &skip))
		return 0;
	c->skip = skip;
	if (c->kind == CALL_MSG) {
		struct msghdr_user m;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)c->buf) != 0)
			return 0;
		c->buf = m.iov;
		c->count = m.iovlen;
	}
	struct fd_state *s = fd_state(tgid, c->fd);
	if (!s || s->kind != FD_TCP || (s->proto != PROTO_UNKNOWN && !parsed(s->proto)))
		return 0;
	return s;
}

/* on_exit ends a call: a read's bytes are copied, a write's result
 * checked. */
static __always_inline int on_exit(__u64 regs, long ret, bool typed)
{
	/* Only these syscalls begin a call: the others leave before any
	 * helper (the number is a plain load where the registers are typed). */
	if (typed && !call_syscall(SYSCALL_NR((struct pt_regs *)regs)))
		return 0;
	__u64 addr;
	struct call_slot *slot = slot_of(regs, typed, &addr);
	if (!slot)
		return 0;
	struct call c;
	__u64 id = 0;
	bool got = false;
	__u32 zero = 0;
	__u64 *adopt = bpf_map_lookup_elem(&adopting, &zero);
	bool look = adopt && *adopt;
	if (call_slots && *(volatile __u64 *)&slot->regs == addr) {
		id = bpf_get_current_pid_tgid();
		got = slot_call(slot, addr, id, &c);
		/* User space adopted the read the thread was in after the
		 * programs had seen its entry (the slot hides it from the
		 * scan): this exit ends it, the adopted copy goes. */
		if (got && look && adopted_exit(id))
			bpf_map_delete_elem(&calls, &id);
	}
	if (!got) {
		__u64 hashed = *(volatile __u64 *)&slot->hashed;
		if (!hashed && !look)
			return 0;
		if (!id)
			id = bpf_get_current_pid_tgid();
		bool adopted = look && adopted_exit(id);
		if (!hashed && !adopted)
			return 0;
		if (!take_call(id, &c))
			return 0;
		if (!c.found && hashed)
			__sync_fetch_and_add(&slot->hashed, -1);
	}
	if (c.kind == CALL_NEWFD) {
		if (ret < 0)
			return 0;
		forget(id >> 32, ret);
		if (c.nr == NR_accept || c.nr == NR_accept4)
			hook_accepted(ret);
		return 0;
	}
	if (c.kind == CALL_MMSG) {
		/* The number of messages moved: the bytes are in msg_len. */
		__u32 n = 0;
		if (ret == 1 && bpf_probe_read_user(&n, sizeof(n), (void *)(c.mmsg + MMSG_LEN_OFF)) != 0)
			n = 0;
		ret = ret == 1 ? n : ret;
	}
	if (c.copied) {
		write_result(c.conn, c.requested, ret > 0 ? ret : 0);
		return 0;
	}
	if (ret <= 0)
		return 0;
	struct fd_state *s;
	struct fd_state known = {};
	if (c.settled) {
		known.conn = c.conn;
		known.sk = c.sk;
		known.kind = FD_TCP;
		known.proto = c.proto;
		known.bound = 1;
		s = &known;
	} else if (c.found) {
		s = found_read(&c, id >> 32, syscall_nr(regs, typed));
	} else {
		struct fd_key k = {.tgid = id >> 32, .fd = c.fd};
		s = bpf_map_lookup_elem(&fds, &k);
	}
	if (!s)
		return 0;
	if (c.kind == CALL_SENDFILE) {
		if (s->proto == PROTO_HTTP1 && s->bound)
			emit(s, &c, ret, true);
		return 0;
	}
	if (!settle(s, &c, ret))
		return 0;
	send_bind(s, c.fd, false, ret);
	emit(s, &c, ret, true);
	return 0;
}

/* close_range(first, last, flags) closes a range of descriptors, often
 * 3..~0U before an exec: the first CLOSE_RANGE_WALK of them are forgotten
 * (enough for most processes' tables); a TCP connection's descriptor
 * beyond is caught by fresh() when its number is reused. */
#define CLOSE_RANGE_WALK 64
#define CLOSE_RANGE_CLOEXEC (1U << 2)

static __always_inline void close_range(__u32 first, __u32 last, __u32 flags)
{
	if (flags & CLOSE_RANGE_CLOEXEC)
		return;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	forget_other(tgid, -1);
	for (__u32 i = 0; i < CLOSE_RANGE_WALK; i++) {
		__u32 fd = first + i;
		if (fd < first || fd > last || fd > 0x7fffffff)
			break;
		forget_fd(tgid, fd);
	}
}

/* new_fd records a socket(), accept(), accept4() or dup(): the descriptor
 * it returns may be cached as what it named before (a close the programs
 * missed: close-on-exec, or a process that reused a PID); the exit forgets
 * it. */
static __always_inline int new_fd(__u64 regs, bool typed, long nr)
{
	struct call c = {.kind = CALL_NEWFD, .nr = nr};
	begin_call(bpf_get_current_pid_tgid(), regs, typed, &c);
	return 0;
}

/* Each shape of call comes in two program types: raw tracepoint programs
 * (the registers are an address: helpers read them) and tp_btf programs
 * (a typed pointer: plain loads). User space keeps the set the kernel
 * loads (tp_btf first) and empties the other's program array. */
#define IO_PROG(name, dir, kind, buf, len)                                  \
	SEC("raw_tracepoint/sys_enter")                                     \
	int name(struct bpf_raw_tracepoint_args *ctx)                       \
	{                                                                   \
		struct syscall_args a;                                      \
		if (!syscall_args(ctx->args[0], &a))                        \
			return 0;                                           \
		return on_enter(ctx->args[0], false, a.arg[0], dir, kind, buf, len); \
	}                                                                   \
	SEC("tp_btf/sys_enter")                                             \
	int BPF_PROG(name##_btf, struct pt_regs *regs, long id)             \
	{                                                                   \
		struct syscall_args a;                                      \
		if (!regs_args(regs, &a))                                   \
			return 0;                                           \
		return on_enter((__u64)regs, true, a.arg[0], dir, kind, buf, len); \
	}

IO_PROG(io_read_buf, DIR_READ, CALL_BUF, a.arg[1], a.arg[2])
IO_PROG(io_write_buf, DIR_WRITE, CALL_BUF, a.arg[1], a.arg[2])
IO_PROG(io_read_iov, DIR_READ, CALL_IOV, a.arg[1], a.arg[2])
IO_PROG(io_write_iov, DIR_WRITE, CALL_IOV, a.arg[1], a.arg[2])
IO_PROG(io_read_msg, DIR_READ, CALL_MSG, a.arg[1], 0)
IO_PROG(io_write_msg, DIR_WRITE, CALL_MSG, a.arg[1], 0)
/* recvmmsg(fd, msgvec, vlen, flags, timeout) and sendmmsg(fd, msgvec,
 * vlen, flags): a vector of one message only (more is a UDP idiom; on TCP
 * one message per call is the norm). */
IO_PROG(io_read_mmsg, DIR_READ, CALL_MMSG, a.arg[1], a.arg[2])
IO_PROG(io_write_mmsg, DIR_WRITE, CALL_MMSG, a.arg[1], a.arg[2])
/* sendfile(out_fd, in_fd, offset, count): the socket is out_fd. */
IO_PROG(io_sendfile, DIR_WRITE, CALL_SENDFILE, 0, a.arg[3])

SEC("raw_tracepoint/sys_enter")
int io_close_range(struct bpf_raw_tracepoint_args *ctx)
{
	struct syscall_args a;
	if (syscall_args(ctx->args[0], &a))
		close_range(a.arg[0], a.arg[1], a.arg[2]);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(io_close_range_btf, struct pt_regs *regs, long id)
{
	struct syscall_args a;
	if (regs_args(regs, &a))
		close_range(a.arg[0], a.arg[1], a.arg[2]);
	return 0;
}

#define IO_PROG_ARRAY(name, sfx, fn)                                          \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_PROG_ARRAY);                        \
		__uint(max_entries, IO_PROGS);                                \
		__type(key, __u32);                                           \
		__array(values, fn);                                          \
	} name SEC(".maps") = {                                               \
		.values =                                                     \
			{                                                     \
				[IO_READ_BUF] = (void *)&io_read_buf##sfx,    \
				[IO_WRITE_BUF] = (void *)&io_write_buf##sfx,  \
				[IO_READ_IOV] = (void *)&io_read_iov##sfx,    \
				[IO_WRITE_IOV] = (void *)&io_write_iov##sfx,  \
				[IO_READ_MSG] = (void *)&io_read_msg##sfx,    \
				[IO_WRITE_MSG] = (void *)&io_write_msg##sfx,  \
				[IO_READ_MMSG] = (void *)&io_read_mmsg##sfx,  \
				[IO_WRITE_MMSG] = (void *)&io_write_mmsg##sfx, \
				[IO_SENDFILE] = (void *)&io_sendfile##sfx,    \
				[IO_CLOSE_RANGE] = (void *)&io_close_range##sfx, \
			},                                                    \
	}

IO_PROG_ARRAY(io_progs, , int(struct bpf_raw_tracepoint_args *));
IO_PROG_ARRAY(io_progs_btf, _btf, int(unsigned long long *));

/* io_call goes on with a read/write-family call on descriptor fd, unless
 * the descriptor is known not to be a TCP socket, in the program of its
 * shape in progs (on_enter), which looks the descriptor up once. */
static __always_inline int io_call(void *ctx, void *progs, __u32 prog, __s32 fd)
{
	if (known_other(bpf_get_current_pid_tgid() >> 32, fd))
		return 0;
	bpf_tail_call(ctx, progs, prog);
	return 0;
}

/* enter: every syscall of the node enters here; the syscalls the
 * collector does not follow leave at the switch on their number. */
static __always_inline int enter(void *ctx, void *progs, long nr, __u64 regs, bool typed)
{
	struct syscall_args a;
	int prog = io_prog(nr);
	if (prog >= 0) {
		if (!read_args(regs, typed, &a))
			return 0;
		return io_call(ctx, progs, prog, a.arg[0]);
	}
	switch (nr) {
	case NR_close:
		if (!read_args(regs, typed, &a))
			return 0;
		forget(bpf_get_current_pid_tgid() >> 32, a.arg[0]);
		hook_close(bpf_get_current_pid_tgid() >> 32, a.arg[0]);
		return 0;
	case NR_mmap:
		hook_mmap(regs, typed);
		return 0;
	/* dup2/dup3(oldfd, newfd): newfd is closed and names oldfd's file. */
	case NR_dup2:
	case NR_dup3:
		if (read_args(regs, typed, &a))
			forget(bpf_get_current_pid_tgid() >> 32, a.arg[1]);
		return 0;
	case NR_close_range:
		bpf_tail_call(ctx, progs, IO_CLOSE_RANGE);
		return 0;
	case NR_accept:
	case NR_accept4:
		/* The exit reports the accepted socket's owner (a native
		 * call's only: another ABI numbers its syscalls otherwise). */
		return new_fd(regs, typed, read_args(regs, typed, &a) ? nr : -1);
	case NR_socket:
	case NR_dup:
		return new_fd(regs, typed, -1);
	}
	return 0;
}

/* The dispatchers: tp_btf programs where the kernel loads them, else raw
 * tracepoint programs (user space keeps one pair). A thread without a
 * call recorded at its entry leaves the exit after one array load. */
SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_btf, struct pt_regs *regs, long id) { return enter(ctx, &io_progs_btf, id, (__u64)regs, true); }

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit_btf, struct pt_regs *regs, long ret) { return on_exit((__u64)regs, ret, true); }

SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx) { return enter(ctx, &io_progs, ctx->args[1], ctx->args[0], false); }

SEC("raw_tracepoint/sys_exit")
int sys_exit(struct bpf_raw_tracepoint_args *ctx) { return on_exit(ctx->args[0], ctx->args[1], false); }

SEC("raw_tracepoint/sched_process_exit")
int sock_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx->args[0];
	__u32 pid = BPF_CORE_READ(t, pid);
	if (filter_selected && pid == BPF_CORE_READ(t, tgid))
		bpf_map_delete_elem(&selected, &pid);
	return mark_exit(t, &sock_procs);
}

/* An exec makes the process another program: whether it is selected is
 * undecided again (traced) until user space decides on the new program. A
 * child forked by an unselected program (a shell, a test driver) is thus
 * traced from its exec of a selected one on. */
SEC("raw_tracepoint/sched_process_exec")
int sock_process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx->args[0];
	__u32 tgid = BPF_CORE_READ(t, tgid);
	bpf_map_delete_elem(&selected, &tgid);
	bump_selection();
	forget_other(tgid, -1); /* close-on-exec descriptors are gone */
	return mark_exec(t);
}

/* A new process starts with no descriptor known (its ID may be that of
 * an old process). With filter_selected it runs its parent's program:
 * it inherits the parent's decision (none when the parent is undecided),
 * and a child that may be traced is reported in the ring (struct
 * proc_event, EVENT_FORK), so that user space judges its records as the
 * parent's before they come. */
SEC("raw_tracepoint/sched_process_fork")
int sock_process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 pid = BPF_CORE_READ(child, pid);
	if (pid != BPF_CORE_READ(child, tgid))
		return 0; /* a new thread */
	forget_other(pid, -1);
	/* Its ID may be that of an old process whose descriptors' fd_state
	 * remain (LRU): their cached selection must not pass for its own. */
	bump_selection();
	if (!filter_selected)
		return 0;
	__u32 ppid = BPF_CORE_READ(parent, tgid);
	__u8 *sel = bpf_map_lookup_elem(&selected, &ppid);
	if (!sel) {
		bpf_map_delete_elem(&selected, &pid);
	} else {
		__u8 v = *sel;
		bpf_map_update_elem(&selected, &pid, &v, BPF_ANY);
		if (!v)
			return 0;
	}
	emit_proc_event(EVENT_FORK, pid, ppid, -1);
	return 0;
}

/* Force enum proto and enum skip into BTF: user space names them. */
const enum proto *unused_proto __attribute__((unused));
const enum skip *unused_skip __attribute__((unused));
/* And enum call_kind: user space records blocked reads (struct call). */
const enum call_kind *unused_call_kind __attribute__((unused));
