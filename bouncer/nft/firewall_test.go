//go:build linux

package nft

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"

	"github.com/muninn/muninn/bouncer"
)

const blockedTimeout = 300 * time.Millisecond

type testBundle struct {
	p   *pair
	fw  *Firewall
	ctx context.Context
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	requireRoot(t)
	p := newPair(t)
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fw := New(Options{NetNSFd: p.srv.FD, Priority: DefaultPriority, Logger: log})
	return &testBundle{p: p, fw: fw, ctx: t.Context()}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func mustState(t testing.TB, renders ...bouncer.Render) *bouncer.State {
	t.Helper()
	st := &bouncer.State{}
	for _, r := range renders {
		rs, err := bouncer.NewRulesetState(r)
		require.NoError(t, err)
		st = st.With(rs)
	}
	return st
}

func webRender() bouncer.Render {
	return bouncer.Render{
		Ruleset: "web", Version: 1, Hook: "input",
		Scope:   bouncer.Scope{Protocol: "tcp", DPorts: []uint16{80, 443}},
		Default: "allow",
		Rules: []bouncer.RenderRule{
			{ID: 1, Action: "allow", V4: []string{"198.51.100.10/32"}, V6: []string{"2001:db8:1000::10/128"}},
			{ID: 2, Action: "block", V4: []string{"198.51.100.0/24", "203.0.113.7/32"}, V6: []string{"2001:db8:1000::/48"}},
		},
	}
}

func TestEnforcement(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.p.listen(t, 80, 443, 8080)
	blocked := []string{"198.51.100.1", "198.51.100.77", "198.51.100.254", "203.0.113.7", "2001:db8:1000::1", "2001:db8:1000:ffff::5"}
	allowed := []string{"198.51.100.10", "203.0.113.8", "2001:db8:1000::10", "2001:db8:1001::1"}
	for _, a := range append(append([]string{}, blocked...), allowed...) {
		b.p.addClientAddr(t, a)
	}
	for _, a := range append(append([]string{}, blocked...), allowed...) {
		require.True(t, b.p.connect(t, a, 80, 2*time.Second), "before apply %s", a)
	}
	require.NoError(t, b.fw.Apply(b.ctx, mustState(t, webRender())))
	require.NoError(t, b.fw.Check(b.ctx))

	for _, a := range blocked {
		require.False(t, b.p.connect(t, a, 80, blockedTimeout), "blocked source %s reached port 80", a)
		require.False(t, b.p.connect(t, a, 443, blockedTimeout), "blocked source %s reached port 443", a)
		require.True(t, b.p.connect(t, a, 8080, 2*time.Second), "port 8080 is outside the scope, %s", a)
	}
	for _, a := range allowed {
		require.True(t, b.p.connect(t, a, 80, 2*time.Second), "allowed source %s", a)
	}

	counters, err := b.fw.Counters(b.ctx)
	require.NoError(t, err)
	var blockPkts uint64
	for _, c := range counters {
		if c.Ruleset == "web" && c.RuleID == 2 {
			blockPkts = c.Packets
		}
	}
	require.NotZero(t, blockPkts, "rule 2 counted its drops: %+v", counters)

	// Delta: unblock 203.0.113.7, block 203.0.113.8, shrink the /24 to its lower half.
	st := mustState(t, webRender())
	rs := st.Ruleset("web")
	next, d, err := rs.ApplyDelta(bouncer.Render{Ruleset: "web", Delta: true, BaseVersion: 1, Version: 2, Rules: []bouncer.RenderRule{
		{ID: 2, AddV4: []string{"203.0.113.8/32", "198.51.100.0/25"}, DelV4: []string{"203.0.113.7/32", "198.51.100.0/24"}},
	}})
	require.NoError(t, err)
	require.NoError(t, b.fw.ApplyDelta(b.ctx, st.With(next), []bouncer.RulesetDelta{d}))
	require.NoError(t, b.fw.Check(b.ctx))
	require.True(t, b.p.connect(t, "203.0.113.7", 80, 2*time.Second))
	require.True(t, b.p.connect(t, "198.51.100.254", 80, 2*time.Second))
	require.False(t, b.p.connect(t, "203.0.113.8", 80, blockedTimeout))
	require.False(t, b.p.connect(t, "198.51.100.77", 80, blockedTimeout))

	// Someone flushes the ruleset: Check reports drift, a re-apply restores.
	b.p.srv.Exec(t, "nft", "flush", "ruleset")
	require.ErrorIs(t, b.fw.Check(b.ctx), bouncer.ErrDrift)
	require.NoError(t, b.fw.Apply(b.ctx, st.With(next)))
	require.NoError(t, b.fw.Check(b.ctx))
	require.False(t, b.p.connect(t, "203.0.113.8", 80, blockedTimeout))

	require.NoError(t, b.fw.Remove(b.ctx))
	require.True(t, b.p.connect(t, "203.0.113.8", 80, 2*time.Second))
	require.NoError(t, b.fw.Remove(b.ctx), "removing a missing table")
}

func TestDriftOnSmallSetFlush(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.fw.Apply(b.ctx, mustState(t, webRender())))
	require.NoError(t, b.fw.Check(b.ctx))
	b.p.srv.Exec(t, "nft", "flush", "set", "inet", "muninn", "rs_web_r2_v4i")
	require.ErrorIs(t, b.fw.Check(b.ctx), bouncer.ErrDrift)
}

