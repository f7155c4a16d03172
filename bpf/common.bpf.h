/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Helpers shared by Periscope's programs: the event ring and its counters. */
#ifndef __PERISCOPE_COMMON_BPF_H__
#define __PERISCOPE_COMMON_BPF_H__

#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "periscope.h"

/* Helpers used when the running kernel has them (CO-RE tells, from the
 * kernel's own enum; vmlinux.h leaves it out). */
enum bpf_func_id {
	BPF_FUNC_get_current_task_btf = 158, /* 5.11 */
	BPF_FUNC_task_pt_regs = 175,         /* 5.15 */
};

/* have_task_btf reports whether bpf_get_current_task_btf exists: the
 * current task is then a typed pointer, whose fields are plain loads
 * instead of a helper call each. */
static __always_inline bool have_task_btf(void)
{
	return bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf);
}

/* Ring buffer size is set by the loader (MaxEntries); 0 here is replaced. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Wake user space only when this many bytes wait in the ring; below that
 * the reader collects records on its timer. 0 wakes on every record. */
const volatile __u64 wakeup_bytes = 0;

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline __u64 wakeup_flags(void)
{
	if (wakeup_bytes == 0)
		return 0;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* GO_G is the register Go's register ABI (Go 1.17 and later) keeps the
 * current goroutine's runtime.g in, in user registers r. */
#if defined(__TARGET_ARCH_x86)
#define GO_G(r) ((r)->r14)
#elif defined(__TARGET_ARCH_arm64)
#define GO_G(r) ((r)->regs[28])
#endif

/* A record's time (hdr.ts) is taken once it has its room in the ring, never
 * before: a reader that takes time T, then sees how much the ring holds,
 * knows that every record beyond that is stamped after T (internal/ring's
 * watermark, by
 * which the correlator waits for the other end of a request travelling in
 * another ring). A record stamped first and reserved later could be held
 * between the two for as long as its CPU is taken away (an interrupt, a
 * preemption, a virtual CPU descheduled), appear after the reader had moved
 * past its time, and miss its pairing. Records written in place
 * (reserve_or_count) are stamped by fill_header after the reserve; records
 * built elsewhere are stamped by output as they are copied in. */
static __always_inline void stamp(void *rec) { ((struct event_header *)rec)->ts = bpf_ktime_get_ns(); }

static __always_inline void fill_header(struct event_header *h, __u32 type)
{
	__u64 id = bpf_get_current_pid_tgid();
	stamp(h);
	h->type = type;
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->_pad = 0;
}

/* output_to copies the size bytes of a record built elsewhere (size a
 * constant) into ring (a ring buffer map) and stamps it there, counting a
 * drop in counters when there is no room. */
#define output_to(ring, counters, rec, size, flags)                              \
	({                                                                       \
		void *__r = bpf_ringbuf_reserve((ring), (size), 0);              \
		if (__r) {                                                       \
			bpf_probe_read_kernel(__r, (size), (rec));               \
			stamp(__r);                                              \
			bpf_ringbuf_submit(__r, (flags));                        \
		} else {                                                         \
			__u32 __idx = COUNTER_RINGBUF_DROPS;                     \
			__u64 *__v = bpf_map_lookup_elem((counters), &__idx);    \
			if (__v)                                                 \
				*__v += 1;                                       \
		}                                                                \
	})

/* output copies a record of constant size into the ring (output_to). */
#define output(rec, size) output_to(&events, &counters, (rec), (size), wakeup_flags())

/* output_data copies data record e, built elsewhere, with the first
 * captured bytes of its data, into the ring, and stamps it there: in the
 * smallest record with room for 128, 256, 512, 1024, 2048 or DATA_CAP bytes
 * of data that they fit (a reserve takes a constant size, and the reader copies
 * the whole record); user space reads only the captured ones. */
#define DATA_HEAD __builtin_offsetof(struct data_event, data)
#define output_data_in(e, captured, room)                                        \
	({                                                                        \
		__u32 __n = (captured);                                           \
		/* Bound the length where the helper takes it: the verifier      \
		 * loses a bound the compiler proved on another register. */    \
		asm volatile("" : "+r"(__n));                                     \
		if (__n > (room))                                                 \
			__n = (room);                                             \
		void *__r = bpf_ringbuf_reserve(&events, DATA_HEAD + (room), 0);  \
		if (__r) {                                                        \
			bpf_probe_read_kernel(__r, DATA_HEAD + __n, (e));         \
			stamp(__r);                                               \
			bpf_ringbuf_submit(__r, wakeup_flags());                  \
		} else {                                                          \
			count(COUNTER_RINGBUF_DROPS);                             \
		}                                                                 \
	})

static __always_inline void output_data(struct data_event *e, __u32 captured)
{
	if (captured <= 128)
		output_data_in(e, captured, 128);
	else if (captured <= 256)
		output_data_in(e, captured, 256);
	else if (captured <= 512)
		output_data_in(e, captured, 512);
	else if (captured <= 1024)
		output_data_in(e, captured, 1024);
	else if (captured <= 2048)
		output_data_in(e, captured, 2048);
	else
		output_data_in(e, captured, DATA_CAP);
}

/* reserve_or_count takes room for a record in the ring, counting a drop
 * when there is none. A record written in place needs no per-CPU scratch:
 * on a preemptible kernel a uprobe program runs with migration disabled
 * but can be preempted, and another task's program on the same CPU would
 * share the scratch. What it returns must go to submit() on every path. */
#define reserve_or_count(type)                                            \
	({                                                                \
		type *__r = bpf_ringbuf_reserve(&events, sizeof(type), 0); \
		if (!__r)                                                 \
			count(COUNTER_RINGBUF_DROPS);                     \
		__r;                                                      \
	})

/* submit hands a record taken by reserve_or_count to user space. */
static __always_inline void submit(void *rec) { bpf_ringbuf_submit(rec, wakeup_flags()); }

/* write_result reports that a write offered requested bytes on conn and
 * was accepted only in part (struct write_result_event); nothing when it
 * was accepted whole. */
static __always_inline void write_result(__u64 conn, __u64 requested, __u64 accepted)
{
	if (accepted >= requested)
		return;
	struct write_result_event r = {};
	fill_header(&r.hdr, EVENT_WRITE_RESULT);
	r.conn = conn;
	r.requested = requested > 0xffffffff ? 0xffffffff : (__u32)requested;
	r.accepted = (__u32)accepted;
	output(&r, sizeof(r));
}

/* emit_proc_event sends a struct proc_event about process pid. */
static __always_inline void emit_proc_event(__u32 type, __u32 pid, __u32 ppid, __s32 fd)
{
	struct proc_event e = {};
	fill_header(&e.hdr, type);
	e.hdr.pid = pid;
	e.ppid = ppid;
	e.fd = fd;
	output(&e, sizeof(e));
}

/* Process markers a collector puts in its own ring, so that user space
 * reads them in order with the collector's data: in another ring an exit
 * could overtake the process's last data, or its data an exec that
 * renamed it. */

/* mark_exit reports the exit of a process recorded in procs (those that
 * used the collector's probes) and forgets it. */
static __always_inline int mark_exit(struct task_struct *t, void *procs)
{
	__u32 pid = BPF_CORE_READ(t, pid);
	if (pid != BPF_CORE_READ(t, tgid) || !bpf_map_lookup_elem(procs, &pid))
		return 0;
	bpf_map_delete_elem(procs, &pid);
	emit_proc_event(EVENT_EXIT, pid, 0, -1);
	return 0;
}

/* mark_exec reports every exec: whatever named the process before is its
 * old program's name from here on in the ring. */
static __always_inline int mark_exec(struct task_struct *t)
{
	emit_proc_event(EVENT_EXEC, BPF_CORE_READ(t, tgid), 0, -1);
	return 0;
}

/* Force the process record into BTF for the collectors whose tests build
 * it (the shared records' Go mirrors are generated once, in
 * internal/wire from bpf/wire.bpf.c). */
const struct proc_event *unused_proc_event __attribute__((unused));

#endif /* __PERISCOPE_COMMON_BPF_H__ */
