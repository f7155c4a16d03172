// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Go net/http, server and client, from the binary alone (Go >= 1.17 register
 * ABI). Every probe is a plain uprobe placed on the conditional branch of the
 * function's stack-bound check (symbols.GoBinary.EntryProbe): the kernel
 * emulates that branch (~0.7 us per hit here, against ~19 us for a probe on
 * an instruction it must single-step), and the arguments are still in their
 * registers there. No uretprobes: goroutine stacks move, and a rewritten
 * return address crashes the program.
 *
 * Server, two hits per request, no return probe:
 *   net/http.serverHandler.ServeHTTP(sh, rw ResponseWriter, req *Request)
 *     start: the span's ID, the connection's 4-tuple, the request's
 *     Traceparent header, for HTTP/1 and HTTP/2 alike.
 *   net/http.(*response).finishRequest(w)
 *     end of an HTTP/1 request: method, path, host, status, sizes from w
 *     and the request.
 *   net/http.(*http2responseWriter).handlerDone(w) (Go 1.27:
 *   net/http/internal/http2.(*responseWriter).handlerDone)
 *     end of an HTTP/2 request, on the handler's goroutine, from w.rws.
 * Client: net/http.(*persistConn).roundTrip(pc, treq) for HTTP/1 and
 * net/http.(*http2ClientConn).RoundTrip(cc, req) (or roundTrip, which it
 * wraps from Go 1.24) for HTTP/2 at entry
 * (start, with the connection's 4-tuple) and at each of their RET
 * instructions (end: the *Response or the error in the result registers).
 * Go 1.27 moved HTTP/2 into net/http/internal/http2 with request and
 * response types of its own: there the client probes are on
 * (*ClientConn).roundTrip(cc, req *ClientRequest).
 *
 * In-flight calls are keyed by process and goroutine (runtime.g, in R14 on
 * amd64 and X28 on arm64).
 *
 * Every start also records its connection's socket in nethttp_conns
 * (bpf/nethttp.bpf.h), so that the gotls and sockets collectors leave the
 * connection's bytes to this one, whenever and however it was opened.
 */
#include "common.bpf.h"
#include "sock.bpf.h"
#include "go.bpf.h"
#include "nethttp.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* A Go string's header, {ptr, len}. */
struct gostr {
	__u64 ptr;
	__s64 len;
};

/* The fields of a request that its end record takes (take_req). */
struct req_fields {
	struct gostr method, host;
	__u64 url;
	__s64 length;
};

/* A Go connection's socket, as conn_socks and a goroutine's servers entry
 * keep it (sock_of). */
struct conn_sock {
	__u64 file;
	__u64 ino;
	__s32 fd;
	__u32 _pad;
	struct tuple tuple;
};

struct server_req {
	__u64 id;
	__u64 resp; /* *response, or *http2responseWriter for HTTP/2 */
	/* The *Request's fields, taken from the copy of it the start makes
	 * anyway (take_start): the end reads the strings they point at and
	 * the URL, not the Request again. */
	struct req_fields f;
	/* The connection the goroutine's last request came on, and its
	 * socket: an HTTP/1 goroutine serves one connection, so its next
	 * request finds the socket here, in the entry it looks up anyway,
	 * rather than in conn_socks (a hash lookup that costs ~0.3 us on a
	 * VM whose TLB every kernel entry flushes). Kept when a request
	 * replaces the entry's other fields. */
	__u64 goconn;
	struct conn_sock sock;
};

struct client_req {
	__u64 id;
	__u64 req;  /* *Request, or Go 1.27's *http2.ClientRequest when h2i */
	__u64 pc;   /* the connection: *persistConn, *http2ClientConn */
	__u32 h2i;  /* net/http/internal/http2 types (Go 1.27) */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct g_key);
	__type(value, struct server_req);
} servers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct g_key);
	__type(value, struct client_req);
} clients SEC(".maps");

/* Processes that made Go HTTP calls report their exit in this ring, in
 * order with their requests. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} go_procs SEC(".maps");

const struct request_start_event *unused_request_start_event __attribute__((unused));
const struct request_end_event *unused_request_end_event __attribute__((unused));
const struct go_offsets *unused_go_offsets __attribute__((unused));

static __always_inline __u64 new_id(void)
{
	__u64 id = ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
	return id ? id : 1;
}

/*
 * Windows: a struct's fields are taken from one copy of its first bytes
 * rather than read one by one. A bpf_probe_read_user costs ~90 ns here
 * whatever its size up to a few hundred bytes (test/bench/
 * results-gohttp-programs.md), a load from a copy nothing. The copy is in a
 * per-CPU buffer: a uprobe program runs with migration, not preemption,
 * disabled, so another thread's program may take the buffer over; owner
 * (the thread's pid_tgid, set before the copy) tells, and fields taken
 * from a buffer whose owner changed are read again one by one. A field past
 * the window, or a copy that failed (a page never touched), is read alone.
 */
#define WINDOW 224
#define REQUEST_WINDOW WINDOW /* net/http.Request: Method .. TLS (offsets <= 208) */
#define CONN_WINDOW 64        /* net/http.conn: rwc, tlsState */
#define URL_WINDOW 112        /* net/url.URL: Host, Path, RawQuery */
#define MAP_WINDOW 32         /* runtime.hmap / internal/runtime/maps.Map headers */
#define GO_MAP_COUNT 0        /* hmap.count, Map.used: the first word of both */

