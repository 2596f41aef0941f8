package resolve_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/resolve"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func at(h int) *time.Time {
	t := now.Add(time.Duration(h) * time.Hour)
	return &t
}

func pfx(s string, as ...resolve.Assertion) resolve.Prefix {
	return resolve.Prefix{Prefix: netip.MustParsePrefix(s), FirstSeen: now.Add(-time.Hour), LastSeen: now, Assertions: as}
}

func tag(src, v string) resolve.Assertion {
	return resolve.Assertion{Kind: resolve.KindTag, Value: v, Source: src, FirstSeen: now, LastSeen: now}
}

func cls(src, v string) resolve.Assertion {
	return resolve.Assertion{Kind: resolve.KindClassification, Value: v, Source: src, FirstSeen: now, LastSeen: now}
}

func expiring(a resolve.Assertion, h int) resolve.Assertion {
	a.ExpiresAt = at(h)
	return a
}

func TestResolve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		target     string
		prefixes   []resolve.Prefix
		wantCls    string
		wantClsSrc string
		wantTags   []string
		wantHidden int
	}{
		{name: "nothing", target: "198.51.100.7/32", wantCls: "unknown"},
		{
			name: "nested prefixes union their tags", target: "198.51.100.7/32",
			prefixes: []resolve.Prefix{pfx("198.51.100.0/24", tag("feed:a", "scanner")), pfx("198.51.100.7/32", tag("ingest:cowrie", "ssh")), pfx("198.51.0.0/16", tag("feed:b", "hosting"))},
			wantCls:  "unknown", wantTags: []string{"hosting", "scanner", "ssh"},
		},
		{
			name: "a prefix that does not contain the target is ignored", target: "198.51.100.7/32",
			prefixes: []resolve.Prefix{pfx("198.51.101.0/24", tag("feed:a", "scanner"), cls("feed:a", "malicious"))},
			wantCls:  "unknown",
		},
		{
			name: "most severe automatic classification wins", target: "198.51.100.7/32",
			prefixes: []resolve.Prefix{pfx("198.51.100.7/32", cls("ingest:x", "suspicious")), pfx("198.51.100.0/24", cls("feed:a", "malicious"), cls("feed:b", "benign"))},
			wantCls:  "malicious", wantClsSrc: "feed:a",
		},
		{
			name: "manual beats automatic even on a broader prefix", target: "198.51.100.7/32",
			prefixes: []resolve.Prefix{pfx("198.51.100.7/32", cls("feed:a", "malicious")), pfx("198.51.100.0/24", cls("manual:alice", "benign"))},
			wantCls:  "benign", wantClsSrc: "manual:alice",
		},
		{
			name: "the most specific manual classification wins", target: "198.51.100.7/32",
			prefixes: []resolve.Prefix{pfx("198.51.100.0/24", cls("manual:alice", "benign")), pfx("198.51.100.7/32", cls("manual:bob", "suspicious"))},
			wantCls:  "suspicious", wantClsSrc: "manual:bob",
		},
		{
			name: "manual suppress hides automatic tags from broader prefixes", target: "203.0.113.7/32",
			prefixes: []resolve.Prefix{
				pfx("203.0.113.0/24", tag("feed:a", "X"), tag("feed:a", "Y")),
				pfx("203.0.113.7/32", resolve.Assertion{Kind: resolve.KindSuppress, Value: "X", Source: "manual:alice", FirstSeen: now, LastSeen: now}),
			},
			wantCls: "unknown", wantTags: []string{"Y"}, wantHidden: 1,
		},
		{
			name: "suppress never hides a manual tag", target: "203.0.113.7/32",
			prefixes: []resolve.Prefix{pfx("203.0.113.7/32", tag("manual:bob", "X"), resolve.Assertion{Kind: resolve.KindSuppress, Value: "X", Source: "manual:alice", FirstSeen: now, LastSeen: now})},
			wantCls:  "unknown", wantTags: []string{"X"},
		},
		{
			name: "an automatic suppress does nothing", target: "203.0.113.7/32",
			prefixes: []resolve.Prefix{pfx("203.0.113.0/24", tag("feed:a", "X")), pfx("203.0.113.7/32", resolve.Assertion{Kind: resolve.KindSuppress, Value: "X", Source: "feed:b", FirstSeen: now, LastSeen: now})},
			wantCls:  "unknown", wantTags: []string{"X"},
		},
		{
			name: "expired assertions do not count", target: "198.51.100.7/32",
			prefixes: []resolve.Prefix{pfx("198.51.100.7/32", expiring(cls("manual:alice", "benign"), -1), expiring(tag("feed:a", "old"), -2), expiring(tag("feed:a", "fresh"), 2), cls("feed:a", "suspicious"))},
			wantCls:  "suspicious", wantClsSrc: "feed:a", wantTags: []string{"fresh"},
		},
		{
			name: "an expired suppress stops hiding", target: "203.0.113.7/32",
			prefixes: []resolve.Prefix{pfx("203.0.113.0/24", tag("feed:a", "X")), pfx("203.0.113.7/32", expiring(resolve.Assertion{Kind: resolve.KindSuppress, Value: "X", Source: "manual:alice"}, -1))},
			wantCls:  "unknown", wantTags: []string{"X"},
		},
		{
			name: "IPv6 nesting", target: "2001:db8::1/128",
			prefixes: []resolve.Prefix{pfx("2001:db8::/32", tag("feed:a", "doc")), pfx("2001:db8::/64", cls("feed:b", "malicious"))},
			wantCls:  "malicious", wantClsSrc: "feed:b", wantTags: []string{"doc"},
		},
		{
			name: "IPv4 never matches IPv6 prefixes", target: "198.51.100.7/32",
			prefixes: []resolve.Prefix{pfx("::/0", tag("feed:a", "everything6"))},
			wantCls:  "unknown",
		},
		{
			name: "a network view ignores more specific prefixes", target: "198.51.100.0/24",
			prefixes: []resolve.Prefix{pfx("198.51.100.0/24", tag("feed:a", "net")), pfx("198.51.100.7/32", tag("feed:a", "host"))},
			wantCls:  "unknown", wantTags: []string{"net"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := resolve.Resolve(netip.MustParsePrefix(tt.target), tt.prefixes, now)
			require.Equal(t, tt.wantCls, v.Classification)
			require.Equal(t, tt.wantClsSrc, v.ClassificationSource)
			if tt.wantTags == nil {
				require.Empty(t, v.TagNames())
			} else {
				require.Equal(t, tt.wantTags, v.TagNames())
			}
			require.Len(t, v.Suppressed, tt.wantHidden)
			require.NotEmpty(t, v.Steps, "explain steps are always given")
		})
	}
}

