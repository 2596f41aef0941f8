//go:build linux

package nft

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// In these tests the bouncer's host is the pair's server side (192.0.2.1,
// 2001:db8::1, where the firewall runs) and its muninn server one of the
// client side's addresses.
const (
	muninnV4 = "198.51.100.10"
	muninnV6 = "2001:db8:1000::10"
	// Other hosts in the blocked ranges.
	otherV4 = "198.51.100.20"
	otherV6 = "2001:db8:1000::20"
)

// dialFrom dials dst:port from the namespace ns; it reports whether the
// handshake completed.
func dialFrom(tb testing.TB, ns *netNS, dst string, port int, timeout time.Duration) bool {
	tb.Helper()
	var err error
	ns.Do(tb, func() {
		var c net.Conn
		c, err = (&net.Dialer{Timeout: timeout}).Dial("tcp", net.JoinHostPort(dst, strconv.Itoa(port)))
		if err == nil {
			c.Close()
		}
	})
	return err == nil
}

// listenOn opens TCP listeners in ns on each address and port.
func listenOn(tb testing.TB, ns *netNS, port int, addrs ...string) {
	tb.Helper()
	ns.Do(tb, func() {
		for _, a := range addrs {
			l, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(port)))
			require.NoError(tb, err)
			tb.Cleanup(func() { l.Close() })
		}
	})
}

func setupKeep(t *testing.T) *testBundle {
	t.Helper()
	requireRoot(t)
	p := newPair(t)
	for _, a := range []string{muninnV4, muninnV6, otherV4, otherV6} {
		p.addClientAddr(t, a)
	}
	// The muninn server and another host listen on the client side; the
	// bouncer's host listens on 22.
	listenOn(t, p.cli, 8443, muninnV4, muninnV6, otherV4, otherV6)
	p.listen(t, 22)
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fw := New(Options{NetNSFd: p.srv.FD, Priority: DefaultPriority, Logger: log,
		Server: []netip.Addr{netip.MustParseAddr(muninnV4), netip.MustParseAddr(muninnV6)}})
	return &testBundle{p: p, fw: fw, ctx: t.Context()}
}

// requireKept checks, with the table applied, that the host still reaches
// its server and other hosts in the blocked range (their replies are
// accepted), that the server still reaches the host, and that new
// connections from the other blocked hosts are refused.
func requireKept(t *testing.T, b *testBundle) {
	t.Helper()
	for _, dst := range []string{muninnV4, muninnV6, otherV4, otherV6} {
		require.True(t, dialFrom(t, b.p.srv, dst, 8443, 2*time.Second), "the host reaches %s", dst)
	}
	for _, src := range []string{muninnV4, muninnV6} {
		require.True(t, b.p.connect(t, src, 22, 2*time.Second), "the server %s reaches the host", src)
	}
	for _, src := range []string{otherV4, otherV6} {
		require.False(t, b.p.connect(t, src, 22, blockedTimeout), "blocked source %s reached the host", src)
	}
}

// TestBlockCoveringTheServerKeepsTheHostConnected: `block tag X` where X
// covers the server's address (issue 12).
func TestBlockCoveringTheServerKeepsTheHostConnected(t *testing.T) {
	t.Parallel()
	b := setupKeep(t)
	st := mustState(t, bouncer.Render{
		Ruleset: "edge", Version: 1, Hook: "input", Default: "allow",
		Rules: []bouncer.RenderRule{{ID: 1, Action: "block", Text: "block tag X",
			V4: []string{"198.51.100.0/24"}, V6: []string{"2001:db8:1000::/48"}}},
	})
	require.NoError(t, b.fw.Apply(b.ctx, st))
	require.NoError(t, b.fw.Check(b.ctx))
	requireKept(t, b)

	// The rules that keep it come before the ruleset's, in this order.
	out := b.p.srv.Exec(t, "nft", "list", "chain", "inet", "muninn", "input")
	var rules []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "table") && !strings.HasPrefix(line, "chain") && !strings.HasPrefix(line, "type") && line != "}" {
			rules = append(rules, line)
		}
	}
	require.Equal(t, []string{
		"ct state established,related ct direction reply accept",
		"icmpv6 type 133-136 accept",
		"ip saddr @server_v4 accept",
		"ip6 saddr @server_v6 accept",
		"jump rs_edge",
	}, rules, out)
	require.Equal(t, "198.51.100.10/32", kernelSet(t, b.p.srv, "muninn", bouncer.ServerSetV4).Prefixes()[0].String())
}

// TestDefaultBlockKeepsTheHostConnected: a `default block` without a port
// scope (issue 12).
func TestDefaultBlockKeepsTheHostConnected(t *testing.T) {
	t.Parallel()
	b := setupKeep(t)
	st := mustState(t, bouncer.Render{Ruleset: "lockdown", Version: 1, Hook: "input", Default: "block"})
	require.NoError(t, b.fw.Apply(b.ctx, st))
	require.NoError(t, b.fw.Check(b.ctx))
	requireKept(t, b)
	// Any other source is refused too: the default applies.
	b.p.addClientAddr(t, "203.0.113.9")
	require.False(t, b.p.connect(t, "203.0.113.9", 22, blockedTimeout))
}