struct window {
	__u64 owner;
	__u8 b[WINDOW];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct window);
} windows SEC(".maps");

/* window_read copies the size bytes at addr (at most WINDOW) into this
 * CPU's window, or returns 0. */
static __always_inline struct window *window_read(__u64 addr, __u32 size)
{
	__u32 zero = 0;
	struct window *w = bpf_map_lookup_elem(&windows, &zero);
	if (!w || !addr)
		return 0;
	w->owner = bpf_get_current_pid_tgid();
	/* Bound the size where the helper takes it (see output_data_in). */
	asm volatile("" : "+r"(size));
	if (size > WINDOW)
		size = WINDOW;
	if (bpf_probe_read_user(w->b, size, (void *)addr) != 0)
		return 0;
	return w;
}

/* field_end is where the n bytes of a field at off end: 0 when it is
 * absent or past WINDOW. */
static __always_inline __u32 field_end(__s64 off, __u32 n)
{
	return off < 0 || off > WINDOW - n ? 0 : (__u32)off + n;
}

/* window_kept tells whether the fields taken from w are this thread's:
 * nothing else wrote w since window_read. */
static __always_inline bool window_kept(struct window *w)
{
	asm volatile("" ::: "memory");
	return !w || w->owner == bpf_get_current_pid_tgid();
}

/* field returns the 8 bytes at base+off: from w, holding the size bytes at
 * base, when they are in it, else read alone; 0 for an absent field. */
static __always_inline __u64 field(struct window *w, __u32 size, __u64 base, __s64 off)
{
	if (!base || off < 0)
		return 0;
	if (w && off + 8 <= size) {
		/* off <= WINDOW - 8 here. For the verifier, the bound is
		 * checked again on the register the load uses, hidden from
		 * the compiler: 6.1 does not carry a bound over to a register
		 * the compiler derived (off + 8 for a string's length), and
		 * 6.12 breaks on a branch its own bounds make impossible, which
		 * the mask (a no-op here) takes away. */
		__u64 i = off;
		asm volatile("" : "+r"(i));
		i &= 0xff;
		if (i > WINDOW - 8)
			return 0;
		return *(__u64 *)(w->b + i);
	}
	return read_ptr(base, off);
}

static __always_inline struct gostr str_field(struct window *w, __u32 size, __u64 base, __s64 off)
{
	struct gostr s = {};
	if (off < 0)
		return s;
	s.ptr = field(w, size, base, off);
	s.len = (__s64)field(w, size, base, off + 8);
	return s;
}

/* copy_str copies the bytes of s into dst (cap bytes) and returns its full
 * length. */
static __always_inline __u16 copy_str(char *dst, __u32 cap, struct gostr s)
{
	if (s.len <= 0 || !s.ptr)
		return 0;
	__u32 n = s.len > cap ? cap : (__u32)s.len;
	bpf_probe_read_user(dst, n, (void *)s.ptr);
	return s.len > 0xffff ? 0xffff : (__u16)s.len;
}

static __always_inline void mark_process(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!bpf_map_lookup_elem(&go_procs, &tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&go_procs, &tgid, &one, BPF_ANY);
	}
}

/* own records descriptor fd, whose file is f, under the Go connection
 * goconn, as net/http's (one lookup per request once recorded). */
static __always_inline void own(__s32 fd, __u64 goconn, struct file *f)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct nethttp_conn v = {.conn = goconn, .file = (__u64)f};
	struct nethttp_conn *cur = nethttp_lookup(tgid, fd);
	if (cur && cur->conn == v.conn && cur->file == v.file)
		return;
	struct nethttp_key k = {.tgid = tgid, .fd = fd};
	bpf_map_update_elem(&nethttp_conns, &k, &v, BPF_ANY);
}

/*
 * The sockets of the Go connections requests were seen on, so that the
 * next request on a connection costs a lookup and a check instead of the
 * walk from the net.Conn to its descriptor (three reads of the program's
 * memory) and the socket's addresses (a dozen reads of the kernel's). The
 * check: the descriptor still names the same file, whose inode has the
 * same number. A Go connection's address, its descriptor's number and the
 * struct file may all be reused by a later connection; a socket inode's
 * number is new for each socket. A hit also stands for the process's entry
 * in go_procs and the descriptor's in nethttp_conns, made with it: both go
 * when the process exits or the descriptor closes, as the hit does.
 */
struct conn_key {
	__u64 goconn; /* the net.Conn's data word */
	__u32 tgid;
	__u32 _pad;
};

/* Per-CPU LRU lists (BPF_F_NO_COMMON_LRU, uapi's value; vmlinux.h leaves
 * the map flags out): an update takes no lock shared with the other CPUs.
 * Each CPU then evicts among the entries it added, which costs a cache
 * entry no more than a walk. (Not for servers: there an eviction loses a
 * request in flight.) */
#define BPF_F_NO_COMMON_LRU (1U << 1)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct conn_key);
	__type(value, struct conn_sock);
} conn_socks SEC(".maps");

static __always_inline __u64 file_ino(struct file *f) { return f ? BPF_CORE_READ(f, f_inode, i_ino) : 0; }

/* sock_known tells whether c is still the socket it was recorded for:
 * its descriptor names the same file, whose inode has the same number;
 * if so, start record e takes its descriptor and tuple. */
