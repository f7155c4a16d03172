/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The protocol of a TCP connection, decided in the kernel from the first
 * bytes of a call, so that only connections a parser wants cost a copy.
 * To teach it a protocol: add it to enum proto and a row to the table
 * (a prefix of at most CLASSIFY_BYTES bytes); a protocol told apart by
 * something other than a prefix gets its own test in classify().
 */
#ifndef __PERISCOPE_CLASSIFY_BPF_H__
#define __PERISCOPE_CLASSIFY_BPF_H__

enum proto {
	PROTO_UNKNOWN = 0, /* not decided yet */
	PROTO_HTTP1 = 1,   /* HTTP/1.x: a request line or a status line */
	PROTO_HTTP2 = 2,   /* the HTTP/2 connection preface (h2c, prior knowledge) */
	PROTO_TLS = 3,     /* TLS records: ciphertext, a TLS library's collector has the plaintext */
	PROTO_OTHER = 4,   /* nothing the table knows after CLASSIFY_TRIES calls */
	PROTO_IGNORED = 5, /* an ignored port (the agent's export path, configured ports) */
	PROTO_POSTGRES = 6, /* a PostgreSQL startup message (protocol 3.x) */
	PROTO_MYSQL = 7,    /* a MySQL/MariaDB server greeting (protocol 10) */
	PROTO_REDIS = 8,    /* a RESP array of bulk strings: a Redis command */
};

#define CLASSIFY_BYTES 8
/* Calls of a connection classified before it is given up: a connection
 * found mid-message (opened before the agent started) is recognised at
 * its next message. */
#define CLASSIFY_TRIES 16

struct proto_prefix {
	char prefix[CLASSIFY_BYTES];
	__u8 len;
	__u8 proto;
};

static const struct proto_prefix proto_prefixes[] = {
	{"GET ", 4, PROTO_HTTP1},
	{"POST ", 5, PROTO_HTTP1},
	{"PUT ", 4, PROTO_HTTP1},
	{"HEAD ", 5, PROTO_HTTP1},
	{"DELETE ", 7, PROTO_HTTP1},
	{"PATCH ", 6, PROTO_HTTP1},
	{"OPTIONS ", 8, PROTO_HTTP1},
	{"CONNECT ", 8, PROTO_HTTP1},
	{"TRACE ", 6, PROTO_HTTP1},
	{"HTTP/1.", 7, PROTO_HTTP1},
	{"PRI * HT", 8, PROTO_HTTP2},
};

#define PROTO_PREFIXES (sizeof(proto_prefixes) / sizeof(proto_prefixes[0]))

static __always_inline bool is_digit(__u8 c) { return c >= '0' && c <= '9'; }

/* classify_db tells the database protocols, which have no fixed prefix:
 * - PostgreSQL: the startup message, a 4-byte length (< 64 KiB here) then
 *   protocol 3.x. An SSLRequest or GSSENCRequest decides nothing: TLS
 *   follows ('S', then a TLS record) or the startup message does ('N').
 * - MySQL/MariaDB: the server speaks first; its greeting is a 3-byte length,
 *   sequence 0, protocol version 10 and a version string starting with a
 *   digit. Both ends classify on it (the server's write, the client's read).
 * - Redis: "*<count>\r\n$", a RESP array of bulk strings, as every client
 *   library sends commands (inline commands are not claimed). */
static __always_inline __u8 classify_db(const __u8 *b, __u32 n)
{
	if (n >= 8 && b[0] == 0 && b[1] == 0 && b[4] == 0 && b[5] == 3 && b[6] == 0 && b[7] == 0)
		return PROTO_POSTGRES;
	if (n >= 6 && b[2] == 0 && b[3] == 0 && b[4] == 0x0a && is_digit(b[5]))
		return PROTO_MYSQL;
	/* The count's 1 to 3 digits, then CRLF and '$' (constant indexes: the
	 * verifier refuses a variable offset into the stack). */
	if (n < 5 || b[0] != '*' || b[1] < '1' || b[1] > '9')
		return PROTO_UNKNOWN;
	if (b[2] == '\r' && b[3] == '\n' && b[4] == '$')
		return PROTO_REDIS;
	if (n >= 6 && is_digit(b[2]) && b[3] == '\r' && b[4] == '\n' && b[5] == '$')
		return PROTO_REDIS;
	if (n >= 7 && is_digit(b[2]) && is_digit(b[3]) && b[4] == '\r' && b[5] == '\n' && b[6] == '$')
		return PROTO_REDIS;
	return PROTO_UNKNOWN;
}

/* mysql_ssl_request reports whether the n bytes at b are MySQL's SSL
 * request: a handshake response of its 32-byte fixed part only (length 32,
 * sequence 1) with CLIENT_SSL (0x800) in its capabilities. TLS records
 * follow on the connection, which no parser reads. */
static __always_inline bool mysql_ssl_request(const __u8 *b, __u32 n)
{
	return n == 36 && b[0] == 32 && b[1] == 0 && b[2] == 0 && b[3] == 1 && (b[5] & 0x08);
}

/* tls_handshake_record reports whether the n bytes at b start a TLS
 * handshake record (type 22, version 3.x, a length of at most 2^14 +
 * 2048): the ClientHello a MySQL server reads after the SSL request (which
 * it may have read in two calls, header and body). OpenSSL reads the 5-byte
 * record header alone. */
static __always_inline bool tls_handshake_record(const __u8 *b, __u32 n)
{
	return n >= 5 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04 && b[3] <= 0x48;
}

/* classify returns the protocol whose start b (n valid bytes) is, or
 * PROTO_UNKNOWN. */
static __always_inline __u8 classify(const __u8 *b, __u32 n)
{
	/* A TLS record: handshake, alert, change cipher spec or application
	 * data, version 3.x. */
	if (n >= 3 && b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 0x03 && b[2] <= 0x04)
		return PROTO_TLS;
#pragma unroll
	for (int i = 0; i < PROTO_PREFIXES; i++) {
		const struct proto_prefix *p = &proto_prefixes[i];
		if (n < p->len)
			continue;
		bool match = true;
#pragma unroll
		for (int j = 0; j < CLASSIFY_BYTES; j++) {
			if (j < p->len && b[j] != (__u8)p->prefix[j])
				match = false;
		}
		if (match)
			return p->proto;
	}
	return classify_db(b, n);
}

/* The key of a TLS library's connection (an SSL*, a *tls.Conn) of a
 * process, by which its protocol is kept (bpf/plaintext.bpf.h). */
struct plain_key {
	__u64 conn;
	__u32 tgid;
	__u32 _pad;
};

#endif /* __PERISCOPE_CLASSIFY_BPF_H__ */
