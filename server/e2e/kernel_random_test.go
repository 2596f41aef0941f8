//go:build linux

package e2e

import (
	"encoding/json"
	"flag"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/bouncer/nft"
	"github.com/muninn/muninn/server/render"
)

// seedFlag replays a run of TestKernelEqualsRenderRandom: its log names the seed.
var seedFlag = flag.Uint64("e2e.seed", 0, "seed of TestKernelEqualsRenderRandom (0: a new one)")

const (
	// rndRuleset lets tag ok through first, then blocks two tag selectors; the
	// rule IDs are 1 (allow), 2 and 3 (block).
	rndRuleset = "ruleset rnd\n  hook input\n  scope tcp dport 80\n  allow tag ok\n  block tag bad\n  block tag scan, worm\n"
	rndRounds  = 15
)

// rndTags are the tags the random changes use: one per rule selector and one
// that no rule names.
var rndTags = []string{"ok", "bad", "scan", "worm", "noise"}

// TestKernelEqualsRenderRandom is issue 10's kernel proof of one truth: after
// rounds of random ingests, overrides that add or suppress tags on containing
// prefixes, and override deletions, every address set the bouncer put in the
// kernel holds exactly the addresses of the render it applied, per rule and
// family.
func TestKernelEqualsRenderRandom(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test -run TestKernelEqualsRenderRandom ./server/e2e/ -e2e.seed=%d)", seed, seed)
	log := testLogger(t)
	srv := startServer(t, log)
	h := &host{netNS: newNS(t), v4: "192.0.2.1", v6: "2001:db8::1"}
	srv.putRuleset(t, rndRuleset)
	b := startBouncer(t, h, bouncer.NewClient(srv.url, srv.createBouncer(t, "rnd1", "rnd"), nil), t.TempDir(), log)

	// Round 0 is fixed: one v4 and one v6 prefix per rule, so every set the
	// random rounds compare starts with known contents.
	for _, in := range []struct{ prefix, tag string }{
		{"198.51.100.0/28", "ok"}, {"198.51.100.16", "bad"}, {"198.51.100.32/27", "scan"},
		{"2001:db8:0:1::/64", "ok"}, {"2001:db8::bad", "bad"}, {"2001:db8:2::/48", "worm"},
	} {
		srv.ingest(t, in.prefix, in.tag)
	}
	r := srv.settleRender(t, "rnd")
	require.Equal(t, [][2][]string{
		{{"198.51.100.0/28"}, {"2001:db8:0:1::/64"}},
		{{"198.51.100.16/32"}, {"2001:db8::bad/128"}},
		{{"198.51.100.32/27"}, {"2001:db8:2::/48"}},
	}, renderSets(t, r), "the fixed round's render")
	requireKernelEqualsRender(t, b, r, 0)

	u := &universe{rnd: rand.New(rand.NewPCG(seed, seed)), overrides: map[netip.Prefix]bool{}}
	for round := 1; round <= rndRounds; round++ {
		for range 2 + u.rnd.IntN(6) {
			u.change(t, srv)
		}
		requireKernelEqualsRender(t, b, srv.settleRender(t, "rnd"), round)
	}
}

// universe makes random changes through the API and remembers what it stored:
// the prefixes ingested and the prefixes that carry an override.
type universe struct {
	rnd       *rand.Rand
	ingested  []netip.Prefix
	overrides map[netip.Prefix]bool
}