static __always_inline bool sock_known(struct request_start_event *e, struct conn_sock *c)
{
	__s32 fd = c->fd;
	struct file *f = fd_file(fd);
	if (!f || (__u64)f != c->file || file_ino(f) != c->ino)
		return false;
	e->fd = fd;
	__builtin_memcpy(&e->tuple, &c->tuple, sizeof(e->tuple));
	return true;
}

/* sock_of fills the descriptor and the tuple of start record e from the Go
 * connection goconn (carried by TLS when tls is set), and records the
 * descriptor as net/http's. A server request passes its goroutine's
 * servers entry as s (else 0): the socket is looked for there first, and
 * kept there for the goroutine's next request. */
static __always_inline void sock_of(struct request_start_event *e, struct go_offsets *o, __u64 goconn, bool tls,
				    struct server_req *s)
{
	e->fd = -1;
	__builtin_memset(&e->tuple, 0, sizeof(e->tuple));
	if (!goconn) {
		mark_process();
		return;
	}
	/* A hit, here or in conn_socks, also stands for the process's entry
	 * in go_procs and the descriptor's owner, recorded with it; each
	 * goes with the descriptor's close, as the hit does. */
	if (s && s->goconn == goconn && sock_known(e, &s->sock))
		return;
	struct conn_key k = {.goconn = goconn, .tgid = bpf_get_current_pid_tgid() >> 32};
	struct conn_sock *c = bpf_map_lookup_elem(&conn_socks, &k);
	if (c && sock_known(e, c)) {
		if (s) {
			s->goconn = goconn;
			s->sock = *c;
		}
		return;
	}
	mark_process();
	__s32 fd = conn_fd_of(o, goconn, tls);
	if (fd < 0)
		return;
	e->fd = fd;
	struct file *f = fd_file(fd);
	own(fd, goconn, f);
	struct sock *sk = (struct sock *)file_sock(f);
	if (!sk)
		return;
	struct conn_sock v = {.file = (__u64)f, .ino = file_ino(f), .fd = fd};
	sk_tuple(sk, &v.tuple);
	__builtin_memcpy(&e->tuple, &v.tuple, sizeof(e->tuple));
	bpf_map_update_elem(&conn_socks, &k, &v, BPF_ANY);
	if (s) {
		s->goconn = goconn;
		s->sock = v;
	}
}

/* fill_start completes start record e but for header_lookup and the
 * traceparent, which the caller fills; goconn is the connection's net.Conn
 * data word. */
static __always_inline void fill_start(struct request_start_event *e, struct go_offsets *o, __u32 kind, __u64 id,
				       __u64 parent, __u64 g, __u64 goconn, bool tls, __u16 major, __u16 minor,
				       struct server_req *s)
{
	sock_of(e, o, goconn, tls, s);
	fill_header(&e->hdr, EVENT_REQUEST_START);
	e->id = id;
	e->parent = parent;
	e->goroutine = g;
	e->kind = kind;
	e->tls = tls;
	e->proto_major = major;
	e->proto_minor = minor;
	e->_pad2 = 0;
}

/*
 * The incoming request's Traceparent header: a search of Request.Header, a
 * Go map[string][]string, for the canonical key "Traceparent" (net/textproto
 * canonicalises every incoming key), whose first value is copied into the
 * start record. Go's hash is not computed: every full slot's key is compared
 * by length and bytes. One bucket (Go <= 1.23) or group (Go >= 1.24) is
 * searched per bpf_loop step, so that the verifier checks one step rather
 * than every combination of steps; at most MAP_MAX_BLOCKS are searched per
 * request, which covers header maps of up to 52 (buckets) or 56 (groups)
 * entries, more than requests usually carry. A bigger map is searched in
 * part and the record says so (HEADER_BOUND).
 *
 * Only what the runtime has written is read: the control word or tophash
 * bytes first, then the keys of full slots one by one. Go does not zero
 * memory fresh from the kernel, so the unused parts of a bucket or group
 * array may lie on pages never touched, which bpf_probe_read_user cannot
 * fault in (a whole-group read failed for ~1 request in 10 with 20 headers).
 */
#define MAP_SLOTS 8
#define MAP_MAX_BLOCKS 8
#define GO_STRING_SIZE 16
#define GO_SLICE_SIZE 24
#define TOPHASH_MIN 5         /* runtime.minTopHash: below it a bucket slot is empty or evacuated */
#define TOPHASH_EMPTY_REST 0  /* this and every later slot of the bucket chain are empty */
#define HMAP_SAME_SIZE_GROW 8 /* runtime.sameSizeGrow, in hmap.flags */
#define CTRL_EMPTY_BIT 0x80   /* a swiss control byte with the high bit set: empty or deleted */
#define SEARCHING 0xff        /* map_search.result while the search goes on */

static const char traceparent_key[] = "Traceparent";
#define TRACEPARENT_KEY_LEN (sizeof(traceparent_key) - 1)

/* The state of one search, kept per CPU between bpf_loop steps. Uprobe
 * programs run with migration, not preemption, disabled: another thread's
 * search may take the CPU's state over in the middle of this one. owner
 * (the thread's pid_tgid) tells: a search whose owner changed stops without
 * touching the state and reports HEADER_FAULT. */
