// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * No programs: this object only carries the BTF of the records and enums of
 * periscope.h, from which bpf2go generates their one Go mirror
 * (internal/wire).
 */
#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "periscope.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const struct event_header *unused_event_header __attribute__((unused));
const struct data_event *unused_data_event __attribute__((unused));
const struct bind_event *unused_bind_event __attribute__((unused));
const struct close_event *unused_close_event __attribute__((unused));
const struct write_result_event *unused_write_result_event __attribute__((unused));
const struct proc_event *unused_proc_event __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));
const enum direction *unused_direction __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum bind_flag *unused_bind_flag __attribute__((unused));
const enum close_flag *unused_close_flag __attribute__((unused));
const enum data_flag *unused_data_flag __attribute__((unused));
