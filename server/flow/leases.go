package flow

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/muninn/muninn/server/store"
)

// ParseLeases reads a dnsmasq lease file as of now: one lease a line,
// "EXPIRY MAC ADDRESS NAME CLIENT-ID", where EXPIRY is in Unix seconds (0:
// the lease never expires) and NAME is "*" when the client sent none. A
// "duid ..." line precedes the DHCPv6 leases, whose second field is an IAID,
// not a MAC.
//
// It returns the leases in file order: expired ones (EXPIRY before now)
// are left out; a "*" lease has the Name "" (its MAC still names the host);
// MAC is the canonical colon form of an Ethernet address, "" for DHCPv6
// leases and hardware addresses that are not 6 bytes. Lines that do not
// parse (a bad expiry or address, an address with a zone, a name longer
// than 253 bytes, fewer than four fields) are skipped.
func ParseLeases(b []byte, now time.Time) []store.FlowLease {
	var out []store.FlowLease
	v6 := false // past the duid line: the DHCPv6 leases
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "duid" {
			v6 = true
			continue
		}
		if len(f) < 4 {
			continue
		}
		exp, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || exp < 0 || (exp != 0 && time.Unix(exp, 0).Before(now)) {
			continue
		}
		a, err := netip.ParseAddr(f[2])
		if err != nil || a.Zone() != "" {
			continue
		}
		l := store.FlowLease{Address: a.Unmap(), Name: f[3]}
		if l.Name == "*" {
			l.Name = ""
		}
		if len(l.Name) > 253 {
			continue
		}
		if !v6 && l.Address.Is4() {
			if hw, err := net.ParseMAC(f[1]); err == nil && len(hw) == 6 {
				l.MAC = hw.String()
			}
		}
		out = append(out, l)
	}
	return out
}
