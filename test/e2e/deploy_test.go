package e2e

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/test/e2e/harness"
)

// helmValues are non-default values that exercise every option of the chart.
const helmValues = `
image:
  repository: registry.example.com/obs/periscope
  tag: "1.2.3"
  pullPolicy: Always
imagePullSecrets: [{name: regcred}]
otlp:
  endpoint: https://otlp.example.com:4317
  protocol: grpc
  insecure: false
  headersSecret: {name: periscope-otlp, key: headers}
sampling: {sampler: parentbased_traceidratio, arg: "0.25"}
metrics:
  port: 9555
  routePatterns: ["/users/{id}/orders/{order}", "/static/*"]
kubernetes: {enabled: "auto"}
config:
  processes: {exclude_exe: [sshd, "/usr/lib/systemd/*"]}
  tcp: {max_peers: 4096}
  http: {idle_timeout: 30s}
extraEnv:
  - {name: OTEL_RESOURCE_ATTRIBUTES_EXTRA, value: "deployment.environment=prod"}
logFormat: text
logLevel: debug
resources:
  requests: {cpu: 200m, memory: 256Mi}
  limits: {cpu: "1", memory: 1Gi}
tolerations:
  - {key: dedicated, operator: Equal, value: observability, effect: NoSchedule}
nodeSelector: {kubernetes.io/os: linux}
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: node-role.kubernetes.io/control-plane, operator: DoesNotExist}]
priorityClassName: ""
seccompProfile: {type: Unconfined}
podAnnotations: {team: sre}
podLabels: {tier: node-agent}
serviceAccount: {create: true, name: periscope-agent, annotations: {owner: sre}}
prometheus:
  scrapeAnnotations: false
  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}
linking:
  port: 7171
  wait: 500ms
  tokenSecret: obs-link-token
  networkPolicy: {enabled: false}
`

// yamlDocs splits a multi-document YAML stream into generic objects.
func yamlDocs(t *testing.T, stream string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(stream))
	var out []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
}

func kinds(docs []map[string]any) []string {
	var out []string
	for _, d := range docs {
		out = append(out, d["kind"].(string))
	}
	return out
}

// agentConfig returns the periscope.yaml of the ConfigMap in docs.
func agentConfig(t *testing.T, docs []map[string]any) string {
	t.Helper()
	for _, d := range docs {
		if d["kind"] == "ConfigMap" {
			data, _ := d["data"].(map[string]any)
			if s, ok := data["periscope.yaml"].(string); ok {
				return s
			}
		}
	}
	t.Fatal("no ConfigMap with periscope.yaml")
	return ""
}

// loadAgentConfig loads a configuration file the way the agent does.
func loadAgentConfig(t *testing.T, body string) config.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "periscope.yaml")
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.LoadEnv([]string{"--config", f}, nil, io.Discard)
	if err != nil {
		t.Fatalf("the agent rejects the deployed configuration: %v\n%s", err, body)
	}
	return c
}

