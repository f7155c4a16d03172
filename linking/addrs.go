package linking

import (
	"net"
	"net/netip"
)

// InterfaceAddresses returns the addresses of this network namespace's
// interfaces, loopback excluded: what an agent serves outside Kubernetes.
func InterfaceAddresses() []netip.Addr {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ia := range ifaddrs {
		pfx, err := netip.ParsePrefix(ia.String())
		if err != nil {
			continue
		}
		if a := pfx.Addr().Unmap(); !a.IsLoopback() && !a.IsLinkLocalUnicast() {
			out = append(out, a)
		}
	}
	if len(out) > MaxAddresses {
		out = out[:MaxAddresses]
	}
	return out
}
