package discovery

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type proc_event -type exec_event process ../bpf/process.bpf.c -- -I../bpf