func helm(t *testing.T, args ...string) string {
	t.Helper()
	bin := harness.ToolBinary(t, "helm")
	cmd := exec.Command(bin, args...)
	cmd.Dir = harness.RepoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestHelmChart: helm lint --strict and helm template with the default and
// with non-default values; the rendered DaemonSet grants exactly the plain
// manifest's capabilities, the rendered configuration is accepted by the
// agent, and each value lands where it should.
func TestHelmChart(t *testing.T) {
	chart := filepath.Join("deploy", "helm", "periscope")
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(helmValues), 0o644); err != nil {
		t.Fatal(err)
	}
	plainCaps := daemonSetCaps(t)

	t.Run("default", func(t *testing.T) {
		helm(t, "lint", "--strict", chart)
		out := helm(t, "template", "periscope", chart, "--namespace", "periscope")
		docs := yamlDocs(t, out)
		if got, want := kinds(docs), []string{"NetworkPolicy", "ServiceAccount", "Secret", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "DaemonSet"}; !reflect.DeepEqual(got, want) {
			t.Errorf("kinds %v, want %v", got, want)
		}
		caps, err := containerCaps([]byte(out), "periscope")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(caps, plainCaps) {
			t.Errorf("the chart adds %v, deploy/kubernetes/daemonset.yaml %v: they must be the same set", caps, plainCaps)
		}
		c := loadAgentConfig(t, agentConfig(t, docs))
		if c.MetricsAddr != "0.0.0.0:9464" || c.Console != "off" || c.Kube.Enabled != "true" || c.LogFormat != "json" {
			t.Errorf("default chart configuration: %+v", c)
		}
		wantLink := config.Linking{Listen: "0.0.0.0:7071", TokenFile: "/etc/periscope-linking/token", Wait: 300e6,
			PeerSelector: "app.kubernetes.io/name=periscope,app.kubernetes.io/instance=periscope"}
		if !reflect.DeepEqual(c.Linking, wantLink) {
			t.Errorf("default linking configuration %+v, want %+v", c.Linking, wantLink)
		}
		checkLinkingObjects(t, docs, "periscope", 7071, 9464)
		for _, want := range []string{"hostPID: true", "fieldPath: spec.nodeName", "prometheus.io/scrape: \"true\"", "path: /status", "- operator: Exists", "readOnly: true"} {
			if !strings.Contains(out, want) {
				t.Errorf("default render lacks %q", want)
			}
		}
		for _, bad := range []string{"privileged: true", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "ServiceMonitor"} {
			if strings.Contains(out, bad) {
				t.Errorf("default render has %q", bad)
			}
		}
	})

	t.Run("values", func(t *testing.T) {
		helm(t, "lint", "--strict", chart, "-f", values)
		out := helm(t, "template", "obs", chart, "--namespace", "monitoring", "-f", values)
		docs := yamlDocs(t, out)
		if got := kinds(docs); !reflect.DeepEqual(got, []string{"ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Service", "DaemonSet", "ServiceMonitor"}) {
			t.Errorf("kinds %v", got)
		}
		caps, err := containerCaps([]byte(out), "periscope")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(caps, plainCaps) {
			t.Errorf("the chart adds %v, deploy/kubernetes/daemonset.yaml %v", caps, plainCaps)
		}
		c := loadAgentConfig(t, agentConfig(t, docs))
		want := config.Default()
		want.Console, want.MetricsAddr, want.LogFormat, want.LogLevel = "off", "0.0.0.0:9555", "text", "debug"
		want.Kube.Enabled = "auto"
		want.Metrics.RoutePatterns = []string{"/users/{id}/orders/{order}", "/static/*"}
		want.Processes.ExcludeExe = []string{"sshd", "/usr/lib/systemd/*"}
		want.TCP.MaxPeers = 4096
		want.HTTP.IdleTimeout = 30e9
		want.Linking = config.Linking{Listen: "0.0.0.0:7171", TokenFile: "/etc/periscope-linking/token", Wait: 500e6,
			PeerSelector: "app.kubernetes.io/name=periscope,app.kubernetes.io/instance=obs"}
		if !reflect.DeepEqual(c, want) {
			t.Errorf("chart configuration:\n got %+v\nwant %+v", c, want)
		}
		for _, s := range []string{
			"image: \"registry.example.com/obs/periscope:1.2.3\"", "imagePullPolicy: Always", "name: regcred",
			"name: OTEL_EXPORTER_OTLP_ENDPOINT\n              value: \"https://otlp.example.com:4317\"",
			"name: OTEL_EXPORTER_OTLP_HEADERS\n              valueFrom:\n                secretKeyRef:\n                  name: periscope-otlp\n                  key: headers",
			"name: OTEL_TRACES_SAMPLER\n              value: \"parentbased_traceidratio\"",
			"name: OTEL_TRACES_SAMPLER_ARG\n              value: \"0.25\"",
			"deployment.environment=prod", "cpu: 200m", "memory: 1Gi", "value: observability", "kubernetes.io/os: linux",
			"node-role.kubernetes.io/control-plane", "type: Unconfined", "team: sre", "tier: node-agent",
			"serviceAccountName: periscope-agent", "containerPort: 9555", "interval: 15s", "release: prometheus",
			"containerPort: 7171", "secretName: obs-link-token",
		} {
			if !strings.Contains(out, s) {
				t.Errorf("render lacks %q", s)
			}
		}
		for _, bad := range []string{"prometheus.io/scrape", "priorityClassName", "privileged: true"} {
			if strings.Contains(out, bad) {
				t.Errorf("render has %q", bad)
			}
		}
	})
}