func TestResolveNoteAndSeen(t *testing.T) {
	t.Parallel()
	note := func(src, v string) resolve.Assertion {
		return resolve.Assertion{Kind: resolve.KindNote, Value: v, Source: src, FirstSeen: now, LastSeen: now}
	}
	p1 := pfx("198.51.100.0/24", note("manual:alice", "our range"))
	p1.FirstSeen = now.Add(-48 * time.Hour)
	p2 := pfx("198.51.100.7/32", note("ingest:x", "scanner note"))
	p2.Sightings = 7
	v := resolve.Resolve(netip.MustParsePrefix("198.51.100.7/32"), []resolve.Prefix{p2, p1}, now)
	require.Equal(t, "our range", v.Note, "a manual note beats a more specific automatic one")
	require.Equal(t, now.Add(-48*time.Hour), v.FirstSeen)
	require.EqualValues(t, 7, v.Sightings)
	require.Equal(t, []string{"ingest:x", "manual:alice"}, v.Sources)
}

func ExampleResolve() {
	feed := resolve.Prefix{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Assertions: []resolve.Assertion{
		{Kind: resolve.KindTag, Value: "scanner", Source: "feed:blocklist"},
		{Kind: resolve.KindClassification, Value: "malicious", Source: "feed:blocklist"},
	}}
	manual := resolve.Prefix{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Assertions: []resolve.Assertion{
		{Kind: resolve.KindClassification, Value: "benign", Source: "manual:alice"},
		{Kind: resolve.KindSuppress, Value: "scanner", Source: "manual:alice"},
	}}
	v := resolve.Resolve(netip.MustParsePrefix("203.0.113.7/32"), []resolve.Prefix{feed, manual}, now)
	fmt.Println(v.Classification, v.TagNames())
	// Output: benign []
}

