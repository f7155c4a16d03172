package agent

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPeerAddrs(t *testing.T) {
	pod := func(ip string, phase corev1.PodPhase, deleting bool) corev1.Pod {
		p := corev1.Pod{Status: corev1.PodStatus{PodIP: ip, Phase: phase}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{}
		}
		return p
	}
	pods := []corev1.Pod{
		pod("10.0.0.1", corev1.PodRunning, false),
		pod("10.0.0.2", corev1.PodRunning, false), // this agent
		pod("10.0.0.3", corev1.PodPending, false),
		pod("10.0.0.4", corev1.PodRunning, true),
		pod("", corev1.PodRunning, false),
		pod("fd00::5", corev1.PodRunning, false),
	}
	got := peerAddrs(pods, "7071", []netip.Addr{netip.MustParseAddr("10.0.0.2")})
	if want := []string{"10.0.0.1:7071", "[fd00::5]:7071"}; !reflect.DeepEqual(got, want) {
		t.Errorf("peers %v, want %v", got, want)
	}
}