// change makes one random change: an ingest (half of them), an override, or
// the deletion of an override.
func (u *universe) change(t *testing.T, srv *server) {
	t.Helper()
	switch n := u.rnd.IntN(10); {
	case n < 5 || len(u.ingested) == 0:
		p := u.prefix()
		u.ingested = append(u.ingested, p)
		tags := u.tags(1 + u.rnd.IntN(2))
		line := jsonBody(t, map[string]any{"ip": prefixArg(p), "source": "rnd" + strconv.Itoa(u.rnd.IntN(3)), "tags": tags})
		t.Logf("ingest %s %v", p, tags)
		srv.mustCall(t, srv.writer, http.MethodPost, "/api/v1/ingest", "application/x-ndjson", append(line, '\n'), http.StatusOK)
	case n < 8 || len(u.overrides) == 0:
		p := u.containing()
		add, suppress := u.override()
		t.Logf("override %s add %v suppress %v", p, add, suppress)
		srv.mustCall(t, srv.writer, http.MethodPut, networkPath(p)+"/override", "application/json",
			jsonBody(t, map[string]any{"add_tags": add, "suppress_tags": suppress}), http.StatusOK)
		u.overrides[p] = true
	default:
		keys := make([]netip.Prefix, 0, len(u.overrides))
		for p := range u.overrides {
			keys = append(keys, p)
		}
		slices.SortFunc(keys, netip.Prefix.Compare) // map order is not the seed's
		p := keys[u.rnd.IntN(len(keys))]
		t.Logf("delete override %s", p)
		srv.mustCall(t, srv.writer, http.MethodDelete, networkPath(p)+"/override", "", nil, http.StatusNoContent)
		delete(u.overrides, p)
	}
}

// prefix is a random prefix inside the documentation ranges: a /24 to /32
// (mostly /32) or a /32 to /128 (mostly /128) near a few v6 neighbourhoods, so
// that prefixes nest and overlap.
func (u *universe) prefix() netip.Prefix {
	if u.rnd.IntN(2) == 0 {
		a := []netip.Addr{netip.MustParseAddr("192.0.2.0"), netip.MustParseAddr("198.51.100.0"), netip.MustParseAddr("203.0.113.0")}[u.rnd.IntN(3)].As4()
		a[3] = byte(u.rnd.IntN(256))
		bits := []int{24, 25, 26, 28, 29, 30, 31, 32, 32, 32}[u.rnd.IntN(10)]
		return netip.PrefixFrom(netip.AddrFrom4(a), bits).Masked()
	}
	a := netip.MustParseAddr("2001:db8::").As16()
	a[5] = byte(u.rnd.IntN(3))
	a[14] = byte(u.rnd.IntN(2))
	a[15] = byte(u.rnd.IntN(256))
	bits := []int{32, 44, 48, 64, 96, 112, 120, 124, 127, 128, 128, 128}[u.rnd.IntN(12)]
	return netip.PrefixFrom(netip.AddrFrom16(a), bits).Masked()
}

// containing is a prefix containing (or equal to) an ingested one, no wider
// than its documentation range; one in five is a fresh random prefix instead.
func (u *universe) containing() netip.Prefix {
	if u.rnd.IntN(5) == 0 {
		return u.prefix()
	}
	p := u.ingested[u.rnd.IntN(len(u.ingested))]
	widest := 24
	if p.Addr().Is6() {
		widest = 32
	}
	return netip.PrefixFrom(p.Addr(), widest+u.rnd.IntN(p.Bits()-widest+1)).Masked()
}

// tags is n distinct random tags.
func (u *universe) tags(n int) []string {
	perm := u.rnd.Perm(len(rndTags))
	out := make([]string, n)
	for i := range out {
		out[i] = rndTags[perm[i]]
	}
	return out
}

// override is a random manual override: each tag added, suppressed or left
// out, at least one of them added or suppressed.
func (u *universe) override() (add, suppress []string) {
	add, suppress = []string{}, []string{} // the contract has no null lists
	for len(add)+len(suppress) == 0 {
		for _, tag := range rndTags {
			switch u.rnd.IntN(3) {
			case 0:
				add = append(add, tag)
			case 1:
				suppress = append(suppress, tag)
			}
		}
	}
	return add, suppress
}

