package harness

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NginxOptions configures StartNginx. The zero value is a usable default.
type NginxOptions struct {
	// Exe is the nginx binary; "" means nginx from PATH. A private copy
	// under its own name (CopyExe) lets a test trace exactly its nginx.
	Exe string
	// Workers is worker_processes; 0 means 2.
	Workers int
	// Files are extra files for the docroot, keyed by path relative to it
	// ("a/b.txt"). index.html and 1m.bin (1 MiB) are always there.
	Files map[string][]byte
	// ExtraServerConfig is copied verbatim into the server block (more locations).
	ExtraServerConfig string
	// ExtraHTTPConfig is copied verbatim into the http block.
	ExtraHTTPConfig string
	// HTTP2 offers HTTP/2 on the TLS port (ALPN h2), besides HTTP/1.1.
	HTTP2 bool
}

// Nginx is a running nginx started by StartNginx. It is stopped in t.Cleanup.
type Nginx struct {
	Port       int    // TLS port on 127.0.0.1
	URL        string // "https://127.0.0.1:PORT" (the certificate also names localhost and ::1)
	MasterPID  int
	WorkerPIDs []int
	Exe        string // the nginx binary that runs
	Dir        string // prefix directory: nginx.conf, logs, html/
	DocRoot    string
	ConfFile   string
	ErrorLog   string
	AccessLog  string
	CertFile   string
	KeyFile    string
	CAFile     string // CA that signed CertFile: trust it in clients (curl --cacert)

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
}

// NginxIndex is the body of /index.html (and of /).
const NginxIndex = "<html><body>periscope e2e</body></html>\n"

// NginxBigFileSize is the size of /1m.bin.
const NginxBigFileSize = 1 << 20

// StartNginx starts nginx with a generated configuration in a fresh temporary
// directory: TLS 1.2/1.3 on a free 127.0.0.1 port, keepalive, `worker_processes`
// workers, a docroot with index.html, 1m.bin (1 MiB) and opts.Files, missing files
// answered with 404, and these locations:
//
//	/echo    any method, any body (also chunked, up to 64 MiB), answers 200 "ok\n"
//	         once the whole body was read
//	/status/NNN   answers with status NNN and body "status NNN\n", for NNN in
//	         NginxStatusCodes()
//
// It waits until the port accepts connections and the workers exist, and stops
// nginx in t.Cleanup. Its error log is copied into the test log on failure.
func StartNginx(t testing.TB, opts NginxOptions) *Nginx {
	t.Helper()
	exe := opts.Exe
	if exe == "" {
		exe = LookTool(t, "nginx")
	}
	dir := t.TempDir()
	n := &Nginx{
		Exe:       exe,
		Dir:       dir,
		DocRoot:   filepath.Join(dir, "html"),
		ConfFile:  filepath.Join(dir, "nginx.conf"),
		ErrorLog:  filepath.Join(dir, "error.log"),
		AccessLog: filepath.Join(dir, "access.log"),
		Port:      FreePort(t),
		t:         t,
		done:      make(chan struct{}),
	}
	n.URL = fmt.Sprintf("https://127.0.0.1:%d", n.Port)
	n.CertFile, n.KeyFile, n.CAFile = GenerateCert(t, filepath.Join(dir, "tls"))

	files := map[string][]byte{
		"index.html": []byte(NginxIndex),
		"1m.bin":     bigFile(),
	}
	for k, v := range opts.Files {
		files[k] = v
	}
	for name, body := range files {
		p := filepath.Join(n.DocRoot, filepath.FromSlash(name))
		if !strings.HasPrefix(p, n.DocRoot+string(filepath.Separator)) {
			t.Fatalf("StartNginx: file %q escapes the docroot", name)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("StartNginx: %v", err)
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatalf("StartNginx: %v", err)
		}
	}
	for _, d := range []string{"tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("StartNginx: %v", err)
		}
	}

	workers := opts.Workers
	if workers <= 0 {
		workers = 2
	}
	if err := os.WriteFile(n.ConfFile, []byte(n.config(workers, opts)), 0o644); err != nil {
		t.Fatalf("StartNginx: %v", err)
	}

	// -e: the error log used before the configuration is read (nginx >= 1.19.5).
	n.cmd = exec.Command(exe, "-p", dir+"/", "-c", n.ConfFile, "-e", n.ErrorLog, "-g", "daemon off;")
	n.cmd.Dir = dir
	stdio := filepath.Join(dir, "stdio.log")
	out, err := os.Create(stdio)
	if err != nil {
		t.Fatalf("StartNginx: %v", err)
	}
	n.cmd.Stdout, n.cmd.Stderr = out, out
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	dumpOnFailure(t, "nginx", n.ConfFile, n.ErrorLog, stdio)
	if err := n.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("StartNginx: start %s: %v", exe, err)
	}
	out.Close()
	n.MasterPID = n.cmd.Process.Pid
	go func() {
		_ = n.cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(n.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", n.Port), n.done); err != nil {
		t.Fatalf("StartNginx: %v\nerror log:\n%s\nstdout/stderr:\n%s", err, tail(n.ErrorLog, 4096), tail(stdio, 4096))
	}
	for {
		n.WorkerPIDs = childPIDs(n.MasterPID)
		if len(n.WorkerPIDs) >= workers {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("StartNginx: expected %d workers under master %d, found %v", workers, n.MasterPID, n.WorkerPIDs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sort.Ints(n.WorkerPIDs)
	t.Logf("nginx: %s master %d workers %v", n.URL, n.MasterPID, n.WorkerPIDs)
	return n
}

// PIDs returns the master and the worker PIDs.
func (n *Nginx) PIDs() []int {
	return append([]int{n.MasterPID}, n.WorkerPIDs...)
}

// TLSConfig returns a client TLS configuration that trusts the server certificate.
func (n *Nginx) TLSConfig() *tls.Config {
	return TLSClientConfig(n.t, n.CAFile)
}

// Client returns an HTTP client (HTTP/1.1, keepalive) that trusts the server.
func (n *Nginx) Client() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   n.TLSConfig(),
			ForceAttemptHTTP2: false,
			MaxIdleConns:      16,
			IdleConnTimeout:   30 * time.Second,
		},
	}
}

