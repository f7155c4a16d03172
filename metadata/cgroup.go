package metadata

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Container is what a process's cgroups tell about the container it runs
// in. The zero value means a host process (or a layout not recognised).
type Container struct {
	// ID is the container runtime's ID of the container (64 hex digits
	// for docker, containerd, cri-o and podman).
	ID string
	// PodUID is the Kubernetes pod UID, dash-separated, when the cgroup
	// path names a pod.
	PodUID string
}

// maxCgroupBytes bounds what is read of /proc/PID/cgroup.
const maxCgroupBytes = 64 << 10

// runtimeScopes are the prefixes container runtimes give the cgroup (a
// systemd scope, or a plain directory for podman's cgroupfs manager) of a
// container: the ID follows the prefix.
var runtimeScopes = []string{"docker-", "cri-containerd-", "crio-", "libpod-"}

// ParseCgroup reads a /proc/PID/cgroup file (cgroup v1 lines
// "N:controllers:/path", the v2 line "0::/path", or both on a hybrid host)
// and returns the container the process runs in.
//
// Each path is read from its innermost component outwards, so that a
// container nested in another (a pod inside a kind node, docker in docker)
// is named by the inner one. When several lines name a container, the
// unified (v2) hierarchy wins, then the first v1 line.
func ParseCgroup(r io.Reader) (Container, error) {
	var best Container
	bestRank := 0
	sc := bufio.NewScanner(io.LimitReader(r, maxCgroupBytes))
	sc.Buffer(make([]byte, 0, 4096), maxCgroupBytes)
	for sc.Scan() {
		hier, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		c := containerFromPath(path)
		rank := 0
		switch {
		case c.ID != "":
			rank = 2
		case c.PodUID != "":
			rank = 1
		}
		if rank == 0 {
			continue
		}
		unified := hier == "0" && controllers == ""
		if rank > bestRank || (rank == bestRank && unified) {
			best, bestRank = c, rank
		}
	}
	if err := sc.Err(); err != nil {
		return Container{}, fmt.Errorf("read cgroups: %w", err)
	}
	return best, nil
}

// containerFromPath returns the innermost container and pod named by a
// cgroup path.
func containerFromPath(path string) Container {
	path = strings.TrimSuffix(path, " (deleted)")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var c Container
	for i := len(parts) - 1; i >= 0; i-- {
		part := parts[i]
		if c.ID == "" {
			parentIsPod := i > 0 && cgroupfsPod(parts[:i])
			if id := containerFromComponent(part, parentIsPod); id != "" {
				c.ID = id
			}
		}
		if uid := podFromComponent(part); uid != "" {
			c.PodUID = uid
			break // a container outside the innermost pod is not this one
		}
	}
	if c.ID == "" && c.PodUID == "" {
		return Container{}
	}
	return c
}

// containerFromComponent returns the container ID a single path component
// names, or "". parentIsPod says that the component sits directly in a
// cgroupfs pod directory (kubepods/<qos>/pod<uid>/<id>), where every
// directory is a container whatever its name.
func containerFromComponent(part string, parentIsPod bool) string {
	// kubelet with the systemd driver on some runtimes leaves the
	// "slice:prefix:name" form unexpanded:
	// kubepods-burstable-pod<uid>.slice:cri-containerd:<id>.
	if slice, rest, ok := strings.Cut(part, ":"); ok && strings.HasSuffix(slice, ".slice") {
		runtime, id, ok := strings.Cut(rest, ":")
		if ok && !strings.HasSuffix(runtime, "conmon") && validContainerID(id) {
			return id
		}
		return ""
	}
	name, scope := strings.CutSuffix(part, ".scope")
	for _, prefix := range runtimeScopes {
		id, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		// crio-conmon-<id>.scope and libpod-conmon-<id>.scope hold the
		// runtime's monitor, not the container.
		if strings.HasPrefix(id, "conmon-") {
			return ""
		}
		if (scope || prefix == "libpod-") && validContainerID(id) {
			return id
		}
	}
	if scope {
		return ""
	}
	if isHex(part, 64) {
		return part // /docker/<id>, /kubepods/.../<id>, /ecs/<task>/<id>
	}
	if parentIsPod && validContainerID(part) {
		return part
	}
	return ""
}

// cgroupfsPod reports whether the last of parts is a pod directory of the
// cgroupfs layout: kubepods[/<qos>]/pod<uid>.
func cgroupfsPod(parts []string) bool {
	n := len(parts)
	if n < 2 {
		return false
	}
	uid, ok := strings.CutPrefix(parts[n-1], "pod")
	if !ok || !validPodUID(uid) {
		return false
	}
	switch {
	case parts[n-2] == "kubepods":
		return true // guaranteed QoS
	case n >= 3 && parts[n-3] == "kubepods":
		switch parts[n-2] {
		case "besteffort", "burstable", "guaranteed":
			return true
		}
	}
	return false
}

// podFromComponent returns the pod UID a path component names: pod<uid>
// (cgroupfs) or kubepods[-<qos>]-pod<uid>.slice (systemd, with the UID's
// dashes escaped as underscores). "" when it names none.
func podFromComponent(part string) string {
	part, _, _ = strings.Cut(part, ":") // <slice>:<runtime>:<id>
	if uid, ok := strings.CutPrefix(part, "pod"); ok {
		if validPodUID(uid) {
			return normalizePodUID(uid)
		}
		return ""
	}
	name, ok := strings.CutSuffix(part, ".slice")
	if !ok {
		return ""
	}
	i := strings.LastIndex(name, "-pod")
	if i < 0 || !strings.Contains(name[:i], "kubepods") {
		return ""
	}
	if uid := name[i+len("-pod"):]; validPodUID(uid) {
		return normalizePodUID(uid)
	}
	return ""
}

// validPodUID accepts a pod UID: a UUID (with '-' or '_' separators), or
// the 32 hex digits of a static pod's config hash.
func validPodUID(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '-' || c == '_':
		case isHexDigit(c):
			digits++
		default:
			return false
		}
	}
	return digits == 32 && len(s) <= 36
}

func normalizePodUID(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", "-"))
}

// validContainerID accepts the IDs runtimes give containers: short runs of
// letters, digits, '_', '.' and '-'.
func validContainerID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isHexDigit(c) || c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