// prefixArg is p as an ingest line writes it: a bare address for a single one.
func prefixArg(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// networkPath is the API path of p's network resource.
func networkPath(p netip.Prefix) string {
	return "/api/v1/networks/" + p.Addr().String() + "/" + strconv.Itoa(p.Bits())
}

// settleRender returns the full render of ruleset name over everything written
// so far: the index catches up with every recorded change, the hub recomputes
// from it (serialised with its own debounced recomputes, whose snapshots can
// only be older), and the render is read back through the API as bouncers see it.
func (s *server) settleRender(tb testing.TB, name string) *render.Render {
	tb.Helper()
	require.NoError(tb, s.ix.CatchUp(tb.Context()))
	require.NoError(tb, s.hub.Recompute(tb.Context()))
	var r render.Render
	require.NoError(tb, json.Unmarshal(s.mustCall(tb, s.admin, http.MethodGet, "/api/v1/rulesets/"+name+"/render", "", nil, http.StatusOK), &r))
	require.False(tb, r.Delta, "a render without since is full")
	return &r
}

// renderSets is the minimal CIDR form of each rule's v4 and v6 sets of r, in
// rule order.
func renderSets(tb testing.TB, r *render.Render) [][2][]string {
	tb.Helper()
	out := make([][2][]string, len(r.Rules))
	for i, rule := range r.Rules {
		out[i] = [2][]string{cidrs(renderSet(tb, rule.V4)), cidrs(renderSet(tb, rule.V6))}
	}
	return out
}

// requireKernelEqualsRender waits until b has applied r's version, reads every
// address set of its table from the kernel and requires that, per rule and
// family, the kernel's hash and interval sets together hold exactly the
// render's addresses, and that no other address set is there.
func requireKernelEqualsRender(t *testing.T, b *runningBouncer, r *render.Render, round int) {
	t.Helper()
	eventually(t, settle, func() bool { return b.syncer.State().Applied()[r.Ruleset] == r.Version },
		"round %d: the bouncer never applied version %d of %s (applied %v)", round, r.Version, r.Ruleset, b.syncer.State().Applied())
	sets := b.h.AddrSets(t, "table", "inet", nft.DefaultTable)
	require.Equal(t, r.Version, b.syncer.State().Applied()[r.Ruleset], "round %d: the bouncer moved on while the kernel was read", round)
	elems := 0
	for _, rule := range r.Rules {
		for _, fam := range []struct {
			v6     bool
			render []string
		}{{false, rule.V4}, {true, rule.V6}} {
			var kb netipx.IPSetBuilder
			for _, interval := range []bool{false, true} {
				name := bouncer.AddrSetName(r.Ruleset, int64(rule.ID), fam.v6, interval)
				if s, ok := sets[name]; ok {
					kb.AddSet(s)
					delete(sets, name)
				}
			}
			kernel, err := kb.IPSet()
			require.NoError(t, err)
			want := cidrs(renderSet(t, fam.render))
			require.Equal(t, want, cidrs(kernel), "round %d, version %d: rule %d (%s), v6 %v: kernel vs render", round, r.Version, rule.ID, rule.Text, fam.v6)
			elems += len(want)
		}
	}
	require.Empty(t, sets, "round %d: address sets no rule of the render names", round)
	t.Logf("round %d: version %d, %d CIDRs in the kernel equal the render", round, r.Version, elems)
}

// renderSet is the set of a render's prefix list.
func renderSet(tb testing.TB, prefixes []string) *netipx.IPSet {
	tb.Helper()
	var b netipx.IPSetBuilder
	for _, s := range prefixes {
		p, err := netip.ParsePrefix(s)
		require.NoError(tb, err)
		b.AddPrefix(p)
	}
	ips, err := b.IPSet()
	require.NoError(tb, err)
	return ips
}

// cidrs is the minimal CIDR list of s, sorted.
func cidrs(s *netipx.IPSet) []string {
	out := []string{}
	for _, p := range s.Prefixes() {
		out = append(out, p.String())
	}
	return out
}