struct map_search {
	__u64 owner;
	__u32 index;  /* the binary's entry in offsets */
	__u32 result; /* enum header_lookup, or SEARCHING */
	__u64 value;  /* address of the found []string */
	/* buckets: the bucket array being walked, its length, the next
	 * index, the bucket to search next (an overflow), the old array. */
	__u64 base, count, i, cur, old;
	__u32 in_old, same_size;
	/* swiss: the directory, its length, the next entry, the current
	 * table and its groups, the next group. */
	__u64 dir, table, groups, ngroups, g;
	__s64 dir_len, d;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct map_search);
} map_scratch SEC(".maps");

/* key_matches tells whether the Go string at addr is "Traceparent": 1 yes,
 * 0 no, -1 it could not be read. */
static __always_inline int key_matches(__u64 addr)
{
	struct {
		__u64 ptr;
		__s64 len;
	} str = {};
	if (bpf_probe_read_user(&str, sizeof(str), (void *)addr) != 0)
		return -1;
	if (str.len != TRACEPARENT_KEY_LEN)
		return 0;
	char k[TRACEPARENT_KEY_LEN] = {};
	if (bpf_probe_read_user(k, sizeof(k), (void *)str.ptr) != 0)
		return -1;
	for (int i = 0; i < TRACEPARENT_KEY_LEN; i++)
		if (k[i] != traceparent_key[i])
			return 0;
	return 1;
}

/* search_slot compares one full slot's key and ends the search (returns 1)
 * when it matches or cannot be read. */
static __always_inline long search_slot(struct map_search *ms, __u64 key, __u64 value)
{
	int r = key_matches(key);
	if (r < 0) {
		ms->result = HEADER_FAULT;
		return 1;
	}
	if (r) {
		ms->value = value;
		ms->result = HEADER_FOUND;
		return 1;
	}
	return 0;
}

static __always_inline long stop(struct map_search *ms, __u32 result)
{
	ms->result = result;
	return 1;
}

/* bucket_step searches one bucket of a runtime.hmap: the buckets and their
 * overflow chains, then, while the map grows, the old buckets (their slots
 * not yet moved still have a tophash of at least TOPHASH_MIN; moved ones
 * are marked evacuated, so no entry is seen twice). */
static long bucket_step(__u64 step, void *ctx)
{
	__u32 zero = 0;
	struct map_search *ms = bpf_map_lookup_elem(&map_scratch, &zero);
	if (!ms || ms->owner != bpf_get_current_pid_tgid())
		return 1;
	struct go_offsets *o = bpf_map_lookup_elem(&offsets, &ms->index);
	if (!o)
		return stop(ms, HEADER_FAULT);
	if (!ms->cur) {
		if (ms->i >= ms->count) {
			if (ms->in_old || !ms->old)
				return stop(ms, HEADER_ABSENT);
			ms->in_old = 1;
			ms->base = ms->old;
			if (!ms->same_size)
				ms->count >>= 1;
			ms->i = 0;
		}
		if (!ms->base)
			return stop(ms, HEADER_ABSENT); /* an empty map may have no buckets */
		ms->cur = ms->base + ms->i * o->bucket_size;
		ms->i++;
	}
	__u64 b = ms->cur;
	ms->cur = 0;
	__u8 top[MAP_SLOTS] = {};
	/* A bucket whose page was never touched holds nothing: its tophash
	 * bytes are zero (TOPHASH_EMPTY_REST), as Go left the fresh memory. */
	if (bpf_probe_read_user(top, sizeof(top), (void *)(b + o->bucket_tophash)) != 0)
		return 0;
	for (__u64 s = 0; s < MAP_SLOTS; s++) {
		if (top[s] == TOPHASH_EMPTY_REST)
			return 0; /* nothing more in this chain */
		if (top[s] < TOPHASH_MIN)
			continue;
		if (search_slot(ms, b + o->bucket_keys + s * GO_STRING_SIZE, b + o->bucket_values + s * GO_SLICE_SIZE))
			return 1;
	}
	ms->cur = read_ptr(b, o->bucket_overflow);
	return 0;
}

/* swiss_step searches one group of an internal/runtime/maps.Map: the only
 * group when its directory is empty (small maps), else every group of
 * every table of the directory (consecutive entries may name the same
 * table). */
static long swiss_step(__u64 step, void *ctx)
{
	__u32 zero = 0;
	struct map_search *ms = bpf_map_lookup_elem(&map_scratch, &zero);
	if (!ms || ms->owner != bpf_get_current_pid_tgid())
		return 1;
	struct go_offsets *o = bpf_map_lookup_elem(&offsets, &ms->index);
	if (!o)
		return stop(ms, HEADER_FAULT);
	/* Find the next table; a repeated one costs a step. */
	if (ms->g >= ms->ngroups) {
		if (ms->d >= ms->dir_len)
			return stop(ms, HEADER_ABSENT);
		__u64 t = read_ptr(ms->dir, ms->d * 8);
		ms->d++;
		if (!t)
			return stop(ms, HEADER_FAULT);
		if (t == ms->table)
			return 0;
		ms->table = t;
		__u64 mask = 0;
		ms->groups = read_ptr(t, o->swiss_table_groups + o->swiss_groups_data);
		if (bpf_probe_read_user(&mask, sizeof(mask),
					(void *)(t + o->swiss_table_groups + o->swiss_groups_length_mask)) != 0 ||
		    !ms->groups)
			return stop(ms, HEADER_FAULT);
		ms->ngroups = mask + 1;
		ms->g = 0;
	}
	__u64 size = o->swiss_group_size;
	__u64 grp = ms->groups + ms->g * size;
	ms->g++;
	__u64 ctrl = 0;
	if (bpf_probe_read_user(&ctrl, sizeof(ctrl), (void *)(grp + o->swiss_group_ctrl)) != 0)
		return stop(ms, HEADER_FAULT); /* the runtime writes every group's control word */
	__u64 slot_size = (size - o->swiss_group_slots) / MAP_SLOTS;
	for (__u64 s = 0; s < MAP_SLOTS; s++) {
		if ((ctrl >> (s * 8)) & CTRL_EMPTY_BIT)
			continue;
		__u64 slot = grp + o->swiss_group_slots + s * slot_size;
		if (search_slot(ms, slot, slot + GO_STRING_SIZE))
			return 1;
	}
	if (ms->g >= ms->ngroups && ms->d >= ms->dir_len)
		return stop(ms, HEADER_ABSENT);
	return 0;
}

