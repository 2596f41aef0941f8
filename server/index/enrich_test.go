package index_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// RDAP networks and hostnames are loaded at start and follow their writers'
// changes; a lookup needs no SQL.
func TestEnrichmentFollowsWriters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	require.NoError(t, b.st.PutRDAPNetwork(b.ctx, store.RDAPNetwork{Network: prefix("192.0.2.0/24"), Handle: "NET-A", Org: "Org A", FetchedAt: now}))
	require.NoError(t, b.st.PutHostnames(b.ctx, addr("192.0.2.7"), "ptr", []string{"old.example."}, now.Add(-time.Hour)))
	ix := run(t, b.st) // loads what is there
	s := ix.Snapshot()
	r, ok := s.RDAP(prefix("192.0.2.7/32"))
	require.True(t, ok)
	require.Equal(t, store.RDAPFacts{Network: prefix("192.0.2.0/24"), Handle: "NET-A", Org: "Org A", FetchedAt: now}, r)
	require.Equal(t, []store.Hostname{{Name: "old.example.", Source: "ptr", LastSeen: now.Add(-time.Hour)}}, s.Hostnames(addr("192.0.2.7")))

	// Then follows: a more specific network, a refreshed one, a new name.
	require.NoError(t, b.st.PutRDAPNetwork(b.ctx, store.RDAPNetwork{Network: prefix("192.0.2.0/26"), Handle: "NET-B", Org: "Org B", FetchedAt: now}))
	require.NoError(t, b.st.PutRDAPNetwork(b.ctx, store.RDAPNetwork{Network: prefix("192.0.2.0/24"), Handle: "NET-A2", Org: "Org A", FetchedAt: now}))
	require.NoError(t, b.st.PutHostnames(b.ctx, addr("192.0.2.7"), "ptr", []string{"new.example."}, now))
	require.NoError(t, b.st.PutHostnames(b.ctx, addr("2001:db8::7"), "ptr", []string{"six.example."}, now))
	s = caughtUp(t, b, ix)
	r, ok = s.RDAP(prefix("192.0.2.7/32"))
	require.True(t, ok)
	require.Equal(t, "NET-B", r.Handle, "the most specific network")
	r, ok = s.RDAP(prefix("192.0.2.64/26"))
	require.True(t, ok)
	require.Equal(t, "NET-A2", r.Handle, "the refreshed answer")
	_, ok = s.RDAP(prefix("198.51.100.1/32"))
	require.False(t, ok)
	require.Equal(t, []store.Hostname{{Name: "new.example.", Source: "ptr", LastSeen: now}, {Name: "old.example.", Source: "ptr", LastSeen: now.Add(-time.Hour)}},
		s.Hostnames(addr("192.0.2.7")), "newest first")
	require.Equal(t, "new.example.", s.RDNS(addr("192.0.2.7")))
	require.Equal(t, "six.example.", s.RDNS(addr("2001:db8::7")))
	require.Equal(t, "", s.RDNS(addr("192.0.2.8")))
	require.Zero(t, s.Len(), "enrichment stores no prefixes")
}

// Each address's last lookup attempts are loaded at start and follow their
// writer: GET /ips shows them without SQL.
func TestEnrichAttemptsFollowWriters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	a := addr("192.0.2.9")
	require.NoError(t, b.st.RecordEnrichAttempt(b.ctx, store.EnrichPTR, a, at, store.EnrichOK, ""))
	ix := run(t, b.st)
	require.Equal(t, []store.EnrichAttempt{{Kind: store.EnrichPTR, AttemptedAt: at, Outcome: store.EnrichOK}}, ix.Snapshot().EnrichAttempts(a))

	require.NoError(t, b.st.RecordEnrichAttempt(b.ctx, store.EnrichRDAP, a, at.Add(time.Minute), store.EnrichError, "rdap: 503 Service Unavailable"))
	require.NoError(t, b.st.RecordEnrichAttempt(b.ctx, store.EnrichPTR, a, at.Add(2*time.Minute), store.EnrichNotFound, "no PTR record"))
	require.NoError(t, b.st.RecordEnrichAttempt(b.ctx, store.EnrichRDAP, addr("2001:db8::1"), at, store.EnrichSkipped, "documentation address"))
	s := caughtUp(t, b, ix)
	want := []store.EnrichAttempt{
		{Kind: store.EnrichRDAP, AttemptedAt: at.Add(time.Minute), Outcome: store.EnrichError, Error: "rdap: 503 Service Unavailable"},
		{Kind: store.EnrichPTR, AttemptedAt: at.Add(2 * time.Minute), Outcome: store.EnrichNotFound, Error: "no PTR record"},
	}
	require.Equal(t, want, s.EnrichAttempts(a), "rdap before ptr, each the latest")
	require.Equal(t, want, s.EnrichAttempts(netip.AddrFrom16(a.As16())), "an IPv4-mapped address is the IPv4 one")
	require.Nil(t, s.EnrichAttempts(addr("192.0.2.10")))
	require.NoError(t, ix.Reload(b.ctx))
	require.Equal(t, want, ix.Snapshot().EnrichAttempts(a), "a full load reads the same")
}

