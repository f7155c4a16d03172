/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Records shared by Periscope's eBPF programs and their Go readers. Every
 * record starts with struct event_header; Go mirrors these structs exactly
 * (bpf2go generates the Go types from this BTF), so: fixed sizes, natural
 * alignment, explicit padding, no packed structs.
 */
#ifndef __PERISCOPE_H__
#define __PERISCOPE_H__

/* Plaintext bytes captured from the start of each TLS call. */
#define DATA_CAP 4096
/* Bytes captured from the end of a call larger than DATA_CAP, so that the
 * parser can see the end of a chunked body it could not follow. */
#define TAIL_CAP 128

enum event_type {
	EVENT_DATA = 1,  /* struct data_event */
	EVENT_BIND = 2,  /* struct bind_event */
	EVENT_CLOSE = 3, /* struct close_event */
	EVENT_WRITE_RESULT = 4, /* struct write_result_event */
	EVENT_REQUEST_START = 5, /* struct request_start_event */
	EVENT_REQUEST_END = 6,   /* struct request_end_event */
	EVENT_EXEC = 16, /* struct proc_event */
	EVENT_EXIT = 17, /* struct proc_event */
	EVENT_FORK = 18, /* struct proc_event: hdr.pid is the child, ppid the parent */
	EVENT_MMAP = 19, /* struct proc_event: an executable file mapping appeared */
	EVENT_RETRANSMIT = 32, /* struct retransmit_event */
};

enum direction {
	DIR_READ = 1,
	DIR_WRITE = 2,
};

struct event_header {
	__u64 ts; /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u32 type;
	__u32 pid; /* thread group id */
	__u32 tid;
	__u32 _pad;
};

struct data_event {
	struct event_header hdr;
	__u64 conn; /* SSL* */
	__u32 dir;
	__u32 size;     /* bytes the call moved */
	__u32 captured; /* bytes in data[] */
	__u32 tail_len; /* bytes in tail[]; they end at offset size */
	__s32 fd;       /* socket bound to conn, or -1 if not known yet */
	__u32 goroutine; /* low 32 bits of the Go runtime.g making the call (sockets
			  * collector, Go programs gohttp probes), else 0 */
	/* The TCP sequence number of the call's first byte (flags &
	 * DATA_SEQ: the sockets collector), read from the socket: both ends
	 * of a connection see the same ones, from its first byte on, even
	 * when the agent started after it. */
	__u32 seq;
	__u32 flags; /* enum data_flag */
	__u8 tail[TAIL_CAP];
	/* Only the first `captured` bytes of data[] are sent to user space. */
	__u8 data[DATA_CAP];
};

/* data_event.flags */
enum data_flag {
	DATA_SEQ = 1, /* seq is set */
};

/* A TCP connection's addresses from the owning process's point of view. */
struct tuple {
	__u16 family; /* AF_INET or AF_INET6; 0: unknown */
	__u16 local_port;
	__u16 remote_port;
	__u16 _pad;
	__u8 local_addr[16]; /* IPv4 in the first 4 bytes */
	__u8 remote_addr[16];
};

/* bind_event.flags */
enum bind_flag {
	BIND_PLAINTEXT = 1, /* the bytes are the socket's own: no TLS (the sockets collector) */
	/* The call that bound the connection moved the first bytes of its
	 * direction (sk_stream_start): its requests are counted from the
	 * start. Without it a plaintext connection was open before. */
	BIND_STREAM_START = 2,
	/* The collector knows whether it saw the connection from its start:
	 * BIND_STREAM_START tells, and without it the connection was open
	 * before (the OpenSSL collector: the SSL*'s handshake seen). A
	 * collector that cannot tell leaves both unset. */
	BIND_START_KNOWN = 4,
};

struct bind_event {
	struct event_header hdr;
	__u64 conn;
	__s32 fd;
	__u32 flags; /* enum bind_flag */
	struct tuple tuple;
};

/* close_event.flags */
enum close_flag {
	/* Not a close: the collector leaves the connection from now on to
	 * another that reports its requests whole (gohttp); what it sent of it
	 * is dropped without spans. */
	CLOSE_SUPERSEDED = 1,
};

struct close_event {
	struct event_header hdr;
	__u64 conn;
	__s32 fd;
	__u32 flags; /* enum close_flag */
};

/* SSL_write data is sent at entry, so that it is in the ring before the
 * bytes can reach a peer on this node. When OpenSSL then takes fewer bytes
 * than offered (WANT_WRITE, partial writes, errors), this record says so:
 * the application will offer the rest again. */
