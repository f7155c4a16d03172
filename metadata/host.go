package metadata

import (
	"context"
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

// osDescription is the distribution and its version, then the kernel:
// "debian 12 (Linux 6.18.0)".
func osDescription(ctx context.Context) string {
	platform, _, version, _ := host.PlatformInformationWithContext(ctx)
	kernel, _ := host.KernelVersionWithContext(ctx)
	d := strings.TrimSpace(platform + " " + version)
	if kernel != "" {
		k := "Linux " + kernel
		if d == "" {
			return k
		}
		d += " (" + k + ")"
	}
	return d
}
