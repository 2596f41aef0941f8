package index_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

var diffBases = []netip.Prefix{prefix("192.0.2.0/24"), prefix("198.51.100.0/23"), prefix("2001:db8::/32")}

// randPrefix draws a prefix nested in one of the bases, favouring a few
// lengths so that prefixes nest often.
func randPrefix(r *rand.Rand) netip.Prefix {
	base := diffBases[r.IntN(len(diffBases))]
	var bits int
	if base.Addr().Is4() {
		bits = []int{23, 24, 25, 26, 28, 30, 32, 32, 32}[r.IntN(9)]
	} else {
		bits = []int{32, 48, 64, 64, 120, 126, 128, 128}[r.IntN(8)]
	}
	bits = max(bits, base.Bits())
	return netip.PrefixFrom(randAddr(r, base), bits).Masked()
}

func randAddr(r *rand.Rand, base netip.Prefix) netip.Addr {
	a := base.Addr().AsSlice()
	for i := base.Bits(); i < len(a)*8; i++ {
		if r.IntN(2) == 1 {
			a[i/8] |= 1 << (7 - i%8)
		}
	}
	// Concentrate on the low addresses so that random addresses fall into
	// stored prefixes often.
	if base.Addr().Is6() {
		for i := 4; i < 14; i++ {
			a[i] = 0
		}
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func someOf(r *rand.Rand, xs ...string) []string {
	var out []string
	for _, x := range xs {
		if r.IntN(3) == 0 {
			out = append(out, x)
		}
	}
	return out
}

// universe writes random observations, feed entries and overrides through
// the store's write paths.
type universe struct {
	t        *testing.T
	b        testBundle
	r        *rand.Rand
	now      time.Time
	prefixes []netip.Prefix
	manual   []netip.Prefix
}

func (u *universe) expiry() *time.Time {
	switch u.r.IntN(4) {
	case 0:
		e := u.now.Add(-time.Hour)
		return &e
	case 1:
		e := u.now.Add(time.Hour)
		return &e
	}
	return nil
}

func (u *universe) write(n int) {
	t, r := u.t, u.r
	for range n {
		p := randPrefix(r)
		if len(u.prefixes) > 0 && r.IntN(2) == 0 {
			p = pick(r, u.prefixes...)
		} else {
			u.prefixes = append(u.prefixes, p)
		}
		switch k := r.IntN(10); {
		case k < 6:
			o := store.Observation{Prefix: p, Source: pick(r, "ingest:a", "ingest:b", "bouncer:x"),
				Tags: someOf(r, "t1", "t2", "t3", "t4"), Classification: pick(r, "", "", "unknown", "benign", "suspicious", "malicious"),
				SeenAt: u.now.Add(-time.Duration(r.IntN(100)) * time.Minute), ExpiresAt: u.expiry()}
			if r.IntN(3) == 0 {
				o.Note = fmt.Sprintf("note %d", r.IntN(100))
			}
			require.NoError(t, u.b.st.Ingest(u.b.ctx, []store.Observation{o}, "test"))
		case k < 9:
			o := store.Override{Classification: pick(r, "", "", "unknown", "benign", "suspicious", "malicious"),
				AddTags: someOf(r, "t1", "t2", "t5"), SuppressTags: someOf(r, "t1", "t2", "t3", "t4"), ExpiresAt: u.expiry()}
			if r.IntN(3) == 0 {
				o.Note = fmt.Sprintf("manual %d", r.IntN(100))
			}
			require.NoError(t, u.b.st.PutOverride(u.b.ctx, p, o, pick(r, "alice", "bob"), u.now.Add(-time.Duration(r.IntN(100))*time.Minute)))
			u.manual = append(u.manual, p)
		default:
			if len(u.manual) > 0 {
				i := r.IntN(len(u.manual))
				err := u.b.st.DeleteOverride(u.b.ctx, u.manual[i], "alice")
				if err != nil {
					require.ErrorIs(t, err, store.ErrNotFound)
				}
				u.manual = slices.Delete(u.manual, i, i+1)
			}
		}
	}
	// One feed, refreshed with a random selection.
	var listed []netip.Prefix
	for range r.IntN(8) {
		listed = append(listed, randPrefix(r))
	}
	u.prefixes = append(u.prefixes, listed...)
	_, err := u.b.st.ApplyFeed(u.b.ctx, "f", store.FeedUpdate{Prefixes: sortPrefixes(listed), Now: u.now.Add(-30 * time.Minute),
		StartedAt: u.now.Add(-30 * time.Minute), Force: true})
	require.NoError(t, err)
}

func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(ps)
}

// naive is the model: the resolver applied directly to what PostgreSQL holds
// on every prefix the universe wrote that contains a target.
func (u *universe) naive(p netip.Prefix) resolve.View {
	var candidates []netip.Prefix
	for _, q := range append(slices.Clone(u.prefixes), u.manual...) {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			candidates = append(candidates, q)
		}
	}
	// Loaded as of the beginning of time, so every assertion comes back,
	// expired ones included: the resolver decides what is live at u.now.
	var containing []resolve.Prefix
	require.NoError(u.t, u.b.st.LoadPrefixes(u.b.ctx, time.Time{}, sortPrefixes(candidates), func(q resolve.Prefix) error {
		q.Assertions = slices.Clone(q.Assertions)
		containing = append(containing, q)
		return nil
	}))
	return resolve.Resolve(p, containing, u.now)
}