struct write_result_event {
	struct event_header hdr;
	__u64 conn;
	__u32 requested;
	__u32 accepted;
};

/* Requests seen whole by language-level probes (Go net/http): a start
 * record when the request begins and an end record when it is done. IDs are
 * made in the kernel so that a client call can name the server request it
 * is made from before either has ended. */
enum request_kind {
	REQUEST_SERVER = 1,
	REQUEST_CLIENT = 2,
};

#define REQ_METHOD_CAP 16
#define REQ_PATH_CAP 256
#define REQ_HOST_CAP 128
#define REQ_QUERY_CAP 128

/* Bytes of the incoming traceparent header kept: its version 00 form has
 * 55; later versions may append fields, which the parser does not need. */
#define TRACEPARENT_CAP 64

/* request_start_event.header_lookup: how the server's search of its
 * request's headers for Traceparent ended. */
enum header_lookup {
	HEADER_NOT_SEARCHED = 0, /* client requests; binaries without map offsets */
	HEADER_FOUND = 1,
	HEADER_ABSENT = 2,   /* every slot was searched */
	HEADER_BOUND = 3,    /* not found in the slots searched: the map is bigger than the bound */
	HEADER_FAULT = 4,    /* a read of the program's memory failed */
};

struct request_start_event {
	struct event_header hdr;
	__u64 id;        /* the span's ID */
	__u64 parent;    /* ID of the server request in flight on the goroutine, or 0 */
	__u64 goroutine; /* runtime.g of the caller */
	__u32 kind;      /* enum request_kind */
	__s32 fd;        /* the connection's socket, or -1 */
	__u32 tls;       /* the connection is TLS */
	__u16 proto_major; /* HTTP version: 1.0, 1.1 or 2.0; 0.0 unknown */
	__u16 proto_minor;
	struct tuple tuple;
	__u32 header_lookup;   /* enum header_lookup */
	__u16 traceparent_len; /* the first Traceparent value's length; may exceed TRACEPARENT_CAP */
	__u16 _pad2;
	char traceparent[TRACEPARENT_CAP];
};

struct request_end_event {
	struct event_header hdr;
	__u64 id;
	__u32 kind;
	__u32 status;    /* HTTP status code; 0 if none (client error) */
	__s64 request_size;  /* body bytes, -1 unknown */
	__s64 response_size; /* body bytes, -1 unknown */
	__u32 error;     /* the client call returned an error */
	__u16 method_len;
	__u16 path_len;  /* may exceed REQ_PATH_CAP: the path was cut */
	__u16 host_len;
	__u16 query_len;
	__u32 _pad;
	char method[REQ_METHOD_CAP];
	char path[REQ_PATH_CAP];
	char host[REQ_HOST_CAP];
	char query[REQ_QUERY_CAP];
};

/* Offsets of the Go fields the Go programs read, per traced binary (its Go
 * version decides them). Filled by user space from DWARF or the table in
 * symbols/; the attach cookie of each probe is the index of its binary.
 * -1: the binary's Go version lacks the field. */
struct go_offsets {
	__s64 request_method;
	__s64 request_url;
	__s64 request_host;
	__s64 request_content_length;
	__s64 url_path;
	__s64 url_raw_query;
	__s64 url_host;
	__s64 response_conn;
	__s64 response_req;
	__s64 response_written;
	__s64 response_status;
	__s64 conn_rwc;
	__s64 conn_tls_state;
	__s64 client_response_status_code;
	__s64 client_response_content_length;
	__s64 persist_conn_conn;
	__s64 persist_conn_tls_state;
	__s64 transport_request_request;
	__s64 tls_conn_conn;
	__s64 tcp_conn_conn;
	__s64 net_conn_fd;
	__s64 netfd_pfd;
	__s64 pollfd_sysfd;
	/* Request.Header, a map[string][]string (symbols.Offsets has the
	 * layouts): header_map says which layout the binary's maps have. */
	__s64 request_header;
	__s64 header_map; /* enum go_map_layout */
	__s64 hmap_flags;
	__s64 hmap_b;
	__s64 hmap_buckets;
	__s64 hmap_oldbuckets;
	__s64 bucket_tophash;
	__s64 bucket_keys;
	__s64 bucket_values;
	__s64 bucket_overflow;
	__s64 bucket_size;
	__s64 swiss_dir_ptr;
	__s64 swiss_dir_len;
	__s64 swiss_table_groups;
	__s64 swiss_groups_data;
	__s64 swiss_groups_length_mask;
	__s64 swiss_group_ctrl;
	__s64 swiss_group_slots;
	__s64 swiss_group_size;
	/* HTTP/2 (symbols.Offsets.H2*: net/http's bundled copy, or
	 * net/http/internal/http2 from Go 1.27) and the request's version. */
	__s64 request_proto_major;
	__s64 request_proto_minor;
	__s64 request_tls;
	__s64 h2_rw_rws;
	__s64 h2_rws_conn;
	__s64 h2_rws_status;
	__s64 h2_rws_wrote_bytes;
	__s64 h2_server_conn_conn;
	__s64 h2_client_conn_tconn;
	__s64 h2_client_conn_tls_state;
	/* Go 1.27's net/http/internal/http2 client types. */
	__s64 h2i_client_conn_tconn;
	__s64 h2i_client_conn_tls_state;
	__s64 h2i_request_method;
	__s64 h2i_request_url;
	__s64 h2i_request_host;
	__s64 h2i_request_content_length;
	__s64 h2i_response_status_code;
	__s64 h2i_response_content_length;
};

