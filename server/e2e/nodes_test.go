//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// revocationReach is how soon a token revoked or a bouncer deleted through one
// serve process is refused by every other one: 5 s (README "Running several
// nodes"), counted from the other's last lookup, which came before the
// revocation; the half second covers the polls' own round trips.
const revocationReach = 5*time.Second + 500*time.Millisecond

// cluster is what the README's "Running several nodes" describes: two serve
// processes (each with River workers, as serve runs by default) and one worker
// process on one database. Each has its own connection pool, index, render hub,
// token caches and River client, as separate processes would; they share nothing
// but the database.
type cluster struct {
	a, b *server
	// regs are the metric registries of a, b and the worker process.
	regs [3]*prometheus.Registry
}

func startCluster(t *testing.T, log *slog.Logger) *cluster {
	t.Helper()
	url := storetest.URL(t)
	open := func() *store.Store {
		st, err := store.Open(context.Background(), url, 10, log)
		require.NoError(t, err)
		t.Cleanup(st.Close)
		return st
	}
	c := &cluster{regs: [3]*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry(), prometheus.NewRegistry()}}
	c.a = startNode(t, open(), log, c.regs[0], nil)
	c.b = startNode(t, open(), log, c.regs[1], c.a)
	startWorkers(t, open(), log, c.regs[2])
	return c
}