/* The header of a Request.Header map, from one copy of its first
 * MAP_WINDOW bytes. */
struct map_head {
	__u64 count; /* entries */
	__u64 b, flags, buckets, oldbuckets; /* runtime.hmap */
	__u64 dir;                           /* swiss: the directory and its length */
	__s64 dir_len;
};

static __always_inline void take_map_head(struct map_head *h, struct window *w, struct go_offsets *o, __u64 m)
{
	h->count = field(w, MAP_WINDOW, m, GO_MAP_COUNT);
	if (o->header_map == GO_MAP_BUCKETS) {
		h->b = field(w, MAP_WINDOW, m, o->hmap_b) & 0xff;
		h->flags = field(w, MAP_WINDOW, m, o->hmap_flags) & 0xff;
		h->buckets = field(w, MAP_WINDOW, m, o->hmap_buckets);
		h->oldbuckets = field(w, MAP_WINDOW, m, o->hmap_oldbuckets);
	} else {
		h->dir = field(w, MAP_WINDOW, m, o->swiss_dir_ptr);
		h->dir_len = (__s64)field(w, MAP_WINDOW, m, o->swiss_dir_len);
	}
}

/* find_traceparent searches the header map m (Request.Header) and copies
 * the first Traceparent value into e. It returns enum header_lookup. An
 * empty map, as most requests' are once net/http took Host out of it, costs
 * one read. */
static __always_inline __u32 find_traceparent(struct go_offsets *o, __u32 index, __u64 m,
					      struct request_start_event *e)
{
	if (o->header_map == GO_MAP_NONE || o->request_header < 0)
		return HEADER_NOT_SEARCHED;
	if (!m)
		return HEADER_ABSENT;
	struct map_head h = {};
	struct window *w = window_read(m, MAP_WINDOW);
	take_map_head(&h, w, o, m);
	if (!window_kept(w))
		take_map_head(&h, 0, o, m);
	if (h.count == 0)
		return HEADER_ABSENT;
	__u32 zero = 0;
	struct map_search *ms = bpf_map_lookup_elem(&map_scratch, &zero);
	if (!ms)
		return HEADER_FAULT;
	__u64 owner = bpf_get_current_pid_tgid();
	__builtin_memset(ms, 0, sizeof(*ms));
	ms->owner = owner;
	ms->index = index;
	ms->result = SEARCHING;
	bool exhausted = false;
	if (o->header_map == GO_MAP_BUCKETS) {
		if (h.b > 30)
			return HEADER_FAULT;
		ms->count = 1ULL << h.b;
		ms->base = h.buckets;
		ms->old = h.oldbuckets;
		ms->same_size = (h.flags & HMAP_SAME_SIZE_GROW) != 0;
		bpf_loop(MAP_MAX_BLOCKS, bucket_step, 0, 0);
		/* All steps used: done only if nothing is left to read. */
		exhausted = !ms->cur && ms->i >= ms->count && (ms->in_old || !ms->old);
	} else if (o->header_map == GO_MAP_SWISS) {
		ms->dir_len = h.dir_len;
		ms->dir = h.dir;
		if (!ms->dir)
			return HEADER_ABSENT;
		if (ms->dir_len <= 0) {
			/* A small map: dir is its only group. */
			ms->groups = ms->dir;
			ms->ngroups = 1;
			ms->dir_len = 0;
		}
		bpf_loop(MAP_MAX_BLOCKS, swiss_step, 0, 0);
	} else {
		return HEADER_NOT_SEARCHED;
	}
	/* Read the result, then check that it is still this search's. */
	__u32 result = ms->result;
	__u64 value = ms->value;
	if (ms->owner != owner)
		return HEADER_FAULT;
	if (result == SEARCHING)
		return exhausted ? HEADER_ABSENT : HEADER_BOUND;
	if (result != HEADER_FOUND)
		return result;
	/* The value, a []string: its first string. A Traceparent key
	 * without a value gives an empty one. */
	struct {
		__u64 arr;
		__s64 len;
	} slice = {};
	if (bpf_probe_read_user(&slice, sizeof(slice), (void *)value) != 0)
		return HEADER_FAULT;
	if (slice.len <= 0 || !slice.arr)
		return HEADER_FOUND;
	struct {
		__u64 ptr;
		__s64 len;
	} v = {};
	if (bpf_probe_read_user(&v, sizeof(v), (void *)slice.arr) != 0)
		return HEADER_FAULT;
	if (v.len <= 0 || !v.ptr)
		return HEADER_FOUND;
	__u32 c = v.len > TRACEPARENT_CAP ? TRACEPARENT_CAP : (__u32)v.len;
	if (bpf_probe_read_user(e->traceparent, c, (void *)v.ptr) != 0)
		return HEADER_FAULT;
	e->traceparent_len = v.len > 0xffff ? 0xffff : (__u16)v.len;
	return HEADER_FOUND;
}

