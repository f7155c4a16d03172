package wire

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type event_header -type data_event -type bind_event -type close_event -type write_result_event -type proc_event -type event_type -type direction -type counter -type bind_flag -type close_flag -type data_flag wire ../../bpf/wire.bpf.c -- -I../../bpf