// worked sums muninn_jobs_worked_total of kind over every process of c.
func (c *cluster) worked(t *testing.T, kind string) float64 {
	t.Helper()
	var n float64
	for _, reg := range c.regs {
		families, err := reg.Gather()
		require.NoError(t, err)
		for _, f := range families {
			if f.GetName() != "muninn_jobs_worked_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "kind" && l.GetValue() == kind {
						n += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return n
}

// fakeBouncer is the bouncer daemon's syncer with an in-memory firewall.
type fakeBouncer struct {
	syncer *bouncer.Syncer
	fw     *bouncer.Fake
}

func startFakeBouncer(t *testing.T, url, key string, log *slog.Logger) *fakeBouncer {
	t.Helper()
	b := &fakeBouncer{fw: bouncer.NewFake()}
	b.syncer = bouncer.NewSyncer(bouncer.NewClient(url, key, nil), b.fw, bouncerConfig(t.TempDir()), log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.syncer.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

// ruleset returns the state of ruleset name the bouncer enforces, as its render.
func (b *fakeBouncer) ruleset(name string) (bouncer.Render, bool) {
	st := b.fw.State()
	if st == nil {
		return bouncer.Render{}, false
	}
	rs := st.Ruleset(name)
	if rs == nil {
		return bouncer.Render{}, false
	}
	return rs.Render(), true
}

// TestSeveralNodes: two serve processes and a worker on one database. An
// ingest through one and an override through the other reach a bouncer on each,
// which converge on the same render versions and content; feed refreshes
// enqueued through both run exactly once across the three River clients; a
// token revoked and a bouncer deleted through one are refused by the other
// within revocationReach.
func TestSeveralNodes(t *testing.T) {
	t.Parallel()
	log := testLogger(t)
	c := startCluster(t, log)
	c.a.putRuleset(t, webRuleset)
	keyA := c.a.createBouncer(t, "node-a", "web")
	keyB := c.b.createBouncer(t, "node-b", "web")
	ba := startFakeBouncer(t, c.a.url, keyA, log)
	bb := startFakeBouncer(t, c.b.url, keyB, log)

	t.Run("converge", func(t *testing.T) {
		c.a.ingest(t, "203.0.113.16/28", badTag)
		c.b.tag(t, "198.51.100.10", badTag)
		c.b.tag(t, "2001:db8:1000::10", badTag)
		want := [][2][]string{{{"198.51.100.10/32", "203.0.113.16/28"}, {"2001:db8:1000::10/128"}}}
		var ra, rb bouncer.Render
		eventually(t, settle, func() bool {
			var okA, okB bool
			ra, okA = ba.ruleset("web")
			rb, okB = bb.ruleset("web")
			return okA && okB && ra.Version == rb.Version && equalSets(ruleSets(ra), want) && equalSets(ruleSets(rb), want)
		}, "the bouncers did not converge: A at %d %v, B at %d %v", ra.Version, ruleSets(ra), rb.Version, ruleSets(rb))
		require.Equal(t, ra, rb, "both bouncers enforce the same render")
		// Both serve processes answer the same version with the same content.
		for _, s := range []*server{c.a, c.b} {
			r := s.settleRender(t, "web")
			require.Equal(t, ra.Version, r.Version)
			require.Equal(t, ra.Hash, r.Hash)
		}
	})

	t.Run("jobs run once", func(t *testing.T) {
		const feeds = 12
		var mu sync.Mutex
		fetched := map[string]int{}
		feedSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			fetched[r.URL.Path]++
			mu.Unlock()
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "# nodes\n198.51.100.200\n")
		}))
		t.Cleanup(feedSrv.Close)
		before := c.worked(t, "feed_refresh")
		for i := range feeds {
			s := []*server{c.a, c.b}[i%2]
			name := fmt.Sprintf("nodes%02d", i)
			s.mustCall(t, s.admin, http.MethodPut, "/api/v1/feeds/"+name, "application/json", jsonBody(t, map[string]any{
				"url": feedSrv.URL + "/" + name, "format": "list", "tag": "nodes", "schedule": "24h", "enabled": false}), http.StatusCreated)
			s.mustCall(t, s.admin, http.MethodPost, "/api/v1/feeds/"+name+"/refresh", "", nil, http.StatusAccepted)
		}
		runs := func(name string) int {
			var out struct {
				Runs []json.RawMessage `json:"runs"`
			}
			require.NoError(t, json.Unmarshal(c.b.mustCall(t, c.b.admin, http.MethodGet, "/api/v1/feeds/"+name+"/runs", "", nil, http.StatusOK), &out))
			return len(out.Runs)
		}
		eventually(t, settle, func() bool {
			for i := range feeds {
				if runs(fmt.Sprintf("nodes%02d", i)) == 0 {
					return false
				}
			}
			return c.worked(t, "feed_refresh")-before == feeds
		}, "the refreshes did not all run: %v jobs worked", c.worked(t, "feed_refresh")-before)
		// Every job ran in exactly one process: one fetch and one run per feed.
		for i := range feeds {
			name := fmt.Sprintf("nodes%02d", i)
			require.Equal(t, 1, runs(name), name)
			mu.Lock()
			require.Equal(t, 1, fetched["/"+name], name)
			mu.Unlock()
		}
		require.Equal(t, float64(feeds), c.worked(t, "feed_refresh")-before)
		var busy int
		for _, reg := range c.regs {
			if workedIn(t, reg, "feed_refresh") > 0 {
				busy++
			}
		}
		t.Logf("feed refreshes spread over %d of 3 processes", busy)
	})

	t.Run("revocation", func(t *testing.T) {
		var tok struct {
			ID    int64  `json:"id"`
			Token string `json:"token"`
		}
		require.NoError(t, json.Unmarshal(c.a.mustCall(t, c.a.admin, http.MethodPost, "/api/v1/tokens", "application/json",
			jsonBody(t, map[string]any{"name": "revoked", "role": "reader"}), http.StatusCreated), &tok))
		// B has the token in its cache before the revocation.
		c.b.mustCall(t, tok.Token, http.MethodGet, "/api/v1/tags", "", nil, http.StatusOK)
		c.a.mustCall(t, c.a.admin, http.MethodDelete, "/api/v1/tokens/"+strconv.FormatInt(tok.ID, 10), "", nil, http.StatusNoContent)
		start := time.Now()
		eventually(t, revocationReach, func() bool {
			status, _ := c.b.call(t, tok.Token, http.MethodGet, "/api/v1/tags", "", nil)
			return status == http.StatusUnauthorized
		}, "a token revoked through A still works on B after %s", revocationReach)
		t.Logf("token revocation reached B after %s", time.Since(start).Round(time.Millisecond))

		// A bouncer deleted through A: its key is refused by B.
		key := c.a.createBouncer(t, "doomed", "web")
		poll := func() int {
			req, err := http.NewRequest(http.MethodGet, c.b.url+"/api/v1/bouncer/render", nil)
			require.NoError(t, err)
			req.Header.Set("X-Api-Key", key)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode
		}
		require.Equal(t, http.StatusOK, poll())
		c.a.mustCall(t, c.a.admin, http.MethodDelete, "/api/v1/bouncers/doomed", "", nil, http.StatusNoContent)
		start = time.Now()
		eventually(t, revocationReach, func() bool { return poll() == http.StatusUnauthorized },
			"a bouncer deleted through A is still served by B after %s", revocationReach)
		t.Logf("bouncer deletion reached B after %s", time.Since(start).Round(time.Millisecond))
	})
}

// workedIn is muninn_jobs_worked_total of kind in one registry.
func workedIn(t *testing.T, reg *prometheus.Registry, kind string) float64 {
	t.Helper()
	return (&cluster{regs: [3]*prometheus.Registry{reg, prometheus.NewRegistry(), prometheus.NewRegistry()}}).worked(t, kind)
}

// ruleSets lists the prefixes of each rule of r, v4 and v6.
func ruleSets(r bouncer.Render) [][2][]string {
	var out [][2][]string
	for _, rule := range r.Rules {
		out = append(out, [2][]string{rule.V4, rule.V6})
	}
	return out
}

func equalSets(a, b [][2][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		for j := range 2 {
			if fmt.Sprint(a[i][j]) != fmt.Sprint(b[i][j]) {
				return false
			}
		}
	}
	return true
}