// CatchUp from many goroutines while the follower applies the same changes:
// the sequence of published snapshots never goes backwards and every change
// is applied.
func TestConcurrentCatchUpKeepsSequenceOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ix := run(t, b.st)
	now := time.Now().UTC()
	var (
		mu   sync.Mutex
		seqs []int64
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			ch := ix.Changed()
			s := ix.Snapshot()
			mu.Lock()
			seqs = append(seqs, s.Seq())
			mu.Unlock()
			select {
			case <-ch:
			case <-stop:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				p := prefix("192.0.2.0/24")
				if w%2 == 1 {
					p = prefix("198.51.100.0/24")
				}
				obs := []store.Observation{ob(p.String(), "ingest:w", now.Add(time.Duration(i)*time.Second), "t")}
				if err := b.st.Ingest(b.ctx, obs, "test"); err != nil {
					t.Error(err)
					return
				}
				before := ix.Snapshot().Seq()
				if err := ix.CatchUp(b.ctx); err != nil {
					t.Error(err)
					return
				}
				if after := ix.Snapshot().Seq(); after < before {
					t.Errorf("the sequence went back from %d to %d", before, after)
				}
			}
		}()
	}
	wg.Wait()
	s := caughtUp(t, b, ix)
	close(stop)
	<-done
	// Ingests waiting together share a merge (one change), so 40 ingests
	// make at most 40 changes: the index has every one the store recorded.
	want, err := b.st.ChangeSeq(b.ctx)
	require.NoError(t, err)
	require.Equal(t, want, s.Seq())
	require.LessOrEqual(t, want, int64(40))
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seqs); i++ {
		require.GreaterOrEqual(t, seqs[i], seqs[i-1], "published sequences: %v", seqs)
	}
	v, ok := s.Lookup(addr("192.0.2.1"))
	require.True(t, ok)
	require.Equal(t, now.Add(9*time.Second).Truncate(time.Microsecond), v.LastSeen.Truncate(time.Microsecond))
	require.Equal(t, []string{"ingest:w"}, v.Sources)
	var n int
	s.Walk(func(netip.Prefix, resolve.View) bool { n++; return true })
	require.Equal(t, 2, n)
}

// NetworkWithPrefixes lists the existing stored prefixes containing the
// target, most specific first, each with only its live assertions: an
// assertion that expired since the load is left out.
func TestNetworkWithPrefixes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	clock := now
	exp := now.Add(time.Minute)
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{
		ob("192.0.2.0/24", "ingest:a", now, "wide"),
		{Prefix: prefix("192.0.2.0/26"), Source: "ingest:b", Tags: []string{"brief"}, SeenAt: now, ExpiresAt: &exp},
		ob("192.0.2.0/26", "ingest:c", now, "stays"),
	}, "test"))
	var mu sync.Mutex
	ix := index.New(b.st, logger(t), func() time.Time { mu.Lock(); defer mu.Unlock(); return clock })
	require.NoError(t, ix.Reload(b.ctx))
	v, ps, ok := ix.Snapshot().NetworkWithPrefixes(prefix("192.0.2.7/32"))
	require.True(t, ok)
	require.Equal(t, []string{"brief", "stays", "wide"}, v.TagNames())
	require.Equal(t, []netip.Prefix{prefix("192.0.2.0/26"), prefix("192.0.2.0/24")}, []netip.Prefix{ps[0].Prefix, ps[1].Prefix})
	require.Len(t, ps[0].Assertions, 2)

	mu.Lock()
	clock = exp
	mu.Unlock()
	ix.Expire()
	v, ps, ok = ix.Snapshot().NetworkWithPrefixes(prefix("192.0.2.7/32"))
	require.True(t, ok)
	require.Equal(t, []string{"stays", "wide"}, v.TagNames())
	require.Len(t, ps, 2)
	require.Equal(t, []resolve.Assertion{{Kind: "tag", Source: "ingest:c", Value: "stays", FirstSeen: now, LastSeen: now}}, ps[0].Assertions)
	_, ps, ok = ix.Snapshot().NetworkWithPrefixes(prefix("198.51.100.1/32"))
	require.False(t, ok)
	require.Empty(t, ps)
}