func suppress(src, v string) resolve.Assertion {
	return resolve.Assertion{Kind: resolve.KindSuppress, Value: v, Source: src, FirstSeen: now, LastSeen: now}
}

func note(src, v string, seen time.Time) resolve.Assertion {
	return resolve.Assertion{Kind: resolve.KindNote, Value: v, Source: src, FirstSeen: seen, LastSeen: seen}
}

// The issue's suppression case: a manual suppress on the /24 hides the tag
// asserted by the /24 itself, by the /26 inside it and by the /32 inside it.
func TestResolveSuppressionHidesContainedAssertions(t *testing.T) {
	t.Parallel()
	universe := []resolve.Prefix{
		pfx("192.0.2.0/24", tag("ingest:a", "supx"), suppress("manual:alice", "supx")),
		pfx("192.0.2.64/26", tag("ingest:b", "supx")),
		pfx("192.0.2.5/32", tag("ingest:c", "supx")),
	}
	for _, target := range []string{"192.0.2.70/32", "192.0.2.5/32", "192.0.2.64/26", "192.0.2.0/24", "192.0.2.200/32"} {
		v := resolve.Resolve(netip.MustParsePrefix(target), universe, now)
		require.Empty(t, v.Tags, target)
		require.Equal(t, []string{"supx"}, v.SuppressedNames(), target)
		require.False(t, v.HasTag("supx"), target)
	}
	v := resolve.Effective(netip.MustParsePrefix("192.0.2.70/32"), universe, now)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.64/26"), netip.MustParsePrefix("192.0.2.0/24")}, v.Prefixes)
	require.Equal(t, []string{"ingest:a", "ingest:b", "manual:alice"}, v.Sources)
	require.Len(t, v.Suppressed, 2)
	require.Empty(t, v.Steps, "Effective writes no steps")

	// A suppress on the /26 hides nothing outside it.
	inner := []resolve.Prefix{
		pfx("192.0.2.0/24", tag("ingest:a", "supx")),
		pfx("192.0.2.64/26", tag("ingest:b", "supx"), suppress("manual:alice", "supx")),
	}
	require.Equal(t, []string{"supx"}, resolve.Resolve(netip.MustParsePrefix("192.0.2.5/32"), inner, now).TagNames())
	require.Empty(t, resolve.Resolve(netip.MustParsePrefix("192.0.2.70/32"), inner, now).TagNames())
	require.Equal(t, []string{"supx"}, resolve.Resolve(netip.MustParsePrefix("192.0.2.0/24"), inner, now).TagNames())
}

// The issue's note case: two sources note "first" then "second" on one
// address: the newest wins unless a manual note exists.
func TestResolveNewestNote(t *testing.T) {
	t.Parallel()
	addr := netip.MustParsePrefix("198.51.100.9/32")
	auto := []resolve.Prefix{pfx("198.51.100.9/32",
		note("ingest:one", "first", now.Add(-time.Minute)),
		note("ingest:two", "second", now))}
	v := resolve.Resolve(addr, auto, now)
	require.Equal(t, "second", v.Note)
	require.Equal(t, "ingest:two", v.NoteSource)

	// The newest automatic note wins even on a broader prefix.
	broad := append([]resolve.Prefix{pfx("198.51.100.0/24", note("feed:x", "third", now.Add(time.Minute)))}, auto...)
	require.Equal(t, "third", resolve.Resolve(addr, broad, now).Note)

	// A manual note wins, the most specific one first, whatever its age.
	manual := append([]resolve.Prefix{
		pfx("198.51.100.0/16", note("manual:bob", "broad", now.Add(time.Hour))),
		pfx("198.51.100.0/24", note("manual:alice", "mine", now.Add(-time.Hour))),
	}, auto...)
	v = resolve.Resolve(addr, manual, now)
	require.Equal(t, "mine", v.Note)
	require.Equal(t, "manual:alice", v.NoteSource)

	// Same time on one prefix: the smaller source wins, whatever the order given.
	tie := []resolve.Prefix{pfx("198.51.100.9/32", note("ingest:z", "z", now), note("ingest:b", "b", now))}
	require.Equal(t, "b", resolve.Resolve(addr, tie, now).Note)
}

