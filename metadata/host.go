package metadata

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/shirou/gopsutil/v4/host"
	"go.opentelemetry.io/otel/attribute"
)

// HostAttributes returns the resource attributes of this host beside
// host.name (which the resolver takes from os.Hostname): host.id,
// host.arch, os.type and os.description, from gopsutil's host package,
// which honours HOST_PROC, HOST_SYS and HOST_ETC (an agent in a container
// with the node's /etc mounted elsewhere). host.id is gopsutil's HostID:
// the SMBIOS product UUID when it can be read, else /etc/machine-id, else
// the boot ID. An attribute that cannot be read is left out.
func HostAttributes(ctx context.Context) []attribute.KeyValue {
	var out []attribute.KeyValue
	if id, err := host.HostIDWithContext(ctx); err == nil && id != "" {
		out = append(out, attribute.String("host.id", id))
	}
	if arch, err := host.KernelArch(); err == nil && arch != "" {
		out = append(out, attribute.String("host.arch", semconvArch(arch)))
	}
	out = append(out, attribute.String("os.type", runtime.GOOS))
	if d := osDescription(ctx); d != "" {
		out = append(out, attribute.String("os.description", d))
	}
	return out
}

// semconvArch maps uname -m to the host.arch values of the semantic
// conventions; others are kept as they are.
func semconvArch(machine string) string {
	switch machine {
	case "x86_64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "i386", "i486", "i586", "i686":
		return "x86"
	case "ppc64", "ppc64le":
		return "ppc64"
	case "ppc", "ppcle":
		return "ppc32"
	case "s390x":
		return "s390x"
	}
	if strings.HasPrefix(machine, "armv") {
		return "arm32"
	}
	return machine
}

// osDescription is the distribution's PRETTY_NAME, then the kernel:
// "Debian GNU/Linux 12 (bookworm) (Linux 6.18.0)". The distribution comes
// from os-release, not from gopsutil's PlatformInformation, which runs
// lsb_release where /etc/lsb-release is missing (Debian: a python program,
// 250 ms at every start).
func osDescription(ctx context.Context) string {
	d := prettyName()
	if kernel, err := host.KernelVersionWithContext(ctx); err == nil && kernel != "" {
		k := "Linux " + kernel
		if d == "" {
			return k
		}
		d += " (" + k + ")"
	}
	return d
}

// prettyName is PRETTY_NAME of os-release ($HOST_ETC/os-release, as
// gopsutil reads /etc, else /usr/lib/os-release); "" when there is none.
func prettyName() string {
	etc := os.Getenv("HOST_ETC")
	if etc == "" {
		etc = "/etc"
	}
	for _, path := range []string{filepath.Join(etc, "os-release"), "/usr/lib/os-release"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		return parseOSRelease(string(b))
	}
	return ""
}

var osReleaseUnescape = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`, "\\`", "`")

// parseOSRelease returns the PRETTY_NAME of an os-release file, unquoted.
func parseOSRelease(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME=")
		if !ok {
			continue
		}
		// Shell-style quoting, as os-release(5) has it: quotes around,
		// backslash before " \ $ and `.
		v = strings.Trim(v, `"'`)
		return osReleaseUnescape.Replace(v)
	}
	return ""
}
