package metadata

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// FuzzParseCgroup: /proc/PID/cgroup of any process on the node is read as
// root; whatever it holds, the parser returns, and what it names is a
// valid container ID or pod UID.
func FuzzParseCgroup(f *testing.F) {
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n"))
	f.Add([]byte("12:cpu,cpuacct:/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n0::/\n"))
	f.Add([]byte("0::/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCgroup(bytes.NewReader(b))
		if err != nil {
			return
		}
		if c.ID != "" && !validContainerID(c.ID) {
			t.Errorf("container ID %q from %q", c.ID, b)
		}
		if c.PodUID != "" && !validPodUID(c.PodUID) {
			t.Errorf("pod UID %q from %q", c.PodUID, b)
		}
	})
}

// FuzzEnviron: /proc/PID/environ and the OTEL_RESOURCE_ATTRIBUTES in it
// are the application's; only the two variables the resolver reads come
// out, and at most maxResourceAttrs attributes.
func FuzzEnviron(f *testing.F) {
	if b, err := os.ReadFile("/proc/self/environ"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("PATH=/bin\x00OTEL_SERVICE_NAME=checkout\x00OTEL_RESOURCE_ATTRIBUTES=service.namespace=shop,deployment.environment=prod%2Cx,bad\x00"))
	f.Add([]byte("OTEL_RESOURCE_ATTRIBUTES=a=%zz,b=%4,=c,d=%41\x00SECRET=x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		env := parseEnviron(b)
		if !bytes.Contains(b, []byte(env.serviceName)) || !bytes.Contains(b, []byte(env.resourceAttributes)) {
			t.Fatalf("values not from the input: %+v", env)
		}
		attrs := parseResourceAttributes(env.resourceAttributes)
		if len(attrs) > maxResourceAttrs {
			t.Fatalf("%d attributes, more than %d", len(attrs), maxResourceAttrs)
		}
		for k := range attrs {
			if k == "" || strings.TrimSpace(k) != k {
				t.Fatalf("bad key %q", k)
			}
		}
		_ = splitNUL(b)
	})
}
