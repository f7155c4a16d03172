// Package openssl is the collector for TLS plaintext from OpenSSL: uprobes on
// SSL_read, SSL_write, SSL_read_ex and SSL_write_ex in every libssl the node
// runs and in executables that contain OpenSSL themselves (node), attached
// once per file. The SSL* of each call is tied to its TCP socket by the
// syscalls made inside the call (see bpf/openssl.bpf.c), so no per-version
// struct offsets are needed.
package openssl
