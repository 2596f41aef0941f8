//go:build linux

package e2e

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

const (
	// propagation is how soon a tag must be enforced on a bouncer (DESIGN §8: p50 ≤ 1 s;
	// BenchmarkPropagation measures the distribution).
	propagation = time.Second
	// settle bounds waits that have no target of their own.
	settle = 10 * time.Second
	// dropped is how long a connect waits before it counts as dropped; an allowed one
	// completes in well under a millisecond on a veth.
	dropped = 300 * time.Millisecond
	// webRuleset blocks tag e2e-bad on tcp 80 and 443 only.
	webRuleset = "ruleset web\n  hook input\n  scope tcp dport 80,443\n  block tag e2e-bad\n"
	badTag     = "e2e-bad"
)

// web is one server, one host namespace protected by a bouncer enforcing webRuleset,
// and a client namespace.
type web struct {
	srv *server
	net *network
	h   *host
	b   *runningBouncer
	key string
	dir string
}

func setupWeb(t *testing.T, sources ...string) *web {
	t.Helper()
	requireRoot(t)
	log := testLogger(t)
	w := &web{srv: startServer(t, log), net: newNetwork(t, 1), dir: t.TempDir()}
	w.h = w.net.hosts[0]
	w.h.listen(t, 80, 443, 8080)
	w.net.addSources(t, sources...)
	w.srv.putRuleset(t, webRuleset)
	w.key = w.srv.createBouncer(t, "web1", "web")
	w.b = startBouncer(t, w.h, bouncer.NewClient(w.srv.url, w.key, nil), w.dir, log)
	w.b.waitApplied(t, "web")
	return w
}

// blocked reports whether a connect from src to port on the host is dropped.
func (w *web) blocked(t *testing.T, src string, port int) bool {
	t.Helper()
	return !w.net.connect(t, w.h, src, port, dropped)
}

// waitBlocked waits until connects from src to port 80 are dropped.
func (w *web) waitBlocked(t *testing.T, within time.Duration, src string) {
	t.Helper()
	eventually(t, within, func() bool { return !w.net.connect(t, w.h, src, 80, 100*time.Millisecond) },
		"%s is still allowed to port 80 after %s", src, within)
}

// requireEnforced checks that src is blocked on 80 and 443 but not on 8080 (outside
// the scope) while allowed still connects to 80.
func (w *web) requireEnforced(t *testing.T, src, allowed string) {
	t.Helper()
	require.True(t, w.blocked(t, src, 80), "%s to 80", src)
	require.True(t, w.blocked(t, src, 443), "%s to 443", src)
	require.False(t, w.blocked(t, src, 8080), "%s to 8080 is outside the scope", src)
	require.False(t, w.blocked(t, allowed, 80), "%s to 80 is not tagged", allowed)
}

// TestTagIsEnforced: an override tags an address and the bouncer drops it within a
// second, on the scoped ports only; an ingested CIDR is blocked in full; IPv6 alike.
func TestTagIsEnforced(t *testing.T) {
	t.Parallel()
	const (
		bad4, good4 = "198.51.100.10", "198.51.100.20"
		bad6, good6 = "2001:db8:1000::10", "2001:db8:1000::20"
	)
	cidr4 := []string{"203.0.113.16", "203.0.113.17", "203.0.113.24", "203.0.113.31"}   // 203.0.113.16/28
	cidr6 := []string{"2001:db8:1000::1:0", "2001:db8:1000::1:7", "2001:db8:1000::1:f"} // 2001:db8:1000::1:0/124
	w := setupWeb(t, append(append([]string{bad4, good4, bad6, good6, "203.0.113.32", "2001:db8:1000::1:10"}, cidr4...), cidr6...)...)
	for _, src := range []string{bad4, good4, bad6, good6} {
		require.False(t, w.blocked(t, src, 80), "%s before any tag", src)
	}

	for _, pair := range [][2]string{{bad4, good4}, {bad6, good6}} {
		start := time.Now()
		w.srv.tag(t, pair[0], badTag)
		w.waitBlocked(t, propagation, pair[0])
		t.Logf("%s blocked %s after the override", pair[0], time.Since(start).Round(time.Millisecond))
		w.requireEnforced(t, pair[0], pair[1])
	}

	// Every address of a blocked network, not only its first one.
	w.srv.ingest(t, "203.0.113.16/28", badTag)
	w.srv.ingest(t, "2001:db8:1000::1:0/124", badTag)
	w.waitBlocked(t, settle, cidr4[0])
	w.waitBlocked(t, settle, cidr6[0])
	for _, src := range append(cidr4, cidr6...) {
		require.True(t, w.blocked(t, src, 80), "%s is in a blocked network", src)
		require.False(t, w.blocked(t, src, 8080), "%s to 8080 is outside the scope", src)
	}
	require.False(t, w.blocked(t, "203.0.113.32", 80), "just past the v4 network")
	require.False(t, w.blocked(t, "2001:db8:1000::1:10", 80), "just past the v6 network")
}

// TestServerDownRulesStay: with the server stopped, the applied rules stay in force.
func TestServerDownRulesStay(t *testing.T) {
	t.Parallel()
	const bad, good = "198.51.100.11", "198.51.100.21"
	w := setupWeb(t, bad, good)
	w.srv.tag(t, bad, badTag)
	w.waitBlocked(t, settle, bad)

	w.srv.stop()
	// The daemon's own poll loop now fails and backs off; one more poll and a drift
	// check here make sure it has been through both with the server gone.
	_, err := w.b.syncer.Poll(t.Context(), 0)
	require.Error(t, err, "a poll with the server down fails")
	require.NoError(t, w.b.syncer.CheckDrift(t.Context()))
	w.requireEnforced(t, bad, good)
}

