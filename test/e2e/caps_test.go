package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// capsTests are the end-to-end tests of the HTTPS (nginx+curl, OpenSSL) and Go
// net/http collectors that TestCapsDaemonSetSet runs again with exactly the
// DaemonSet's capabilities.
var capsTests = []string{"TestNginxCurl", "TestGoChain", "TestGoVersions"}

// daemonSetCaps returns the capabilities that deploy/kubernetes/daemonset.yaml
// adds to the agent container ("BPF", "PERFMON", ...), after checking that it
// drops all the others and is not privileged. The Helm chart grants the same
// set (TestHelmTemplate checks it).
func daemonSetCaps(t *testing.T) []string {
	t.Helper()
	path := filepath.Join(harness.RepoRoot(t), "deploy", "kubernetes", "daemonset.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	caps, err := containerCaps(b, "periscope")
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return caps
}

// podSpec is the part of a DaemonSet the capability tests read.
type podSpec struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Template struct {
			Spec struct {
				HostPID    bool `yaml:"hostPID"`
				Containers []struct {
					Name            string `yaml:"name"`
					SecurityContext struct {
						Privileged   *bool `yaml:"privileged"`
						Capabilities struct {
							Add  []string `yaml:"add"`
							Drop []string `yaml:"drop"`
						} `yaml:"capabilities"`
					} `yaml:"securityContext"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// containerCaps finds the DaemonSet in the YAML stream doc and returns the
// capabilities its container name adds, checking that the container drops ALL
// and is not privileged.
func containerCaps(doc []byte, name string) ([]string, error) {
	dec := yaml.NewDecoder(strings.NewReader(string(doc)))
	for {
		var ds podSpec
		if err := dec.Decode(&ds); err != nil {
			return nil, fmt.Errorf("no DaemonSet with a container %q: %v", name, err)
		}
		if ds.Kind != "DaemonSet" {
			continue
		}
		if !ds.Spec.Template.Spec.HostPID {
			return nil, fmt.Errorf("the DaemonSet does not set hostPID: true")
		}
		for _, c := range ds.Spec.Template.Spec.Containers {
			if c.Name != name {
				continue
			}
			sc := c.SecurityContext
			if sc.Privileged == nil || *sc.Privileged {
				return nil, fmt.Errorf("container %q: privileged must be set to false", name)
			}
			if len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
				return nil, fmt.Errorf("container %q drops %v, not [ALL]", name, sc.Capabilities.Drop)
			}
			if len(sc.Capabilities.Add) == 0 {
				return nil, fmt.Errorf("container %q adds no capabilities", name)
			}
			return sc.Capabilities.Add, nil
		}
	}
}

func capsEnv(caps []string) string {
	return strings.ToLower(strings.Join(caps, ","))
}

// TestCapsDaemonSetSet runs the HTTPS and Go end-to-end tests again, in a child
// `go test`, with the agent holding exactly the DaemonSet's capabilities (as
// uid 0 without CAP_DAC_OVERRIDE, CAP_SYS_ADMIN or any other).
func TestCapsDaemonSetSet(t *testing.T) {
	harness.RequireRoot(t)
	caps := daemonSetCaps(t)
	t.Logf("DaemonSet capabilities: %v", caps)

	// First the quick check: the agent starts and gets ready with that set.
	t.Setenv(harness.CapsEnv, capsEnv(caps))
	bin := harness.BuildAgent(t)
	a := harness.StartAgent(t, bin, []string{"run", "--console=off", "--include-exe=periscope-caps-none"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatalf("agent with exactly %v: %v", caps, err)
	}
	if code := a.Stop(); code != 0 {
		t.Fatalf("agent with exactly %v exited with code %d", caps, code)
	}

	// Then the real tests, in a child go test (the agents they start read
	// PERISCOPE_E2E_CAPS from the environment).
	run := "^(" + strings.Join(capsTests, "|") + ")$"
	cmd := exec.Command(harness.GoTool(t), "test", "-count=1", "-p=1", "-v", "-timeout=15m", "-run", run, ".")
	cmd.Dir = filepath.Join(harness.RepoRoot(t), "test", "e2e")
	cmd.Env = append(os.Environ(), harness.CapsEnv+"="+capsEnv(caps))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("%s=%s go test -run '%s': %v in %v", harness.CapsEnv, capsEnv(caps), run, errOK(err), time.Since(start).Round(time.Second))
	passed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^--- PASS: (\w+) `).FindAllStringSubmatch(string(out), -1) {
		passed[m[1]] = true
	}
	for _, name := range capsTests {
		if !passed[name] {
			t.Errorf("%s did not pass with exactly the capabilities %v", name, caps)
		}
	}
	if err != nil || t.Failed() {
		t.Fatalf("child go test failed: %v\n%s", err, summary(out))
	}
}

// summary keeps the lines of go test -v output that say what happened: test
// results and the tests' own log lines (each cut to 500 bytes), not the
// agents' and targets' output dumped after a failure.
func summary(out []byte) string {
	var b strings.Builder
	more := 0 // continuation lines of the last kept message still to keep
	for _, line := range strings.Split(string(out), "\n") {
		l := strings.TrimSpace(line)
		keep := strings.HasPrefix(l, "---") || strings.HasPrefix(l, "===") || strings.HasPrefix(l, "FAIL") ||
			strings.HasPrefix(l, "ok") || strings.HasPrefix(l, "panic") || testLogLine.MatchString(l)
		switch {
		case keep:
			// A failure's message goes on over indented lines (the
			// spans that came, the agent's counters): keep some.
			more = 60
		case more > 0 && l != "" && !strings.HasPrefix(l, "{") && !strings.HasPrefix(l, "time="):
			more--
		default:
			continue
		}
		if len(line) > 500 {
			line = line[:500] + "..."
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

var testLogLine = regexp.MustCompile(`^\w+_test\.go:\d+: `)

// TestCapsEachNeeded removes each capability of the DaemonSet's set in turn:
// the agent must refuse to start, naming the missing capability.
func TestCapsEachNeeded(t *testing.T) {
	harness.RequireRoot(t)
	caps := daemonSetCaps(t)
	bin := harness.BuildAgent(t)
	for i, missing := range caps {
		t.Run(missing, func(t *testing.T) {
			rest := append(append([]string(nil), caps[:i]...), caps[i+1:]...)
			t.Setenv(harness.CapsEnv, capsEnv(rest))
			a := harness.StartAgent(t, bin, []string{"run", "--console=off", "--include-exe=periscope-caps-none"}, nil)
			select {
			case <-a.Done():
			case <-time.After(20 * time.Second):
				t.Fatalf("the agent without CAP_%s is still running after 20 s", missing)
			}
			code := a.Stop()
			if code == 0 {
				t.Errorf("the agent without CAP_%s exited with code 0", missing)
			}
			logs := a.Logs()
			want := "missing capability CAP_" + missing + ": needed to "
			if !strings.Contains(logs, want) {
				t.Errorf("the agent without CAP_%s exited with code %d but did not say %q:\n%s", missing, code, want, logs)
			}
			for _, other := range rest {
				if strings.Contains(logs, "CAP_"+other+":") {
					t.Errorf("the agent without CAP_%s also blames CAP_%s:\n%s", missing, other, logs)
				}
			}
		})
	}
}

func errOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
