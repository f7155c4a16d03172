package openssl

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type data_event -type bind_event -type close_event -type write_result_event -type proc_event openssl ../../bpf/openssl.bpf.c -- -I../../bpf