/* end_event starts a request_end record in the ring (reserve_or_count: no
 * per-CPU scratch, which two preempted uprobe runs on one CPU would share);
 * the caller submits it. */
static __always_inline struct request_end_event *end_event(__u32 kind, __u64 id)
{
	struct request_end_event *e = reserve_or_count(struct request_end_event);
	if (!e)
		return 0;
	fill_header(&e->hdr, EVENT_REQUEST_END);
	e->id = id;
	e->kind = kind;
	e->status = 0;
	e->request_size = -1;
	e->response_size = -1;
	e->error = 0;
	e->method_len = e->path_len = e->host_len = e->query_len = 0;
	e->_pad = 0;
	return e;
}

static __always_inline void take_req(struct req_fields *f, struct window *w, __u64 req, __s64 method, __s64 host,
				     __s64 url_off, __s64 length)
{
	f->method = str_field(w, REQUEST_WINDOW, req, method);
	f->host = str_field(w, REQUEST_WINDOW, req, host);
	f->url = field(w, REQUEST_WINDOW, req, url_off);
	f->length = length >= 0 ? (__s64)field(w, REQUEST_WINDOW, req, length) : -1;
}

struct url_fields {
	struct gostr path, query, host;
};

static __always_inline void take_url(struct url_fields *f, struct window *w, struct go_offsets *o, __u64 url)
{
	f->path = str_field(w, URL_WINDOW, url, o->url_path);
	f->query = str_field(w, URL_WINDOW, url, o->url_raw_query);
	f->host = str_field(w, URL_WINDOW, url, o->url_host);
}

/* request_strings fills the method, path, host and query of a request
 * whose fields are r: a copy of its URL's first bytes, then one read per
 * string. */
static __always_inline void request_strings(struct request_end_event *e, struct go_offsets *o, struct req_fields *r)
{
	struct url_fields u = {};
	struct window *w = window_read(r->url, URL_WINDOW);
	take_url(&u, w, o, r->url);
	if (!window_kept(w))
		take_url(&u, 0, o, r->url);
	e->method_len = copy_str(e->method, REQ_METHOD_CAP, r->method);
	e->host_len = copy_str(e->host, REQ_HOST_CAP, r->host);
	if (!e->host_len)
		e->host_len = copy_str(e->host, REQ_HOST_CAP, u.host);
	e->path_len = copy_str(e->path, REQ_PATH_CAP, u.path);
	e->query_len = copy_str(e->query, REQ_QUERY_CAP, u.query);
	e->request_size = r->length;
}

/* request_fields_at fills the method, path, host and query of a request
 * whose fields are at the given offsets: a copy of the request's first
 * bytes, then request_strings. */
static __always_inline void request_fields_at(struct request_end_event *e, struct go_offsets *o, __u64 req,
					      __s64 method, __s64 host, __s64 url_off, __s64 length)
{
	struct req_fields r = {};
	struct window *w = window_read(req, REQUEST_WINDOW);
	take_req(&r, w, req, method, host, url_off, length);
	if (!window_kept(w))
		take_req(&r, 0, req, method, host, url_off, length);
	request_strings(e, o, &r);
}

/* request_fields fills the method, path, host and query of a *Request. */
static __always_inline void request_fields(struct request_end_event *e, struct go_offsets *o, __u64 req)
{
	request_fields_at(e, o, req, o->request_method, o->request_host, o->request_url, o->request_content_length);
}

/* The fields of a server request that its start record takes. */
struct start_fields {
	struct gostr method;
	__s64 major, minor;
	__u64 header, tls;
};

static __always_inline void take_start(struct start_fields *f, struct window *w, struct go_offsets *o, __u64 req)
{
	f->method = str_field(w, REQUEST_WINDOW, req, o->request_method);
	f->major = f->minor = 0;
	if (o->request_proto_major >= 0 && o->request_proto_minor >= 0) {
		f->major = (__s64)field(w, REQUEST_WINDOW, req, o->request_proto_major);
		f->minor = (__s64)field(w, REQUEST_WINDOW, req, o->request_proto_minor);
	}
	f->header = field(w, REQUEST_WINDOW, req, o->request_header);
	f->tls = field(w, REQUEST_WINDOW, req, o->request_tls);
}

/* h2c_preface tells whether a request whose method is m, an HTTP/2.0
 * request, is the client preface of prior-knowledge h2c ("PRI *
 * HTTP/2.0") read by net/http's HTTP/1 server: a handler such as
 * golang.org/x/net/http2/h2c's hijacks the connection and serves its
 * streams with an HTTP/2 server that no probe of this collector covers. It
 * is no request: no span, and the socket is not claimed, so the sockets
 * collector, which sees the preface as HTTP/2, traces each stream.
 * (net/http's own HTTP/2 servers never pass a PRI request to a handler.) */