func TestHoneypot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.p.listen(t, 80, 2323)
	r := webRender()
	r.Honeypot = bouncer.Honeypot{TCP: []uint16{2323}}
	for _, a := range []string{"203.0.113.50", "2001:db8:1000::50"} {
		b.p.addClientAddr(t, a)
	}
	require.NoError(t, b.fw.Apply(b.ctx, mustState(t, r)))
	require.False(t, b.p.connect(t, "203.0.113.50", 2323, blockedTimeout))
	require.False(t, b.p.connect(t, "2001:db8:1000::50", 2323, blockedTimeout))
	hits, err := b.fw.HoneypotSources(b.ctx)
	require.NoError(t, err)
	got := map[string]bouncer.HoneypotHit{}
	for _, h := range hits {
		got[h.IP] = h
	}
	require.Len(t, got, 2, "%+v", hits)
	require.Equal(t, uint16(2323), got["203.0.113.50"].Port)
	require.Equal(t, "tcp", got["203.0.113.50"].Protocol)
	require.Equal(t, "web", got["2001:db8:1000::50"].Ruleset)
	require.WithinDuration(t, time.Now(), got["203.0.113.50"].SeenAt, time.Minute)
}

// TestLargeSetExact loads a few thousand elements per family and reads the sets back
// with nft: the kernel holds exactly the intended addresses.
func TestLargeSetExact(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var v4, v6 []string
	var want4h, want4i, want6h, want6i netipx.IPSetBuilder
	for i := range 3000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
		v4 = append(v4, a.String()+"/32")
		want4h.Add(a)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(i >> 6), byte(i << 2), 0}), 24)
		v4 = append(v4, p.String())
		want4i.AddPrefix(p.Masked())
		a6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, byte(i >> 8), byte(i), 15: 1})
		v6 = append(v6, a6.String()+"/128")
		want6h.Add(a6)
		p6 := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, byte(i >> 8), byte(i)}), 64)
		v6 = append(v6, p6.String())
		want6i.AddPrefix(p6)
	}
	// Overlaps the server would never send, merged before they reach the kernel.
	v4 = append(v4, "100.0.0.0/16", "100.0.1.0/24")
	want4i.AddPrefix(netip.MustParsePrefix("100.0.0.0/16"))
	r := bouncer.Render{Ruleset: "big", Version: 1, Hook: "input", Scope: bouncer.Scope{Protocol: "tcp", DPorts: []uint16{22}}, Default: "allow",
		Rules: []bouncer.RenderRule{{ID: 7, Action: "block", V4: v4, V6: v6}}}
	require.NoError(t, b.fw.Apply(b.ctx, mustState(t, r)))
	for _, c := range []struct {
		set  string
		want *netipx.IPSetBuilder
	}{{"rs_big_r7_v4h", &want4h}, {"rs_big_r7_v4i", &want4i}, {"rs_big_r7_v6h", &want6h}, {"rs_big_r7_v6i", &want6i}} {
		want, err := c.want.IPSet()
		require.NoError(t, err)
		got := kernelSet(t, b.p.srv, "muninn", c.set)
		require.True(t, want.Equal(got), "set %s differs: want %d ranges, got %d", c.set, len(want.Ranges()), len(got.Ranges()))
	}
}

// TestDryRunScriptLoads checks that the dry-run script is accepted by nft and builds
// the same sets as the netlink path.
func TestDryRunScriptLoads(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this: make deps installs nft")
		}
		t.Skip("needs nft")
	}
	ns := newNS(t)
	r := webRender()
	r.Honeypot = bouncer.Honeypot{TCP: []uint16{23}, UDP: []uint16{161}}
	r.Scope.IIFNames = []string{"eth0"}
	r.Rules = append(r.Rules, bouncer.RenderRule{ID: 3, Action: "throttle", Rate: "10/second", V4: []string{"203.0.113.0/28"}},
		bouncer.RenderRule{ID: 4, Action: "log", V6: []string{"2001:db8:2000::/40"}})
	var sb strings.Builder
	require.NoError(t, bouncer.NewDryRun(&sb, "muninn", DefaultPriority, []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")}).Apply(t.Context(), mustState(t, r)))
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(sb.String())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, sb.String())
	got := kernelSet(t, ns, "muninn", "rs_web_r2_v4i")
	require.Equal(t, "198.51.100.0/24", fmt.Sprint(got.Prefixes()[0]))
}