// heldAPI is the API of a restarted bouncer: its first call, whichever it is, waits
// until the test has looked at the kernel, so the test sees the state before any API
// call.
type heldAPI struct {
	bouncer.API
	once    sync.Once
	called  chan struct{}
	proceed chan struct{}
}

func newHeldAPI(api bouncer.API) *heldAPI {
	return &heldAPI{API: api, called: make(chan struct{}), proceed: make(chan struct{})}
}

func (h *heldAPI) hold(ctx context.Context) {
	h.once.Do(func() { close(h.called) })
	select {
	case <-h.proceed:
	case <-ctx.Done():
	}
}

func (h *heldAPI) Render(ctx context.Context, since map[string]int64, wait time.Duration) (*bouncer.RenderResponse, bool, error) {
	h.hold(ctx)
	return h.API.Render(ctx, since, wait)
}

func (h *heldAPI) Heartbeat(ctx context.Context, hb bouncer.Heartbeat) error {
	h.hold(ctx)
	return h.API.Heartbeat(ctx, hb)
}

func (h *heldAPI) Report(ctx context.Context, r bouncer.Report) error {
	h.hold(ctx)
	return h.API.Report(ctx, r)
}

// TestRestartServerDown: a bouncer killed without cleanup restarts while the server
// is down, after the table vanished (a reboot): its saved rules are in force before
// its first API call.
func TestRestartServerDown(t *testing.T) {
	t.Parallel()
	const bad, good = "198.51.100.12", "198.51.100.22"
	w := setupWeb(t, bad, good)
	w.srv.tag(t, bad, badTag)
	w.waitBlocked(t, settle, bad)
	w.b.kill()
	w.srv.stop()
	w.h.Exec(t, "nft", "flush", "ruleset")
	require.False(t, w.blocked(t, bad, 80), "no table survives the reboot")

	api := newHeldAPI(bouncer.NewClient(w.srv.url, w.key, nil))
	startBouncer(t, w.h, api, w.dir, testLogger(t))
	select {
	case <-api.called:
	case <-time.After(settle):
		t.Fatal("the restarted bouncer never called the API")
	}
	require.True(t, w.blocked(t, bad, 80), "the saved rules are in force before the first API call")
	close(api.proceed)
	w.requireEnforced(t, bad, good)
}

// TestFlushRestored: a table flushed from outside the bouncer comes back.
func TestFlushRestored(t *testing.T) {
	t.Parallel()
	const bad, good = "198.51.100.13", "198.51.100.23"
	w := setupWeb(t, bad, good)
	w.srv.tag(t, bad, badTag)
	w.waitBlocked(t, settle, bad)
	addr := netip.MustParseAddr(bad)
	require.True(t, hashSetHas(t, w.h, "web", 1, addr))

	// The flush succeeds (Exec fails the test otherwise); the bouncer's
	// drift check may restore the table before any look here, so the test
	// does not look for the empty set in between (it raced: 1 run in many).
	w.h.Exec(t, "nft", "flush", "ruleset")
	eventually(t, settle, func() bool { return hashSetHas(t, w.h, "web", 1, addr) }, "the table was not restored")
	w.requireEnforced(t, bad, good)
}

// TestHoneypotSharedAcrossBouncers: a connect to bouncer A's honeypot port gets the
// source reported and tagged honeypot by the server, and bouncer B, which has never
// seen it, blocks it.
func TestHoneypotSharedAcrossBouncers(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	const attacker, good = "203.0.113.66", "203.0.113.67"
	log := testLogger(t)
	srv := startServer(t, log)
	n := newNetwork(t, 2)
	n.addSources(t, attacker, good)
	srv.putRuleset(t, "ruleset edge\n  hook input\n  scope tcp dport 80\n  honeypot tcp 2323\n  block tag honeypot\n")
	var bs []*runningBouncer
	for i, name := range []string{"A", "B"} {
		n.hosts[i].listen(t, 80)
		key := srv.createBouncer(t, name, "edge")
		bs = append(bs, startBouncer(t, n.hosts[i], bouncer.NewClient(srv.url, key, nil), t.TempDir(), log))
	}
	for _, b := range bs {
		b.waitApplied(t, "edge")
	}
	a, b := n.hosts[0], n.hosts[1]
	require.True(t, n.connect(t, b, attacker, 80, dropped), "before the honeypot hit")

	n.connect(t, a, attacker, 2323, dropped) // whatever its outcome, the SYN was seen
	eventually(t, settle, func() bool {
		srcs := srv.ipTags(t, attacker)["honeypot"]
		return len(srcs) == 1 && srcs[0] == "bouncer:A"
	}, "the server never tagged %s honeypot from bouncer:A", attacker)
	eventually(t, settle, func() bool { return !n.connect(t, b, attacker, 80, 100*time.Millisecond) },
		"bouncer B does not block the honeypot source")
	require.False(t, n.connect(t, b, attacker, 80, dropped), "B blocks the source")
	require.False(t, n.connect(t, a, attacker, 80, dropped), "A blocks the source")
	require.True(t, n.connect(t, b, good, 80, dropped), "B lets others in")
	require.Empty(t, srv.ipTags(t, good))
}