static __always_inline bool h2c_preface(struct gostr m)
{
	char b[4] = {};
	if (m.len != 3 || !m.ptr || bpf_probe_read_user(b, 3, (void *)m.ptr) != 0)
		return false;
	return b[0] == 'P' && b[1] == 'R' && b[2] == 'I';
}

/* The HTTP/1 server's connection: its net.Conn data word and whether TLS
 * carries it. */
struct conn_fields {
	__u64 goconn, tls;
};

static __always_inline void take_conn(struct conn_fields *f, struct window *w, struct go_offsets *o, __u64 conn)
{
	f->goconn = o->conn_rwc >= 0 ? field(w, CONN_WINDOW, conn, o->conn_rwc + 8) : 0;
	f->tls = field(w, CONN_WINDOW, conn, o->conn_tls_state);
}

/* serve_req takes the fields of a server request that its end record
 * needs (request_strings) from the same copy. */
static __always_inline void serve_req(struct req_fields *r, struct window *w, struct go_offsets *o, __u64 req)
{
	take_req(r, w, req, o->request_method, o->request_host, o->request_url, o->request_content_length);
}

SEC("uprobe/go_serve_http")
int go_serve_http(struct pt_regs *ctx)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o)
		return 0;
	struct g_key k = {.g = GO_G(ctx), .tgid = bpf_get_current_pid_tgid() >> 32};
	struct server_req s = {.id = new_id(), .resp = GO_ARG3(ctx)};
	__u64 req = GO_ARG4(ctx);
	struct start_fields f = {};
	struct window *w = window_read(req, REQUEST_WINDOW);
	take_start(&f, w, o, req);
	serve_req(&s.f, w, o, req);
	if (!window_kept(w)) {
		take_start(&f, 0, o, req);
		serve_req(&s.f, 0, o, req);
	}
	/* A goroutine serves its connection's requests one after another
	 * (HTTP/1 keep-alive), and an ended request leaves its entry in
	 * place: the entry is rewritten where it is, a lookup instead of an
	 * update (which allocates an element and frees the old one). Only
	 * this goroutine writes or reads its entry. */
	struct server_req *cur = bpf_map_lookup_elem(&servers, &k);
	if (f.major == 2 && h2c_preface(f.method)) {
		if (cur)
			bpf_map_delete_elem(&servers, &k);
		return 0;
	}
	if (cur) {
		cur->id = s.id;
		cur->resp = s.resp;
		cur->f = s.f;
	} else {
		bpf_map_update_elem(&servers, &k, &s, BPF_ANY);
	}
	__u64 goconn = 0;
	bool tls;
	if (f.major == 2) {
		/* rw is the HTTP/2 server's response writer (a one-pointer
		 * struct in Go 1.27, stored in the interface as that pointer). */
		tls = f.tls != 0;
		__u64 sc = read_ptr(read_ptr(s.resp, o->h2_rw_rws), o->h2_rws_conn);
		goconn = conn_ptr(sc, o->h2_server_conn_conn);
	} else {
		__u64 conn = read_ptr(s.resp, o->response_conn);
		struct conn_fields c = {};
		w = window_read(conn, CONN_WINDOW);
		take_conn(&c, w, o, conn);
		if (!window_kept(w))
			take_conn(&c, 0, o, conn);
		tls = c.tls != 0;
		goconn = conn ? c.goconn : 0;
	}
	struct request_start_event *e = reserve_or_count(struct request_start_event);
	if (!e)
		return 0;
	e->traceparent_len = 0;
	e->header_lookup = find_traceparent(o, (__u32)bpf_get_attach_cookie(ctx), f.header, e);
	fill_start(e, o, REQUEST_SERVER, s.id, 0, k.g, goconn, tls, (__u16)f.major, (__u16)f.minor, cur);
	submit(e);
	return 0;
}

/* take_state takes a response's status and body bytes written. */
static __always_inline void take_state(__s64 *status, __s64 *written, struct window *w, __u32 size, __u64 state,
				       __s64 status_off, __s64 written_off)
{
	*status = (__s64)field(w, size, state, status_off);
	*written = written_off >= 0 ? (__s64)field(w, size, state, written_off) : -1;
}

/* server_end ends the server request in flight on the goroutine, whose
 * response writer is the probed method's receiver: a *response (HTTP/1),
 * or an HTTP/2 response writer whose rws holds the state. */
static __always_inline int server_end(struct pt_regs *ctx, bool h2)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o)
		return 0;
	struct g_key k = {.g = GO_G(ctx), .tgid = bpf_get_current_pid_tgid() >> 32};
	struct server_req *s = bpf_map_lookup_elem(&servers, &k);
	__u64 w = GO_ARG1(ctx);
	if (!s || s->resp != w) {
		count(COUNTER_CALLS_LOST);
		return 0;
	}
	__u64 id = s->id;
	struct req_fields r = s->f;
	/* Ended in place rather than deleted (a hash operation): only this
	 * goroutine writes its entry, and its next request replaces it. A
	 * client call on the goroutine meanwhile finds no parent (id 0).
	 * Before the reserve: the 6.1 verifier loses the record's non-null
	 * state where the compiler merges a path without it into these
	 * stores. */
	s->id = 0;
	s->resp = 0;
	struct request_end_event *e = end_event(REQUEST_SERVER, id);
	if (!e)
		return 0;
	request_strings(e, o, &r);
	__u64 state = w;
	__s64 status_off = o->response_status, written_off = o->response_written;
	if (h2) {
		state = read_ptr(w, o->h2_rw_rws);
		status_off = o->h2_rws_status;
		written_off = o->h2_rws_wrote_bytes;
	}
	__s64 status = 0, written = -1;
	/* The response writer's state may be small (HTTP/2's): the copy
	 * ends with the last field taken. */
	__u32 size = field_end(status_off, 8);
	if (field_end(written_off, 8) > size)
		size = field_end(written_off, 8);
	struct window *sw = window_read(state, size);
	take_state(&status, &written, sw, size, state, status_off, written_off);
	if (!window_kept(sw))
		take_state(&status, &written, 0, 0, state, status_off, written_off);
	/* Both write the 200 header themselves when the handler wrote none. */
	e->status = status > 0 ? (__u32)status : 200;
	e->response_size = written;
	submit(e);
	return 0;
}

