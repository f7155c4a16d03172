package gohttp

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type request_start_event -type request_end_event -type go_offsets -type proc_event gohttp ../../bpf/gohttp.bpf.c -- -I../../bpf