// Stop stops nginx (SIGTERM, then SIGKILL after 10 s) and waits for the master and
// its workers to be gone. Called automatically in t.Cleanup; safe to call twice.
func (n *Nginx) Stop() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		n.t.Logf("nginx master %d did not exit 10 s after SIGTERM: killing it and its workers", n.MasterPID)
		for _, w := range childPIDs(n.MasterPID) {
			_ = syscall.Kill(w, syscall.SIGKILL)
		}
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	// The master waits for its workers, but make sure none is left holding the port.
	deadline := time.Now().Add(5 * time.Second)
	for _, w := range n.WorkerPIDs {
		for processAlive(w) && isChildOfNginx(w, n.Exe) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// isChildOfNginx guards against PID reuse: the worker pid still runs nginx.
func isChildOfNginx(pid int, exe string) bool {
	p, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && p == exe
}

func (n *Nginx) config(workers int, opts NginxOptions) string {
	user := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody and could not read t.TempDir() (mode 0700).
		user = "user root root;"
	}
	d := n.Dir
	return fmt.Sprintf(`# generated by periscope test/e2e/harness
%[1]s
worker_processes %[2]d;
pid %[3]s/nginx.pid;
error_log %[4]s info;

events {
    worker_connections 1024;
}

http {
    # request_length covers the request line, headers and the body as read.
    log_format periscope '$remote_addr "$request" $status $body_bytes_sent '
                         'req_len=$request_length conn=$connection conn_req=$connection_requests '
                         'te="$http_transfer_encoding" rt=$request_time $ssl_protocol';
    access_log %[5]s periscope;
    client_body_temp_path %[3]s/tmp/body;
    proxy_temp_path %[3]s/tmp/proxy;
    fastcgi_temp_path %[3]s/tmp/fastcgi;
    uwsgi_temp_path %[3]s/tmp/uwsgi;
    scgi_temp_path %[3]s/tmp/scgi;

    default_type application/octet-stream;
    types {
        text/html html;
        text/plain txt;
        application/json json;
    }
    sendfile off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
%[9]s
    server {
        listen 127.0.0.1:%[6]d ssl%[12]s;
        server_name localhost;

        ssl_certificate %[7]s;
        ssl_certificate_key %[8]s;
        ssl_protocols TLSv1.2 TLSv1.3;

        root %[3]s/html;
        index index.html;

        location / {
            try_files $uri $uri/ =404;
        }

        # /echo accepts any method and any body (chunked too) and answers 200 "ok\n"
        # only after the whole body was read, like an application would. A plain
        # "return" would answer from the rewrite phase and merely discard the body,
        # possibly after the answer; the mirror with mirror_request_body makes nginx
        # read the body (into memory: the buffer is as large as the maximum body) in
        # the precontent phase. The content phase then finds no file (404) or a
        # method the static module refuses (405); both are turned into 200 "ok\n".
        location = /echo {
            client_max_body_size 64m;
            client_body_buffer_size 64m;
            client_body_in_single_buffer on;
            mirror /_mirror_sink;
            mirror_request_body on;
            log_not_found off;
            error_page 404 405 =200 @echo_ok;
        }
        location @echo_ok {
            default_type text/plain;
            return 200 "ok\n";
        }
        location = /_mirror_sink {
            internal;
            client_max_body_size 64m;
            return 204;
        }

%[10]s
%[11]s
    }
}
`, user, workers, d, n.ErrorLog, n.AccessLog, n.Port, n.CertFile, n.KeyFile, opts.ExtraHTTPConfig, statusLocations(), opts.ExtraServerConfig, http2Listen(opts.HTTP2))
}

// http2Listen is the listen parameter that offers HTTP/2 (nginx 1.22 has no
// "http2 on" directive yet).
func http2Listen(on bool) string {
	if on {
		return " http2"
	}
	return ""
}

// NginxStatusCodes returns the codes served under /status/NNN.
func NginxStatusCodes() []int {
	return []int{200, 201, 202, 400, 401, 403, 404, 409, 418, 429, 500, 502, 503, 504}
}

func statusLocations() string {
	var b strings.Builder
	for _, c := range NginxStatusCodes() {
		fmt.Fprintf(&b, "        location = /status/%d { default_type text/plain; return %d \"status %d\\n\"; }\n", c, c, c)
	}
	return b.String()
}

func bigFile() []byte {
	b := make([]byte, NginxBigFileSize)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}