enum go_map_layout {
	GO_MAP_NONE = 0,    /* headers are not searched */
	GO_MAP_BUCKETS = 1, /* runtime.hmap: Go <= 1.23, GOEXPERIMENT=noswissmap */
	GO_MAP_SWISS = 2,   /* internal/runtime/maps: Go >= 1.24 */
};

struct proc_event {
	struct event_header hdr;
	__u32 ppid;
	__s32 fd;
};

#define EXEC_PATH_CAP 256
#define EXEC_ARGS_CAP 512

/* An exec, with what identifies the new program even when the process is
 * gone before /proc can be read (a curl that lives 10 ms). */
struct exec_event {
	struct event_header hdr; /* type EVENT_EXEC */
	__u32 ppid;
	__u32 args_len;               /* bytes in args */
	char filename[EXEC_PATH_CAP]; /* the path exec was given, NUL-terminated */
	char args[EXEC_ARGS_CAP];     /* argv, NUL-separated, cut at EXEC_ARGS_CAP */
};

/* Who owns a TCP socket, as far as the kernel side of the TCP collector
 * knows: the process that connected it or accepted it (retransmits fire in
 * softirq context, where the current task is meaningless). */
enum owner_role {
	OWNER_UNKNOWN = 0, /* found later, by user space (socket inode in /proc) */
	OWNER_CONNECT = 1, /* the owner connected: the peer is the server */
	OWNER_ACCEPT = 2,  /* the owner accepted: the peer is the client */
};

/* Value of the TCP collector's `owners` map, keyed by struct sock *. */
struct sock_owner {
	__u32 tgid;
	__u8 role; /* enum owner_role */
	__u8 _pad[3];
	char comm[16];
};

/* retransmit_event.flags */
#define RETRANSMIT_SYN 1 /* the segment carries SYN: a connection attempt */

/* One call of tcp_retransmit_skb that sent segments again. */
struct retransmit_event {
	struct event_header hdr; /* hdr.pid: the owner (0: unknown); hdr.tid: 0 */
	__u64 sock; /* struct sock * */
	__u64 ino;  /* the socket's inode when the owner is unknown, else 0 */
	__u32 segs; /* segments retransmitted (what RetransSegs counts) */
	__u16 family;
	__u16 local_port;
	__u16 remote_port;
	__u8 state; /* TCP state, include/net/tcp_states.h */
	__u8 role;  /* enum owner_role */
	__u8 flags; /* RETRANSMIT_* */
	__u8 _pad[3];
	__u8 local_addr[16]; /* IPv4 in the first 4 bytes */
	__u8 remote_addr[16];
	char comm[16]; /* the owner's command name, when known */
};

/* Per-CPU counters each object exports; indexes into its `counters` map. */
enum counter {
	COUNTER_RINGBUF_DROPS = 0,
	COUNTER_CALLS_LOST = 1, /* a return probe without its entry */
	/* sockets: calls on TCP connections whose protocol no parser handles
	 * (not classified, TLS, ignored ports): counted, bytes not copied. */
	COUNTER_UNPARSED_CALLS = 2,
	/* sockets: connections given up after their first calls matched no
	 * protocol of the classifier (bpf/classify.bpf.h). */
	COUNTER_UNCLASSIFIED_CONNS = 3,
	/* sockets: calls of a chunked protocol (bpf/chunks.bpf.h) larger than
	 * MAX_CHUNKS records: the bytes between are not copied. */
	COUNTER_TRUNCATED_CALLS = 4,
	COUNTER_MAX = 5,
};

#endif /* __PERISCOPE_H__ */
