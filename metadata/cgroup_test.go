package metadata

import (
	"strings"
	"testing"
)

// IDs as runtimes make them.
const (
	cid1   = "3f2a9c0d5b7e41f8a6c2d9e0b1f4a7c3d8e5f6a0b9c2d1e4f7a8b3c6d9e0f1a2"
	cid2   = "b7c1e0d2f3a4958675a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2"
	kindID = "0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d"
	podU   = "5d3c2b1a-9e8f-4a7b-8c6d-1e2f3a4b5c6d"
	podUS  = "5d3c2b1a_9e8f_4a7b_8c6d_1e2f3a4b5c6d" // systemd's escape of podU
)

func TestParseCgroup(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  Container
	}{
		{
			name:  "v2 host: init",
			lines: []string{"0::/init.scope"},
		},
		{
			name:  "v2 host: user session",
			lines: []string{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-org.gnome.Terminal-4211.scope"},
		},
		{
			name:  "v2 host: system service",
			lines: []string{"0::/system.slice/nginx.service"},
		},
		{
			name:  "v2 host: docker daemon itself",
			lines: []string{"0::/system.slice/docker.service"},
		},
		{
			name: "v1 host with a 32-hex cgroup that is no container",
			lines: []string{
				"9:name=systemd:/",
				"4:memory:/process_api/7228e967f0efc98a7aaec6cf7cbce2c8",
				"1:cpu:/",
				"0::/",
			},
		},
		{
			name:  "v2 docker, systemd driver",
			lines: []string{"0::/system.slice/docker-" + cid1 + ".scope"},
			want:  Container{ID: cid1},
		},
		{
			name:  "v2 docker, cgroupfs driver",
			lines: []string{"0::/docker/" + cid1},
			want:  Container{ID: cid1},
		},
		{
			name: "v1 docker, cgroupfs driver",
			lines: []string{
				"12:pids:/docker/" + cid1,
				"11:memory:/docker/" + cid1,
				"4:cpu,cpuacct:/docker/" + cid1,
				"1:name=systemd:/docker/" + cid1,
				"0::/system.slice/containerd.service",
			},
			want: Container{ID: cid1},
		},
		{
			name: "v1 docker, systemd driver, hybrid",
			lines: []string{
				"5:devices:/system.slice/docker-" + cid1 + ".scope",
				"1:name=systemd:/system.slice/docker-" + cid1 + ".scope",
				"0::/system.slice/docker-" + cid1 + ".scope",
			},
			want: Container{ID: cid1},
		},
		{
			name:  "v2 containerd, systemd driver, besteffort",
			lines: []string{"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUS + ".slice/cri-containerd-" + cid1 + ".scope"},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name:  "v2 containerd, systemd driver, burstable",
			lines: []string{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUS + ".slice/cri-containerd-" + cid1 + ".scope"},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name:  "v2 containerd, systemd driver, guaranteed",
			lines: []string{"0::/kubepods.slice/kubepods-pod" + podUS + ".slice/cri-containerd-" + cid1 + ".scope"},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name:  "v2 cri-o, systemd driver",
			lines: []string{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUS + ".slice/crio-" + cid1 + ".scope"},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name:  "v2 cri-o conmon is not the container",
			lines: []string{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUS + ".slice/crio-conmon-" + cid1 + ".scope"},
			want:  Container{PodUID: podU},
		},
		{
			name:  "v2 cri-o container with a nested init cgroup",
			lines: []string{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUS + ".slice/crio-" + cid1 + ".scope/container"},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name: "v1 cri-o, systemd driver",
			lines: []string{
				"11:memory:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUS + ".slice/crio-" + cid1 + ".scope",
				"1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUS + ".slice/crio-" + cid1 + ".scope",
			},
			want: Container{ID: cid1, PodUID: podU},
		},
		{
			name:  "v2 cgroupfs driver, burstable",
			lines: []string{"0::/kubepods/burstable/pod" + podU + "/" + cid1},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name:  "v2 cgroupfs driver, guaranteed",
			lines: []string{"0::/kubepods/pod" + podU + "/" + cid1},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name: "v1 cgroupfs driver, besteffort",
			lines: []string{
				"10:pids:/kubepods/besteffort/pod" + podU + "/" + cid1,
				"4:memory:/kubepods/besteffort/pod" + podU + "/" + cid1,
				"1:name=systemd:/kubepods/besteffort/pod" + podU + "/" + cid1,
			},
			want: Container{ID: cid1, PodUID: podU},
		},
		{
			name:  "cgroupfs driver: a runtime ID that is not hex",
			lines: []string{"0::/kubepods/besteffort/pod" + podU + "/web-0_sidecar"},
			want:  Container{ID: "web-0_sidecar", PodUID: podU},
		},
		{
			name:  "cgroupfs driver: the pod itself",
			lines: []string{"0::/kubepods/besteffort/pod" + podU},
			want:  Container{PodUID: podU},
		},
		{
			name:  "static pod: a config hash for UID",
			lines: []string{"0::/kubepods/burstable/pod0f1e2d3c4b5a69788796a5b4c3d2e1f0/" + cid1},
			want:  Container{ID: cid1, PodUID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0"},
		},
		{
			name:  "unexpanded slice:runtime:id form",
			lines: []string{"0::/system.slice/containerd.service/kubepods-burstable-pod" + podUS + ".slice:cri-containerd:" + cid1},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name:  "v2 podman, systemd manager",
			lines: []string{"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid1 + ".scope"},
			want:  Container{ID: cid1},
		},
		{
			name:  "v2 podman, container cgroup namespace child",
			lines: []string{"0::/machine.slice/libpod-" + cid1 + ".scope/container"},
			want:  Container{ID: cid1},
		},
		{
			name:  "podman conmon is not the container",
			lines: []string{"0::/machine.slice/libpod-conmon-" + cid1 + ".scope"},
		},
		{
			name:  "v1 podman, cgroupfs manager",
			lines: []string{"4:memory:/libpod_parent/libpod-" + cid1, "0::/"},
			want:  Container{ID: cid1},
		},
		{
			name:  "kind: a pod inside a node container, innermost wins",
			lines: []string{"0::/system.slice/docker-" + kindID + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + podUS + ".slice/cri-containerd-" + cid1 + ".scope"},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name:  "kind: the node's own systemd",
			lines: []string{"0::/system.slice/docker-" + kindID + ".scope/init.scope"},
			want:  Container{ID: kindID},
		},
		{
			name:  "docker in docker",
			lines: []string{"0::/docker/" + kindID + "/docker/" + cid2},
			want:  Container{ID: cid2},
		},
		{
			name:  "cgroup namespace of a containerised agent",
			lines: []string{"0::/../../kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUS + ".slice/cri-containerd-" + cid1 + ".scope"},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name: "hybrid: v2 line wins over a disagreeing v1 line",
			lines: []string{
				"1:name=systemd:/docker/" + cid2,
				"0::/kubepods/besteffort/pod" + podU + "/" + cid1,
			},
			want: Container{ID: cid1, PodUID: podU},
		},
		{
			name: "hybrid: a named v1 hierarchy carries the container",
			lines: []string{
				"10:name=periscope_test:/kubepods/besteffort/pod" + podU + "/" + cid1,
				"9:name=systemd:/",
				"4:memory:/process_api/7228e967f0efc98a7aaec6cf7cbce2c8",
				"0::/",
			},
			want: Container{ID: cid1, PodUID: podU},
		},
		{
			name: "a container beats a bare pod",
			lines: []string{
				"0::/kubepods/besteffort/pod" + podU,
				"3:cpu:/docker/" + cid2,
			},
			want: Container{ID: cid2},
		},
		{
			name:  "uppercase pod UID is normalised",
			lines: []string{"0::/kubepods/besteffort/pod" + strings.ToUpper(podU) + "/" + cid1},
			want:  Container{ID: cid1, PodUID: podU},
		},
		{
			name:  "not a pod: pod-prefixed name of the wrong shape",
			lines: []string{"0::/system.slice/podman.service", "3:cpu:/kubepods/besteffort/podcast/" + "x"},
		},
		{
			name:  "a scope with a non-runtime prefix",
			lines: []string{"0::/system.slice/session-" + cid1 + ".scope"},
		},
		{
			name:  "malformed lines are skipped",
			lines: []string{"garbage", "1:cpu", "", "0::/docker/" + cid1},
			want:  Container{ID: cid1},
		},
		{
			name:  "empty file",
			lines: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCgroup(strings.NewReader(strings.Join(tc.lines, "\n") + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ParseCgroup() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseCgroupLongLine(t *testing.T) {
	// A line longer than the scanner's initial buffer still parses.
	deep := "0::/" + strings.Repeat("a/", 3000) + "docker/" + cid1
	got, err := ParseCgroup(strings.NewReader(deep + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != cid1 {
		t.Errorf("ID %q", got.ID)
	}
}