SEC("uprobe/go_finish_request")
int go_finish_request(struct pt_regs *ctx)
{
	return server_end(ctx, false);
}

SEC("uprobe/go_h2_handler_done")
int go_h2_handler_done(struct pt_regs *ctx)
{
	return server_end(ctx, true);
}

/* client_start records a client call on the current goroutine and sends
 * its start; the parent is the server request the goroutine serves. */
static __always_inline void client_start(struct go_offsets *o, struct pt_regs *ctx, __u64 req, __u64 conn,
					 __s64 conn_off, __s64 tls_off, __u16 major, __u16 minor, bool h2i)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct g_key k = {.g = GO_G(ctx), .tgid = tgid};
	struct client_req c = {.id = new_id(), .req = req, .pc = conn, .h2i = h2i};
	bpf_map_update_elem(&clients, &k, &c, BPF_ANY);

	__u64 parent = 0;
	struct server_req *s = bpf_map_lookup_elem(&servers, &k);
	if (s)
		parent = s->id;
	bool tls = read_ptr(conn, tls_off) != 0;
	__u64 goconn = conn_ptr(conn, conn_off);
	struct request_start_event e = {};
	fill_start(&e, o, REQUEST_CLIENT, c.id, parent, k.g, conn ? goconn : 0, tls, major, minor, 0);
	output(&e, sizeof(e));
}

SEC("uprobe/go_round_trip")
int go_round_trip(struct pt_regs *ctx)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o)
		return 0;
	client_start(o, ctx, read_ptr(GO_ARG2(ctx), o->transport_request_request), GO_ARG1(ctx),
		     o->persist_conn_conn, o->persist_conn_tls_state, 1, 1, false);
	return 0;
}

/* net/http.(*http2ClientConn).RoundTrip(cc, req) */
SEC("uprobe/go_h2_round_trip")
int go_h2_round_trip(struct pt_regs *ctx)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o)
		return 0;
	client_start(o, ctx, GO_ARG2(ctx), GO_ARG1(ctx), o->h2_client_conn_tconn, o->h2_client_conn_tls_state, 2, 0,
		     false);
	return 0;
}

/* net/http/internal/http2.(*ClientConn).roundTrip(cc, req *ClientRequest) (Go 1.27) */
SEC("uprobe/go_h2i_round_trip")
int go_h2i_round_trip(struct pt_regs *ctx)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o)
		return 0;
	client_start(o, ctx, GO_ARG2(ctx), GO_ARG1(ctx), o->h2i_client_conn_tconn, o->h2i_client_conn_tls_state, 2,
		     0, true);
	return 0;
}

SEC("uprobe/go_round_trip_return")
int go_round_trip_return(struct pt_regs *ctx)
{
	struct go_offsets *o = offsets_of(ctx);
	if (!o)
		return 0;
	struct g_key k = {.g = GO_G(ctx), .tgid = bpf_get_current_pid_tgid() >> 32};
	struct client_req *c = bpf_map_lookup_elem(&clients, &k);
	if (!c) {
		count(COUNTER_CALLS_LOST);
		return 0;
	}
	struct request_end_event *e = end_event(REQUEST_CLIENT, c->id);
	__u64 req = c->req;
	bool h2i = c->h2i;
	bpf_map_delete_elem(&clients, &k);
	if (!e)
		return 0;
	__s64 status_off = o->client_response_status_code, length_off = o->client_response_content_length;
	if (h2i) {
		request_fields_at(e, o, req, o->h2i_request_method, o->h2i_request_host, o->h2i_request_url,
				  o->h2i_request_content_length);
		status_off = o->h2i_response_status_code;
		length_off = o->h2i_response_content_length;
	} else {
		request_fields(e, o, req);
	}
	__u64 resp = GO_ARG1(ctx);
	if (GO_ARG2(ctx) != 0 || !resp) {
		e->error = 1;
	} else {
		__s64 status = 0, cl = -1;
		if (status_off >= 0)
			bpf_probe_read_user(&status, sizeof(status), (void *)(resp + status_off));
		if (length_off >= 0)
			bpf_probe_read_user(&cl, sizeof(cl), (void *)(resp + length_off));
		e->status = (__u32)status;
		e->response_size = cl;
	}
	submit(e);
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int go_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return mark_exit((struct task_struct *)ctx->args[0], &go_procs);
}

SEC("raw_tracepoint/sched_process_exec")
int go_process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	return mark_exec((struct task_struct *)ctx->args[0]);
}
