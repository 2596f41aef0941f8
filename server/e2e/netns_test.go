//go:build linux

package e2e

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer/nft/netnstest"
)

// The namespace helpers live in bouncer/nft/netnstest, shared with the other kernel tests.
type netNS = netnstest.NS

func requireRoot(tb testing.TB)                { netnstest.RequireRoot(tb) }
func run(tb testing.TB, args ...string) string { return netnstest.Run(tb, args...) }
func newNS(tb testing.TB) *netNS               { return netnstest.New(tb) }

// host is a namespace a bouncer protects; its addresses are 192.0.2.N and 2001:db8::N.
type host struct {
	*netNS
	v4, v6 string
}

// network is a client namespace joined to each host by its own veth pair. Client sources
// come from 198.51.100.0/24, 203.0.113.0/24 and 2001:db8:1000::/36 (documentation
// ranges), routed on the links.
type network struct {
	cli   *netNS
	hosts []*host
}

func newNetwork(tb testing.TB, hosts int) *network {
	tb.Helper()
	n := &network{cli: newNS(tb)}
	for i := range hosts {
		h := &host{netNS: newNS(tb), v4: fmt.Sprintf("192.0.2.%d", i+1), v6: fmt.Sprintf("2001:db8::%d", i+1)}
		vc := fmt.Sprintf("vc%d", i)
		run(tb, "ip", "link", "add", "vs", "netns", h.Name, "type", "veth", "peer", "name", vc, "netns", n.cli.Name)
		h.Exec(tb, "ip", "addr", "add", h.v4+"/32", "dev", "vs")
		h.Exec(tb, "ip", "addr", "add", h.v6+"/128", "dev", "vs", "nodad")
		h.Exec(tb, "ip", "link", "set", "vs", "up")
		for _, r := range []string{"198.51.100.0/24", "203.0.113.0/24"} {
			h.Exec(tb, "ip", "route", "add", r, "dev", "vs")
		}
		h.Exec(tb, "ip", "-6", "route", "add", "2001:db8:1000::/36", "dev", "vs")
		n.cli.Exec(tb, "ip", "link", "set", vc, "up")
		n.cli.Exec(tb, "ip", "route", "add", h.v4+"/32", "dev", vc)
		n.cli.Exec(tb, "ip", "-6", "route", "add", h.v6+"/128", "dev", vc)
		n.hosts = append(n.hosts, h)
	}
	return n
}

// addSources gives the client source addresses, on every link so each host can
// resolve them (IPv6 neighbour discovery answers only on the owning interface).
func (n *network) addSources(tb testing.TB, addrs ...string) {
	tb.Helper()
	for _, a := range addrs {
		for i := range n.hosts {
			if strings.Contains(a, ":") {
				n.cli.Exec(tb, "ip", "-6", "addr", "add", a+"/128", "dev", fmt.Sprintf("vc%d", i), "nodad")
			} else {
				n.cli.Exec(tb, "ip", "addr", "add", a+"/32", "dev", fmt.Sprintf("vc%d", i))
			}
		}
	}
}

// listen opens TCP listeners on h for ports (v4 and v6), closed at cleanup.
func (h *host) listen(tb testing.TB, ports ...int) {
	tb.Helper()
	h.Do(tb, func() {
		for _, port := range ports {
			for _, addr := range []string{h.v4, h.v6} {
				l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
				require.NoError(tb, err)
				tb.Cleanup(func() { l.Close() })
			}
		}
	})
}

// connect dials h from src and reports whether the handshake completed (the kernel
// completes it into the backlog; nobody needs to Accept). A dropped SYN times out.
func (n *network) connect(tb testing.TB, h *host, src string, port int, timeout time.Duration) bool {
	tb.Helper()
	dst := h.v4
	if strings.Contains(src, ":") {
		dst = h.v6
	}
	var err error
	n.cli.Do(tb, func() {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		var c net.Conn
		c, err = d.Dial("tcp", net.JoinHostPort(dst, strconv.Itoa(port)))
		if err == nil {
			c.Close()
		}
	})
	return err == nil
}

// eventually polls cond every 10 ms until it holds; it fails tb after d.
func eventually(tb testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	deadline := time.After(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			tb.Fatalf(format, args...)
		case <-tick.C:
		}
	}
}