func lookupKey(p netip.Prefix, v resolve.View, ok bool) string {
	if !ok {
		return p.String() + " absent"
	}
	facts := ""
	for _, f := range v.Tags {
		facts += fmt.Sprintf(" %s@%s/%s", f.Name, f.Prefix, f.Source)
	}
	return fmt.Sprintf("%s %d %v%s", viewKey(p, v), v.Sightings, v.Prefixes, facts)
}

func TestDifferentialIndexAgreesWithResolver(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
			u := &universe{t: t, b: b, r: rand.New(rand.NewPCG(seed, 99)), now: now}
			_, err := b.st.PutFeed(b.ctx, store.Feed{Name: "f", URL: "http://example.invalid/f", Format: "list", Tag: "t3",
				Classification: "malicious", TTL: time.Hour, Enabled: true}, "test")
			require.NoError(t, err)
			// Half before the load, half applied as changes.
			u.write(30)
			ix := index.New(b.st, logger(t), func() time.Time { return now })
			require.NoError(t, ix.Reload(b.ctx))
			u.write(30)
			require.NoError(t, ix.CatchUp(b.ctx))
			s := ix.Snapshot()
			u.check(s)
		})
	}
}

func (u *universe) check(s *index.Snap) {
	t, r := u.t, u.r
	// Lookups of random addresses, and the networks of every prefix written
	// (stored, deleted or never stored).
	var targets []netip.Prefix
	for range 300 {
		a := randAddr(r, pick(r, diffBases...))
		targets = append(targets, netip.PrefixFrom(a, a.BitLen()))
	}
	var found, suppressed, manual, expired int
	for _, target := range targets {
		v, ok := s.Lookup(target.Addr())
		want := u.naive(target)
		require.Equal(t, lookupKey(target, want, want.Exists()), lookupKey(target, v, ok), "GET /ips/%s", target.Addr())
		if ok {
			found++
		}
		if len(v.Suppressed) > 0 {
			suppressed++
		}
		if resolve.IsManual(v.ClassificationSource) {
			manual++
		}
		if slices.ContainsFunc(want.Steps, func(s string) bool { return strings.Contains(s, "expired") }) {
			expired++
		}
	}
	// The universe exercised the rules, not only empty views.
	require.Greater(t, found, 30)
	require.Positive(t, suppressed)
	require.Positive(t, manual)
	require.Positive(t, expired)
	for _, p := range u.prefixes {
		v, ok := s.Network(p)
		want := u.naive(p)
		require.Equal(t, lookupKey(p, want, want.Exists()), lookupKey(p, v, ok), "GET /networks/%s", p)
	}

	// The walk: every stored prefix that exists, in address order, with the
	// view the resolver gives it.
	var wantRows []string
	var wantPrefixes []netip.Prefix
	wantViews := map[netip.Prefix]resolve.View{}
	for _, p := range sortPrefixes(u.prefixes) {
		v := u.naive(p)
		if len(v.Prefixes) > 0 && v.Prefixes[0] == p {
			wantRows = append(wantRows, viewKey(p, v))
			wantPrefixes = append(wantPrefixes, p)
			wantViews[p] = v
		}
	}
	require.Equal(t, wantRows, rows(s))
	require.NotEmpty(t, wantRows)

	// Search by every tag, classification, source pattern and base.
	var filters []index.Filter
	for _, tag := range []string{"t1", "t2", "t3", "t4", "t5"} {
		filters = append(filters, index.Filter{Tag: tag})
	}
	for _, c := range resolve.Classifications {
		filters = append(filters, index.Filter{Classification: c})
	}
	for _, src := range []string{"manual:*", "ingest:a", "feed:f", "bouncer:*", "ingest:*"} {
		filters = append(filters, index.Filter{Source: src})
	}
	for _, base := range diffBases {
		filters = append(filters, index.Filter{Within: base}, index.Filter{Within: base, Tag: "t1"})
	}
	filters = append(filters, index.Filter{SeenSince: u.now.Add(-50 * time.Minute)})
	for _, f := range filters {
		var want []netip.Prefix
		for _, p := range wantPrefixes {
			v := wantViews[p]
			if (f.Tag == "" || slices.Contains(v.TagNames(), f.Tag)) &&
				(f.Classification == "" || v.Classification == f.Classification) &&
				(f.Source == "" || slices.ContainsFunc(v.Sources, func(s string) bool {
					return s == f.Source || (f.Source[len(f.Source)-1] == '*' && len(s) >= len(f.Source)-1 && s[:len(f.Source)-1] == f.Source[:len(f.Source)-1])
				})) &&
				(!f.Within.IsValid() || (f.Within.Bits() <= p.Bits() && f.Within.Contains(p.Addr()))) &&
				(f.SeenSince.IsZero() || !v.LastSeen.Before(f.SeenSince)) {
				want = append(want, p)
			}
		}
		require.Equal(t, want, searchAll(s, f), "search %+v", f)
	}

	// The ClickHouse reading: the longest match among the exported rows
	// answers what the lookup answers.
	for _, target := range targets {
		v, ok := s.Lookup(target.Addr())
		var best netip.Prefix
		for _, p := range wantPrefixes {
			if p.Contains(target.Addr()) && (!best.IsValid() || p.Bits() > best.Bits()) {
				best = p
			}
		}
		require.Equal(t, ok, best.IsValid(), "%s", target)
		if ok {
			row := wantViews[best]
			require.Equal(t, v.TagNames(), row.TagNames(), "%s via %s", target, best)
			require.Equal(t, v.Classification, row.Classification, "%s via %s", target, best)
			require.Equal(t, v.Note, row.Note, "%s via %s", target, best)
			require.Equal(t, v.Sources, row.Sources, "%s via %s", target, best)
		}
	}

	// The compiler's entries, in full and per span.
	var wantEntries []policy.Entry
	for _, p := range wantPrefixes {
		wantEntries = append(wantEntries, policy.EntryOf(p, wantViews[p]))
	}
	require.Equal(t, wantEntries, s.Entries(false).Entries)
	for _, workers := range []int{2, 3, 7} {
		require.Equal(t, wantEntries, index.EntriesWith(s, netip.Prefix{}, workers), "%d workers", workers)
	}
	for range 30 {
		span := randPrefix(r)
		var want []policy.Entry
		var outer netip.Prefix
		for _, p := range wantPrefixes {
			if p.Bits() < span.Bits() && p.Contains(span.Addr()) && (!outer.IsValid() || p.Bits() > outer.Bits()) {
				outer = p
			}
		}
		if outer.IsValid() {
			want = append(want, policy.EntryOf(outer, wantViews[outer]))
		}
		for _, p := range wantPrefixes {
			if span.Bits() <= p.Bits() && span.Contains(p.Addr()) {
				want = append(want, policy.EntryOf(p, wantViews[p]))
			}
		}
		require.Equal(t, want, s.SpanFacts(span, false).Entries, "span %s", span)
	}
}
