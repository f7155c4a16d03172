package symbols

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func buildC(t *testing.T, src string, args ...string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Fatalf("a C compiler is needed for this test: %v", err)
	}
	dir := t.TempDir()
	c := filepath.Join(dir, "x.c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "x.so")
	cmd := exec.Command(cc, append([]string{"-shared", "-fPIC", "-o", out, c}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, b)
	}
	return out
}

func TestDefined(t *testing.T) {
	lib := buildC(t, `
extern int SSL_write(void *s, const void *b, int n);
int SSL_read(void *s, void *b, int n) { return n; }
int caller(void) { return SSL_write(0, 0, 0); }
`)
	got, err := Defined(lib, "SSL_read", "SSL_write", "SSL_read_ex")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"SSL_read": true, "SSL_write": false, "SSL_read_ex": false}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Defined(%s) = %v, want %v (imported symbols must not count)", k, got[k], v)
		}
	}
}

func TestDefinedNotELF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "text")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Defined(p, "SSL_read"); err == nil {
		t.Fatal("Defined on a shell script: want an error")
	}
}

func TestStat(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	if err := os.WriteFile(a, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "b")
	if err := os.Symlink(a, b); err != nil {
		t.Fatal(err)
	}
	ia, err := Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	if ia != ib {
		t.Fatalf("a symlink and its target differ: %v vs %v", ia, ib)
	}
	if _, err := Stat(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Stat of a missing file: want an error")
	}
}