// checkLinkingObjects checks the default chart's linking objects: a
// Secret with a generated token mounted where the configuration reads it,
// the port, and a NetworkPolicy that lets only the agents' pods reach it
// (and anyone the metrics port).
func checkLinkingObjects(t *testing.T, docs []map[string]any, release string, port, metrics int) {
	t.Helper()
	var secret, policy, ds map[string]any
	for _, d := range docs {
		switch d["kind"] {
		case "Secret":
			secret = d
		case "NetworkPolicy":
			policy = d
		case "DaemonSet":
			ds = d
		}
	}
	token, _ := secret["data"].(map[string]any)["token"].(string)
	if dec, err := base64.StdEncoding.DecodeString(token); err != nil || len(dec) < 32 {
		t.Errorf("the linking Secret's token %q is not a generated token of 32+ characters", token)
	}
	name := secret["metadata"].(map[string]any)["name"]
	b, _ := yaml.Marshal(ds)
	for _, want := range []string{fmt.Sprintf("secretName: %s", name), "mountPath: /etc/periscope-linking", fmt.Sprintf("containerPort: %d", port), "name: POD_NAMESPACE"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("DaemonSet lacks %q", want)
		}
	}
	var np struct {
		Spec struct {
			PodSelector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"podSelector"`
			PolicyTypes []string `yaml:"policyTypes"`
			Ingress     []struct {
				From []struct {
					PodSelector *struct {
						MatchLabels map[string]string `yaml:"matchLabels"`
					} `yaml:"podSelector"`
				} `yaml:"from"`
				Ports []struct {
					Port int `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	b, _ = yaml.Marshal(policy)
	if err := yaml.Unmarshal(b, &np); err != nil {
		t.Fatal(err)
	}
	agents := map[string]string{"app.kubernetes.io/name": "periscope", "app.kubernetes.io/instance": release}
	s := np.Spec
	ok := reflect.DeepEqual(s.PodSelector.MatchLabels, agents) && reflect.DeepEqual(s.PolicyTypes, []string{"Ingress"}) && len(s.Ingress) == 2 &&
		len(s.Ingress[0].From) == 1 && s.Ingress[0].From[0].PodSelector != nil && reflect.DeepEqual(s.Ingress[0].From[0].PodSelector.MatchLabels, agents) &&
		len(s.Ingress[0].Ports) == 1 && s.Ingress[0].Ports[0].Port == port &&
		len(s.Ingress[1].From) == 0 && len(s.Ingress[1].Ports) == 1 && s.Ingress[1].Ports[0].Port == metrics
	if !ok {
		t.Errorf("NetworkPolicy: want the linking port %d from the agents only and the metrics port %d from anywhere:\n%s", port, metrics, b)
	}
}

// TestPlainManifests: the ConfigMap of deploy/kubernetes is a configuration
// the agent accepts, and the DaemonSet mounts what the agent needs.
func TestPlainManifests(t *testing.T) {
	dir := filepath.Join(harness.RepoRoot(t), "deploy", "kubernetes")
	b, err := os.ReadFile(filepath.Join(dir, "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := loadAgentConfig(t, agentConfig(t, yamlDocs(t, string(b))))
	if c.MetricsAddr != "0.0.0.0:9464" || c.Kube.Enabled != "true" {
		t.Errorf("plain configuration: %+v", c)
	}
	ds, err := os.ReadFile(filepath.Join(dir, "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mountPath: /sys/kernel/tracing", "mountPath: /sys/kernel/btf", "mountPath: /sys/fs/cgroup", "hostPID: true", "fieldPath: spec.nodeName"} {
		if !strings.Contains(string(ds), want) {
			t.Errorf("daemonset.yaml lacks %q", want)
		}
	}
}

// TestManifestsServerDryRun applies the plain manifests and the chart
// rendered with default and non-default values to a real kube-apiserver
// with `kubectl apply --dry-run=server --validate=strict`: unknown or
// misplaced fields and invalid objects fail. (The ServiceMonitor needs the
// Prometheus Operator's CRD, which this API server does not have: it is
// left out.)
func TestManifestsServerDryRun(t *testing.T) {
	harness.RequireRoot(t)
	kube := harness.StartKube(t)
	root := harness.RepoRoot(t)
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := kube.Kubectl(t, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	// The namespaces must exist for the namespaced objects' dry run.
	kubectl("apply", "-f", filepath.Join(root, "deploy", "kubernetes", "namespace.yaml"))
	kube.NewNamespace(t, "monitoring")

	out := kubectl("apply", "--dry-run=server", "--validate=strict", "-f", filepath.Join(root, "deploy", "kubernetes"))
	t.Logf("plain manifests:\n%s", out)
	for _, want := range []string{"daemonset.apps/periscope created (server dry run)", "clusterrole.rbac.authorization.k8s.io/periscope created (server dry run)", "configmap/periscope created (server dry run)"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl output lacks %q", want)
		}
	}

	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(helmValues), 0o644); err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join("deploy", "helm", "periscope")
	for _, r := range []struct {
		name string
		args []string
	}{
		{"default", []string{"template", "periscope", chart, "--namespace", "periscope"}},
		{"values", []string{"template", "obs", chart, "--namespace", "monitoring", "-f", values}},
	} {
		docs := yamlDocs(t, helm(t, r.args...))
		var keep []string
		for _, d := range docs {
			if d["kind"] == "ServiceMonitor" {
				continue
			}
			b, err := yaml.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			keep = append(keep, string(b))
		}
		f := filepath.Join(t.TempDir(), r.name+".yaml")
		if err := os.WriteFile(f, []byte(strings.Join(keep, "---\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		out := kubectl("apply", "--dry-run=server", "--validate=strict", "-f", f)
		t.Logf("chart, %s values:\n%s", r.name, out)
		if n := strings.Count(out, "(server dry run)"); n != len(keep) {
			t.Errorf("chart with %s values: %d objects accepted, want %d", r.name, n, len(keep))
		}
	}

	// The check has teeth: a field the API does not know fails.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	ds, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.Replace(string(ds), "      hostPID: true", "      hostPID: true\n      hostPIDs: true", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := kube.Kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-f", bad); err == nil || !strings.Contains(out, "hostPIDs") {
		t.Errorf("a DaemonSet with an unknown field passed the dry run (%v):\n%s", err, out)
	}
}
