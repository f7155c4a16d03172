package metadata

import (
	"context"
	"runtime"
	"strings"
	"testing"
)

func TestSemconvArch(t *testing.T) {
	for in, want := range map[string]string{
		"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i686": "x86", "i386": "x86",
		"ppc64le": "ppc64", "ppc": "ppc32", "s390x": "s390x", "armv7l": "arm32", "riscv64": "riscv64",
	} {
		if got := semconvArch(in); got != want {
			t.Errorf("semconvArch(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseOSRelease(t *testing.T) {
	for in, want := range map[string]string{
		"NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n": "Debian GNU/Linux 12 (bookworm)",
		"PRETTY_NAME='Alpine Linux v3.20'\n":                                          "Alpine Linux v3.20",
		"PRETTY_NAME=Fedora\n":                                                        "Fedora",
		"ID=x\n":                                                                      "",
		"PRETTY_NAME=\"unterminated\n":                                                "unterminated",
		`PRETTY_NAME="say \"hi\" \\ \$5 a\nb"`:                                        `say "hi" \ $5 a\nb`,
	} {
		if got := parseOSRelease(in); got != want {
			t.Errorf("parseOSRelease(%q) = %q, want %q", in, got, want)
		}
	}
}

// HostAttributes on this machine: every attribute present, os.type linux,
// host.arch this program's, os.description naming the kernel.
func TestHostAttributes(t *testing.T) {
	got := map[string]string{}
	for _, a := range HostAttributes(context.Background()) {
		got[string(a.Key)] = a.Value.AsString()
	}
	if got["os.type"] != "linux" || got["host.arch"] != runtime.GOARCH || got["host.id"] == "" || !strings.Contains(got["os.description"], "Linux ") {
		t.Errorf("host attributes %v", got)
	}
}

// The host attributes go on every identity, after host.name, and the
// application's own OTEL_RESOURCE_ATTRIBUTES cannot override them.
func TestProcessesHostAttributes(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 42, fakeProc{
		exe:     "/usr/bin/app",
		cmdline: []string{"app"},
		environ: []string{"OTEL_RESOURCE_ATTRIBUTES=host.arch=mips,team=a"},
	})
	p := NewProcesses(ProcessesConfig{ProcRoot: root, HostName: "node-1", Host: HostAttributes(context.Background())})
	proc, err := p.Observe(42)
	if err != nil {
		t.Fatal(err)
	}
	var arches []string
	team := false
	for _, a := range proc.Attributes {
		switch a.Key {
		case "host.arch":
			arches = append(arches, a.Value.AsString())
		case "team":
			team = true
		}
	}
	if len(arches) != 1 || arches[0] != runtime.GOARCH || !team {
		t.Errorf("host.arch %v (want only %s), team kept %v: %v", arches, runtime.GOARCH, team, proc.Attributes)
	}
	if min := p.Process(4242); len(min.Attributes) < 3 {
		t.Errorf("an unreadable process's identity lacks the host attributes: %v", min.Attributes)
	}
}

func FuzzParseOSRelease(f *testing.F) {
	f.Add("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
	f.Add("PRETTY_NAME='x'\nPRETTY_NAME=y")
	f.Fuzz(func(t *testing.T, s string) {
		if got := parseOSRelease(s); strings.Contains(got, "\n") {
			t.Errorf("parseOSRelease(%q) = %q spans lines", s, got)
		}
	})
}
