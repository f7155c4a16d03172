package harness

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Kube is a Kubernetes API server for one test: Debian's etcd and a
// kube-apiserver built by scripts/tools.sh, both on loopback ports, with no
// controller, scheduler or kubelet. Objects are stored and served exactly
// as a cluster would (admission, validation, watches); nothing runs them.
type Kube struct {
	// Server is the API server's URL (https://127.0.0.1:PORT).
	Server string
	// Kubeconfig is a kubeconfig file for the admin user (token auth,
	// the server's CA), for the agent and for kubectl.
	Kubeconfig string
	// Token is the admin's bearer token; CAFile the CA of the serving
	// certificate.
	Token, CAFile string
	// AgentToken authenticates as the agent's service account
	// (periscope/periscope, as deploy/kubernetes/rbac.yaml names it),
	// which no RBAC rule grants anything until a test applies some.
	AgentToken string
	// Client is a client-go clientset for the admin user.
	Client kubernetes.Interface

	dir     string
	t       testing.TB
	etcd    *kubeProc
	apiserv *kubeProc
}

// kubeProc is one of the server processes.
type kubeProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// StartKube starts etcd and kube-apiserver (building kube-apiserver with
// `scripts/tools.sh kube-apiserver` the first time: minutes), waits until
// /readyz answers, writes a kubeconfig, and stops both and removes their
// data in t.Cleanup. Authorization is RBAC: the admin is in
// system:masters, which it allows everything, and AgentToken's user gets
// only what a test grants. Privileged pods are allowed, and the default
// namespace has its default ServiceAccount (no controller makes it), so
// pods can be created there; NewNamespace makes
// others the same way.
func StartKube(t testing.TB) *Kube {
	t.Helper()
	etcdBin := LookTool(t, "etcd")
	apiBin := ToolBinary(t, "kube-apiserver")
	dir := t.TempDir()
	k := &Kube{dir: dir, t: t}
	t.Cleanup(k.stop)
	start := time.Now()

	// etcd, data in the temp dir.
	etcdClient, etcdPeer := FreePort(t), FreePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	k.etcd = k.startProc("etcd", etcdBin,
		"--name", "periscope-test",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "periscope-test="+peerURL,
		"--initial-cluster-state", "new",
		"--quota-backend-bytes", fmt.Sprint(256<<20),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitHTTP200(ctx, etcdURL+"/health", k.etcd.done); err != nil {
		t.Fatalf("StartKube: etcd: %v\nlog:\n%s", err, tail(k.etcd.log, 8<<10))
	}

	// Credentials: the serving certificate, a bearer token, and the
	// service account signing key the API server requires.
	certFile, keyFile, caFile := GenerateCert(t, filepath.Join(dir, "tls"))
	k.CAFile = caFile
	k.Token, k.AgentToken = randomToken(t), randomToken(t)
	tokens := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokens, k.Token+`,admin,admin-uid,"system:masters"`+"\n"+
		k.AgentToken+`,system:serviceaccount:periscope:periscope,agent-uid,"system:serviceaccounts,system:serviceaccounts:periscope"`+"\n", 0o600)
	saKey := filepath.Join(dir, "sa-key.pem")
	writeRSAKey(t, saKey)

	port := FreePort(t)
	k.Server = fmt.Sprintf("https://127.0.0.1:%d", port)
	k.apiserv = k.startProc("kube-apiserver", apiBin,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(port),
		"--tls-cert-file", certFile, "--tls-private-key-file", keyFile,
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--allow-privileged=true",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--cert-dir", filepath.Join(dir, "certs"),
	)
	if err := k.waitReady(ctx); err != nil {
		t.Fatalf("StartKube: kube-apiserver: %v\nlog:\n%s", err, tail(k.apiserv.log, 16<<10))
	}

	k.Kubeconfig = filepath.Join(dir, "kubeconfig")
	WriteKubeconfig(t, k.Kubeconfig, k.Server, k.Token, k.CAFile)
	rc, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		t.Fatalf("StartKube: %v", err)
	}
	if k.Client, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatalf("StartKube: %v", err)
	}
	k.defaultServiceAccount(ctx, metav1.NamespaceDefault)
	t.Logf("kubernetes API ready in %v at %s (kubeconfig %s)", time.Since(start).Round(time.Millisecond), k.Server, k.Kubeconfig)
	return k
}

// WriteKubeconfig writes a kubeconfig for server with a bearer token and
// the CA in caFile ("" skips verification: for a server that does not
// exist).
func WriteKubeconfig(t testing.TB, path, server, token, caFile string) {
	t.Helper()
	tlsLine := "insecure-skip-tls-verify: true"
	if caFile != "" {
		tlsLine = "certificate-authority: " + caFile
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context:
    cluster: test
    user: admin
current-context: test
`, server, tlsLine, token)
	writeFile(t, path, cfg, 0o600)
}

// NewNamespace creates a namespace and its default ServiceAccount (which
// the ServiceAccount admission plugin requires of every pod).
func (k *Kube) NewNamespace(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	k.defaultServiceAccount(ctx, name)
}

func (k *Kube) defaultServiceAccount(ctx context.Context, namespace string) {
	k.t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: namespace}}
	_, err := k.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		k.t.Fatalf("create the default ServiceAccount of %s: %v", namespace, err)
	}
}

// Kubectl runs kubectl (built with `scripts/tools.sh kubectl`) with the
// admin kubeconfig and returns its combined output and error.
func (k *Kube) Kubectl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := ToolBinary(t, "kubectl")
	cmd := exec.Command(bin, append([]string{"--kubeconfig", k.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.Kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// APIServerLog is the path of kube-apiserver's log.
func (k *Kube) APIServerLog() string { return k.apiserv.log }

func (k *Kube) startProc(name, bin string, args ...string) *kubeProc {
	k.t.Helper()
	p := &kubeProc{name: name, log: filepath.Join(k.dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		k.t.Fatalf("StartKube: %v", err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = k.dir
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		k.t.Fatalf("StartKube: start %s: %v", bin, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	dumpOnFailure(k.t, name, p.log)
	return p
}

// waitReady polls /readyz with the admin token until it answers 200.
func (k *Kube) waitReady(ctx context.Context) error {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(k.CAFile)
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	defer client.CloseIdleConnections()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, k.Server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+k.Token)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("/readyz not 200 in time (last: %s)", last)
		case <-k.apiserv.done:
			return fmt.Errorf("exited while waiting for /readyz (last: %s)", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop stops the API server, then etcd (SIGTERM, SIGKILL after 10 s).
func (k *Kube) stop() {
	for _, p := range []*kubeProc{k.apiserv, k.etcd} {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			k.t.Logf("%s did not stop on SIGTERM within 10 s: killing it", p.name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func randomToken(t testing.TB) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// writeRSAKey writes a fresh RSA key (PKCS#1 PEM), which kube-apiserver
// reads both as the service account signing key and its public half.
func writeRSAKey(t testing.TB, path string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("service account key: %v", err)
	}
	writePEM(t, path, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), 0o600)
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
