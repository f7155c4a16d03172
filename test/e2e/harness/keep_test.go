package harness

import (
	"os"
	"path/filepath"
	"testing"
)

// TestKeepOutputCreatesDir: PERISCOPE_E2E_KEEP may name a directory that
// does not exist yet (CI names a fresh one): the agent's output is kept
// there all the same.
func TestKeepOutputCreatesDir(t *testing.T) {
	src := t.TempDir()
	a := &Agent{PID: 42, StdoutPath: filepath.Join(src, "agent.stdout"), StderrPath: filepath.Join(src, "agent.stderr")}
	for path, text := range map[string]string{a.StdoutPath: "out\n", a.StderrPath: "err\n"} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "keep", "run1")
	keepOutput(t, dir, a)
	for suffix, want := range map[string]string{".stdout": "out\n", ".stderr": "err\n"} {
		b, err := os.ReadFile(filepath.Join(dir, "TestKeepOutputCreatesDir-42"+suffix))
		if err != nil || string(b) != want {
			t.Errorf("kept %s: %q, %v; want %q", suffix, b, err, want)
		}
	}
}