// The issue's ghost case: a prefix whose override was deleted (no assertion,
// no sighting) or whose assertions all expired does not exist for any output.
func TestResolveGhostPrefix(t *testing.T) {
	t.Parallel()
	ghost := resolve.Prefix{Prefix: netip.MustParsePrefix("203.0.113.7/32"), FirstSeen: now.Add(-time.Hour), LastSeen: now}
	require.False(t, ghost.Exists(now))
	expired := pfx("203.0.113.8/32", expiring(tag("feed:a", "x"), -1))
	require.False(t, expired.Exists(now))
	require.True(t, expired.Exists(now.Add(-2*time.Hour)), "before its expiry it exists")
	seen := resolve.Prefix{Prefix: netip.MustParsePrefix("203.0.113.9/32"), Sightings: 1}
	require.True(t, seen.Exists(now), "a sighting alone makes a prefix exist")

	v := resolve.Resolve(ghost.Prefix, []resolve.Prefix{ghost}, now)
	require.False(t, v.Exists())
	require.Empty(t, v.Sources)
	require.True(t, v.FirstSeen.IsZero())

	outer := pfx("203.0.113.0/24", tag("feed:a", "net"))
	outer.FirstSeen = now.Add(-48 * time.Hour)
	outer.LastSeen = now.Add(-24 * time.Hour)
	v = resolve.Resolve(ghost.Prefix, []resolve.Prefix{ghost, outer}, now)
	require.Equal(t, []netip.Prefix{outer.Prefix}, v.Prefixes, "the ghost is not among the containing prefixes")
	require.Equal(t, now.Add(-24*time.Hour), v.LastSeen, "the ghost's times do not count")
	require.Equal(t, []string{"net"}, v.TagNames())
}

func TestClassificationOrder(t *testing.T) {
	t.Parallel()
	for i, c := range resolve.Classifications {
		require.Equal(t, i, resolve.Severity(c))
		require.True(t, resolve.ValidClassification(c))
	}
	require.Equal(t, 0, resolve.Severity("bogus"))
	require.False(t, resolve.ValidClassification("bogus"))
	require.False(t, resolve.ValidClassification(""))
}

// BenchmarkEffective resolves a host inside two networks, three assertions
// each: the per-row cost of walks, search and exports.
func BenchmarkEffective(b *testing.B) {
	chain := []resolve.Prefix{
		pfx("10.0.0.0/16", tag("feed:a", "listed"), cls("feed:a", "malicious"), tag("ingest:x", "scan")),
		pfx("10.0.1.0/24", tag("feed:b", "listed"), cls("feed:b", "suspicious"), suppress("manual:alice", "scan")),
		pfx("10.0.1.7/32", tag("ingest:x", "ssh"), cls("ingest:x", "malicious"), note("ingest:x", "seen", now)),
	}
	target := netip.MustParsePrefix("10.0.1.7/32")
	b.ReportAllocs()
	for b.Loop() {
		resolve.Effective(target, chain, now)
	}
}

func TestSourceMatches(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		pattern, source string
		want            bool
	}{
		{"feed:*", "feed:ipsum", true},
		{"feed:*", "feed:", true},
		{"feed:*", "ingest:feed:x", false},
		{"feed:ipsum", "feed:ipsum", true},
		{"feed:ipsum", "feed:ipsum2", false},
		{"*", "manual:alice", true},
		{"manual:alice", "manual:*", false},
	} {
		require.Equal(t, tt.want, resolve.SourceMatches(tt.pattern, tt.source), "%s ~ %s", tt.pattern, tt.source)
	}
}

