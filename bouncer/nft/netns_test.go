//go:build linux

package nft

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"

	"github.com/muninn/muninn/bouncer/nft/netnstest"
)

// The namespace helpers live in bouncer/nft/netnstest, shared with the other kernel tests.
type netNS = netnstest.NS

func requireRoot(tb testing.TB)                { netnstest.RequireRoot(tb) }
func run(tb testing.TB, args ...string) string { return netnstest.Run(tb, args...) }
func newNS(tb testing.TB) *netNS               { return netnstest.New(tb) }

// pair is a server and a client namespace joined by a veth pair.
type pair struct {
	srv, cli *netNS
}

const (
	srvV4 = "192.0.2.1"
	srvV6 = "2001:db8::1"
)

func newPair(tb testing.TB) *pair {
	tb.Helper()
	p := &pair{srv: newNS(tb), cli: newNS(tb)}
	run(tb, "ip", "link", "add", "vs", "netns", p.srv.Name, "type", "veth", "peer", "name", "vc", "netns", p.cli.Name)
	p.srv.Exec(tb, "ip", "addr", "add", srvV4+"/24", "dev", "vs")
	p.srv.Exec(tb, "ip", "addr", "add", srvV6+"/64", "dev", "vs", "nodad")
	p.srv.Exec(tb, "ip", "link", "set", "vs", "up")
	p.cli.Exec(tb, "ip", "link", "set", "vc", "up")
	// Client sources live in other documentation ranges: routes on the link.
	for _, r := range []string{"198.51.100.0/24", "203.0.113.0/24"} {
		p.srv.Exec(tb, "ip", "route", "add", r, "dev", "vs")
	}
	p.srv.Exec(tb, "ip", "-6", "route", "add", "2001:db8:1000::/36", "dev", "vs")
	p.cli.Exec(tb, "ip", "route", "add", "192.0.2.0/24", "dev", "vc")
	p.cli.Exec(tb, "ip", "-6", "route", "add", "2001:db8::/64", "dev", "vc")
	return p
}

// addClientAddr adds a source address to the client.
func (p *pair) addClientAddr(tb testing.TB, a string) {
	tb.Helper()
	bits := 32
	args := []string{"ip", "addr", "add"}
	if strings.Contains(a, ":") {
		bits = 128
		args = []string{"ip", "-6", "addr", "add"}
	}
	p.cli.Exec(tb, append(args, fmt.Sprintf("%s/%d", a, bits), "dev", "vc", "nodad")...)
}

// listen opens TCP listeners on the server for ports (v4 and v6).
func (p *pair) listen(tb testing.TB, ports ...int) {
	tb.Helper()
	p.srv.Do(tb, func() {
		for _, port := range ports {
			for _, addr := range []string{srvV4, srvV6} {
				l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
				require.NoError(tb, err)
				tb.Cleanup(func() { l.Close() })
			}
		}
	})
}

// connect dials the server from src; it reports whether the handshake completed.
// The handshake needs no Accept: the kernel completes it into the backlog.
func (p *pair) connect(tb testing.TB, src string, port int, timeout time.Duration) bool {
	tb.Helper()
	dst := srvV4
	if strings.Contains(src, ":") {
		dst = srvV6
	}
	var err error
	p.cli.Do(tb, func() {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		var c net.Conn
		c, err = d.Dial("tcp", net.JoinHostPort(dst, strconv.Itoa(port)))
		if err == nil {
			c.Close()
		}
	})
	return err == nil
}

// kernelSet reads a set of addresses back with nft -j in ns as an IPSet (small or
// test-sized sets only).
func kernelSet(tb testing.TB, ns *netNS, table, set string) *netipx.IPSet {
	tb.Helper()
	s, ok := ns.AddrSets(tb, "set", "inet", table, set)[set]
	require.True(tb, ok, "no set of addresses %s in table %s", set, table)
	return s
}

// eventually polls cond until it holds or the deadline passes (kernel state only).
func eventually(tb testing.TB, d time.Duration, cond func() bool, msg string) {
	tb.Helper()
	deadline := time.After(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			tb.Fatal(msg)
		case <-tick.C:
		}
	}
}
