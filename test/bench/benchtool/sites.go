package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/link"
)

// What a uprobe hit costs depends on the instruction at the probe site (see
// the micro-benchmark): the kernel emulates some x86-64 instructions and
// single-steps the others out of line, which costs a second trap and, here,
// about thirty times as much. So the report lists the agent's probe sites and
// their first instruction.

// probeSite is one probed location of the agent: a file offset, with an
// entry uprobe, a uretprobe or both.
type probeSite struct {
	file        string
	offset      uint64
	symbol      string
	entry, ret  bool
	insn        string
	emulated    bool
	attachments int // links on this site (one per process when attached per process)
}

func (s probeSite) String() string {
	kind := "entry"
	switch {
	case s.entry && s.ret:
		kind = "entry+return"
	case s.ret:
		kind = "return"
	}
	how := "single-stepped"
	if s.emulated {
		how = "emulated"
	}
	return fmt.Sprintf("%s (%s; `%s`, %s)", s.symbol, kind, s.insn, how)
}

// agentSites reads the uprobe links the agent holds (their IDs are in the
// fdinfo of its link fds; perf-event uprobe links or uprobe_multi links) and
// describes each probed location.
func agentSites(pid int) ([]probeSite, error) {
	ids, err := fdinfoValues(pid, "link_id")
	if err != nil {
		return nil, err
	}
	type key struct {
		file   string
		offset uint64
	}
	sites := map[key]*probeSite{}
	add := func(file string, offset uint64, ret bool) {
		k := key{file, offset}
		s := sites[k]
		if s == nil {
			s = &probeSite{file: file, offset: offset}
			sites[k] = s
		}
		s.attachments++
		if ret {
			s.ret = true
		} else {
			s.entry = true
		}
	}
	for _, id := range ids {
		l, err := link.NewFromID(link.ID(id))
		if err != nil {
			continue // closed meanwhile
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			continue
		}
		switch info.Type {
		case link.PerfEventType: // one uprobe per link
			pe := info.PerfEvent()
			if pe == nil || (pe.Type != link.PerfEventUprobe && pe.Type != link.PerfEventUretprobe) {
				continue
			}
			if up := pe.Uprobe(); up != nil {
				add(up.File, uint64(up.Offset), pe.Type == link.PerfEventUretprobe)
			}
		case link.UprobeMultiType: // several offsets of one file per link
			um := info.UprobeMulti()
			if um == nil {
				continue
			}
			offsets, ok := um.Offsets()
			if !ok {
				continue
			}
			const returnFlag = 1 // BPF_F_UPROBE_MULTI_RETURN
			for _, o := range offsets {
				add(um.File, o.Offset, um.Flags&returnFlag != 0)
			}
		}
	}
	var out []probeSite
	for _, s := range sites {
		s.symbol = fmt.Sprintf("%s+%#x", filepath.Base(s.file), s.offset)
		if ex, err := link.OpenExecutable(s.file); err == nil {
			if sym, err := ex.Symbol(s.offset); err == nil {
				s.symbol = sym.Symbol
				if sym.Offset != 0 {
					s.symbol += fmt.Sprintf("+%#x", sym.Offset)
				}
			}
		}
		s.insn, s.emulated = "?", false
		if b, err := readAt(s.file, s.offset, 16); err == nil {
			s.insn, s.emulated = classifyInsn(b)
		}
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].symbol != out[j].symbol {
			return out[i].symbol < out[j].symbol
		}
		return out[i].file < out[j].file
	})
	return out, nil
}

func readAt(path string, off uint64, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := f.ReadAt(b, int64(off))
	if m == 0 {
		return nil, err
	}
	return b[:m], nil
}

// classifyInsn names the x86-64 instruction at the start of b and says
// whether the kernel emulates it for a uprobe (arch/x86/kernel/uprobes.c:
// jmp, call, jcc, nop, push; the 5-byte nop is also optimized away into a
// call on recent kernels) rather than single-stepping it out of line. A
// rough decoder: enough for function prologues and call sites.
func classifyInsn(b []byte) (string, bool) {
	h := func(n int) string { return hex.EncodeToString(b[:min(n, len(b))]) }
	if len(b) == 0 {
		return "?", false
	}
	switch {
	case len(b) >= 5 && bytes.Equal(b[:5], []byte{0x0f, 0x1f, 0x44, 0x00, 0x00}):
		return "nop5", true
	case b[0] >= 0x50 && b[0] <= 0x57:
		return "push", true
	case len(b) >= 2 && b[0] == 0x41 && b[1] >= 0x50 && b[1] <= 0x57:
		return "push", true
	case b[0] == 0x90:
		return "nop", true
	case b[0] == 0xe8:
		return "call", true
	case b[0] == 0xe9 || b[0] == 0xeb:
		return "jmp", true
	case b[0] >= 0x70 && b[0] <= 0x7f:
		return "jcc", true
	case len(b) >= 2 && b[0] == 0x0f && b[1] >= 0x80 && b[1] <= 0x8f:
		return "jcc", true
	case len(b) >= 4 && bytes.Equal(b[:4], []byte{0xf3, 0x0f, 0x1e, 0xfa}):
		return "endbr64", false
	case len(b) >= 4 && b[0] == 0x48 && b[1] == 0x83 && b[2] == 0xec:
		return fmt.Sprintf("sub $%#x,%%rsp", b[3]), false
	}
	return "bytes " + h(4), false
}

// fdinfoValues collects the values of key in the fdinfo of every fd of pid.
func fdinfoValues(pid int, key string) ([]uint32, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && k == key {
				if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
					out = append(out, uint32(n))
				}
			}
		}
	}
	return out, nil
}