// Summarize applies the same rules as Effective: checked on every case of
// TestResolve's kind of input, by comparing with the full view.
func TestSummarizeAgreesWithEffective(t *testing.T) {
	t.Parallel()
	universe := []resolve.Prefix{
		pfx("192.0.2.0/24", tag("ingest:a", "supx"), suppress("manual:alice", "supx"), cls("feed:a", "malicious"), tag("manual:bob", "supx")),
		pfx("192.0.2.64/26", tag("ingest:b", "supx"), tag("ingest:b", "other"), cls("manual:carol", "benign")),
		pfx("192.0.2.5/32", tag("ingest:c", "supx"), expiring(tag("ingest:c", "gone"), -1), cls("ingest:c", "suspicious")),
		pfx("192.0.2.0/23", tag("feed:z", "wide"), tag("feed:y", "wide")),
	}
	for _, target := range []string{"192.0.2.70/32", "192.0.2.5/32", "192.0.2.64/26", "192.0.2.0/24", "192.0.3.1/32", "198.51.100.1/32"} {
		p := netip.MustParsePrefix(target)
		v := resolve.Effective(p, universe, now)
		sum := resolve.Summarize(p, universe, now)
		if len(sum.Tags) == 0 {
			require.Nil(t, sum.Tags, target)
			require.Empty(t, v.TagNames(), target)
		} else {
			require.Equal(t, v.TagNames(), sum.Tags, target)
		}
		require.Equal(t, v.Classification, sum.Classification, target)
		require.Equal(t, v.Sources, sum.Sources, target)
	}
	require.Equal(t, []string{"other", "supx", "wide"}, resolve.Summarize(netip.MustParsePrefix("192.0.2.70/32"), universe, now).Tags,
		"the manual supx survives its own suppress")
}

func BenchmarkSummarize(b *testing.B) {
	chain := []resolve.Prefix{
		pfx("10.0.0.0/16", tag("feed:a", "listed"), cls("feed:a", "malicious"), tag("ingest:x", "scan")),
		pfx("10.0.1.0/24", tag("feed:b", "listed"), cls("feed:b", "suspicious"), suppress("manual:alice", "scan")),
		pfx("10.0.1.7/32", tag("ingest:x", "ssh"), cls("ingest:x", "malicious"), note("ingest:x", "seen", now)),
	}
	target := netip.MustParsePrefix("10.0.1.7/32")
	b.ReportAllocs()
	for b.Loop() {
		resolve.Summarize(target, chain, now)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	expiring := func(src, v string, h int) resolve.Assertion {
		a := tag(src, v)
		a.ExpiresAt = at(h)
		return a
	}
	for _, tc := range []struct {
		name     string
		prefixes []resolve.Prefix
		want     *time.Time
		lasting  bool
	}{
		{"one assertion", []resolve.Prefix{pfx("198.51.100.7/32", expiring("feed:a", "bad", 1))}, at(1), false},
		{"the latest of containing and contained", []resolve.Prefix{
			pfx("198.51.100.0/24", expiring("feed:a", "bad", 3)),
			pfx("198.51.100.7/32", expiring("feed:b", "bad", 1), expiring("feed:c", "x", 2)),
		}, at(3), false},
		{"expired assertions do not count", []resolve.Prefix{
			pfx("198.51.100.7/32", expiring("feed:a", "bad", 1), expiring("feed:b", "bad", -1)),
		}, at(1), false},
		{"only expired assertions", []resolve.Prefix{pfx("198.51.100.7/32", expiring("feed:a", "bad", -2))}, nil, false},
		{"no expiry", []resolve.Prefix{pfx("198.51.100.7/32", expiring("feed:a", "bad", 1), tag("manual:alice", "bad"))}, nil, true},
		{"sightings do not last a view", []resolve.Prefix{{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Sightings: 1,
			Assertions: []resolve.Assertion{expiring("feed:a", "bad", 1)}}}, at(1), false},
		{"nothing", nil, nil, false},
	} {
		end, lasting := resolve.Expiry(tc.prefixes, now)
		require.Equal(t, tc.lasting, lasting, tc.name)
		if tc.want == nil {
			require.True(t, end.IsZero(), tc.name)
			continue
		}
		require.Equal(t, *tc.want, end, tc.name)
	}
}
