package deploytest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// schemaModules returns the node_modules directory holding @grafana/schema
// and typescript, installed once by `scripts/tools.sh grafana-schema`.
func schemaModules(t *testing.T) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "tools.sh"), "grafana-schema")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/tools.sh grafana-schema: %v\n%s", err, stderr.String())
	}
	dir := strings.TrimSpace(stdout.String())
	if _, err := os.Stat(filepath.Join(dir, ".bin", "tsc")); err != nil {
		t.Fatalf("no tsc in %s: %v", dir, err)
	}
	return dir
}

// typecheck writes a TypeScript file that declares each dashboard (name ->
// JSON text) as Grafana's Dashboard type and runs tsc --noEmit --strict on
// it; it returns tsc's output and whether it passed.
func typecheck(t *testing.T, modules string, dashboards map[string]string) (string, bool) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	var ts strings.Builder
	ts.WriteString("import type { Dashboard } from '@grafana/schema';\n\n")
	for name, body := range dashboards {
		// Object literals: excess property checks reject unknown fields.
		ts.WriteString("export const " + name + ": Dashboard = " + strings.TrimSpace(body) + ";\n\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "dashboards.ts"), []byte(ts.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tsconfig := `{"compilerOptions": {"strict": true, "noEmit": true, "target": "es2022", "module": "esnext",
  "moduleResolution": "bundler", "types": []}, "files": ["dashboards.ts"]}`
	if err := os.WriteFile(filepath.Join(dir, "tsconfig.json"), []byte(tsconfig), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(modules, ".bin", "tsc"), "--project", "tsconfig.json", "--noEmit", "--strict")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// TestDashboardsTypecheck: every dashboard JSON is a valid value of the
// Dashboard type of Grafana's published schema (@grafana/schema), checked by
// tsc --noEmit --strict; a dashboard with a misspelt field is rejected.
func TestDashboardsTypecheck(t *testing.T) {
	modules := schemaModules(t)
	boards := map[string]string{}
	for _, file := range dashboards(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		boards[strings.TrimSuffix(filepath.Base(file), ".json")] = string(b)
	}
	if out, ok := typecheck(t, modules, boards); !ok {
		t.Fatalf("tsc --strict rejects the dashboards:\n%s", out)
	}
	t.Logf("%d dashboards type-check against @grafana/schema", len(boards))

	// The check has teeth.
	bad := strings.Replace(boards["services"], `"gridPos"`, `"gridPosition"`, 1)
	if out, ok := typecheck(t, modules, map[string]string{"bad": bad}); ok || !strings.Contains(out, "gridPosition") {
		t.Errorf("a panel with the unknown field gridPosition type-checks:\n%s", out)
	}
}
