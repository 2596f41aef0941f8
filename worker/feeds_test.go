package worker_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/muninn/muninn/worker"
	"github.com/muninn/muninn/worker/source/feed"
)

// sharedDir finds ../shared next to the repository root, or MUNINN_SHARED_DIR.
func sharedDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("MUNINN_SHARED_DIR"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above the test")
		dir = parent
	}
	d := filepath.Join(filepath.Dir(dir), "shared")
	if _, err := os.Stat(filepath.Join(d, "data", "feeds")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run this: no shared data at %s (set MUNINN_SHARED_DIR)", d)
		}
		t.Skipf("no shared data at %s (set MUNINN_SHARED_DIR)", d)
	}
	return d
}

// feedServer serves named bodies with an ETag and honours If-None-Match.
type feedServer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	bodies   map[string][]byte
	requests atomic.Int32
	notMod   atomic.Int32
}

func newFeedServer(t testing.TB) *feedServer {
	t.Helper()
	f := &feedServer{bodies: map[string][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		body, ok := f.bodies[strings.TrimPrefix(r.URL.Path, "/")]
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if r.Header.Get("If-None-Match") == etag {
			f.notMod.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		_, _ = w.Write(body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *feedServer) set(name string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies[name] = body
}

func (f *feedServer) url(name string) string { return f.srv.URL + "/" + name }

type testBundle struct {
	st   *store.Store
	deps worker.Deps
	srv  *feedServer
	ctx  context.Context
}

func setup(t testing.TB) testBundle {
	t.Helper()
	st := storetest.Store(t)
	clock := time.Date(2026, 8, 22, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	srv := newFeedServer(t)
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return testBundle{st: st, srv: srv, ctx: context.Background(),
		deps: worker.Deps{Store: st, Logger: log, Now: now,
			Fetcher: feed.NewFetcher(feed.FetchPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})}}
}

type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (b testBundle) putFeed(t testing.TB, f store.Feed) {
	t.Helper()
	if f.URL == "" {
		f.URL = b.srv.url(f.Name)
	}
	_, err := b.st.PutFeed(b.ctx, f, "test")
	require.NoError(t, err)
}

// stored counts the distinct prefixes feed name asserts.
func (b testBundle) stored(t testing.TB, name string) map[netip.Prefix]bool {
	t.Helper()
	rows, err := b.st.Pool().Query(b.ctx, `SELECT DISTINCT p.prefix FROM assertions a JOIN prefixes p ON p.id = a.prefix_id
		WHERE a.source = $1`, store.FeedSource(name))
	require.NoError(t, err)
	defer rows.Close()
	out := map[netip.Prefix]bool{}
	for rows.Next() {
		var p netip.Prefix
		require.NoError(t, rows.Scan(&p))
		out[p] = true
	}
	require.NoError(t, rows.Err())
	return out
}

// uniqueEntries reads a list-shaped file independently of the feed parser:
// first field of each non-comment line, canonical, de-duplicated; entries
// wider than minBits (v4) or /32 (v6) are counted apart, as the default width
// guard rejects them.
func uniqueEntries(t testing.TB, path string, minBits int) (set map[netip.Prefix]bool, tooWide int) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	set = map[netip.Prefix]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		field := strings.Fields(strings.SplitN(line, ";", 2)[0])[0]
		var p netip.Prefix
		if strings.Contains(field, "/") {
			p = netip.MustParsePrefix(field).Masked()
		} else {
			a := netip.MustParseAddr(field)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if (p.Addr().Is4() && p.Bits() < minBits) || (p.Addr().Is6() && p.Bits() < 32) {
			tooWide++
			continue
		}
		set[p] = true
	}
	require.NoError(t, sc.Err())
	return set, tooWide
}

func TestRefreshSharedFeeds(t *testing.T) {
	t.Parallel()
	feeds := sharedDir(t) + "/data/feeds/"
	cases := []struct {
		name, file, format string
	}{
		{"level1", "firehol/firehol_level1.netset", "list"},
		{"level3", "firehol/firehol_level3.netset", "list"},
		{"drop", "spamhaus/drop.txt", "spamhaus"},
		{"dropv6", "spamhaus/dropv6.txt", "spamhaus"},
		{"ipsum", "ipsum/ipsum.txt", "ipsum"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			body, err := os.ReadFile(feeds + tc.file)
			require.NoError(t, err)
			b.srv.set(tc.name, body)
			b.putFeed(t, store.Feed{Name: tc.name, Format: tc.format, Tag: tc.name, Classification: "malicious", Enabled: true})
			want, tooWide := uniqueEntries(t, feeds+tc.file, 8)

			run, err := worker.RefreshFeed(b.ctx, b.deps, tc.name, false)
			require.NoError(t, err)
			require.Equal(t, store.RunOK, run.Status)
			got := b.stored(t, tc.name)
			require.Len(t, got, len(want))
			for p := range want {
				require.True(t, got[p], "missing %s", p)
			}
			require.EqualValues(t, len(want), run.Entries)
			// The /8 width guard rejects FireHOL level1's 224.0.0.0/3 and 0.0.0.0/8-wide bogons.
			require.EqualValues(t, tooWide, run.Rejected)
			if tc.name == "level1" {
				require.Positive(t, tooWide)
			}
		})
	}
}

func TestRefreshDiffNotModifiedAndMalformed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.set("f", []byte("# header\n192.0.2.1\n192.0.2.2\n192.0.2.3/32\n198.51.100.0/24\nnot-an-ip\n192.0.2.1\n2001:db8::1\n"))
	b.putFeed(t, store.Feed{Name: "f", Format: "list", Tag: "f", Enabled: true})

	run, err := worker.RefreshFeed(b.ctx, b.deps, "f", false)
	require.NoError(t, err)
	require.EqualValues(t, 5, run.Entries)
	require.EqualValues(t, 1, run.Rejected, "the malformed line is counted")
	require.EqualValues(t, 1, run.Duplicates)
	before := b.stored(t, "f")
	require.Len(t, before, 5)

	// Unchanged body: 304, recorded, nothing touched.
	run, err = worker.RefreshFeed(b.ctx, b.deps, "f", false)
	require.NoError(t, err)
	require.Equal(t, store.RunNotModified, run.Status)
	require.EqualValues(t, 1, b.srv.notMod.Load())
	require.Equal(t, before, b.stored(t, "f"))

	// Two removed, one added.
	b.srv.set("f", []byte("192.0.2.1\n198.51.100.0/24\n2001:db8::1\n203.0.113.7\n"))
	run, err = worker.RefreshFeed(b.ctx, b.deps, "f", false)
	require.NoError(t, err)
	require.EqualValues(t, 2, run.Removed)
	require.EqualValues(t, 1, run.Added)
	after := b.stored(t, "f")
	require.Len(t, after, 4)
	require.False(t, after[netip.MustParsePrefix("192.0.2.2/32")])
	require.False(t, after[netip.MustParsePrefix("192.0.2.3/32")])
	require.True(t, after[netip.MustParsePrefix("203.0.113.7/32")])

	runs, err := b.st.FeedRuns(b.ctx, "f", 10)
	require.NoError(t, err)
	require.Equal(t, []string{store.RunOK, store.RunNotModified, store.RunOK},
		[]string{runs[2].Status, runs[1].Status, runs[0].Status})
}

func TestRefreshGuardsAndFailures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var sb strings.Builder
	for i := 1; i <= 100; i++ {
		sb.WriteString(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).String() + "\n")
	}
	b.srv.set("g", []byte(sb.String()))
	b.putFeed(t, store.Feed{Name: "g", Format: "list", Tag: "g", Enabled: true, MaxDropShare: 0.2, MaxPrefixLenV4: 24})
	_, err := worker.RefreshFeed(b.ctx, b.deps, "g", false)
	require.NoError(t, err)

	// A truncated download (30 of 100) trips the 20% drop guard.
	b.srv.set("g", []byte(strings.Join(strings.Split(sb.String(), "\n")[:30], "\n")+"\n10.0.0.0/16\n"))
	run, err := worker.RefreshFeed(b.ctx, b.deps, "g", false)
	require.ErrorIs(t, err, store.ErrDropGuard)
	require.Equal(t, store.RunRefused, run.Status)
	require.Len(t, b.stored(t, "g"), 100)
	// Forced, it applies; the /16 is wider than the feed's /24 guard.
	run, err = worker.RefreshFeed(b.ctx, b.deps, "g", true)
	require.NoError(t, err)
	require.EqualValues(t, 1, run.Rejected)
	require.Len(t, b.stored(t, "g"), 30)

	// A failing fetch is a failed run; state stays.
	b.putFeed(t, store.Feed{Name: "g", URL: b.srv.url("missing"), Format: "list", Tag: "g", Enabled: true})
	run, err = worker.RefreshFeed(b.ctx, b.deps, "g", false)
	require.Error(t, err)
	require.Equal(t, store.RunFailed, run.Status)
	require.Len(t, b.stored(t, "g"), 30)
	f, err := b.st.FeedByName(b.ctx, "g")
	require.NoError(t, err)
	require.Contains(t, f.LastError, "404")
}

// A feed URL's secrets never reach a run error, the log or the audit log, and
// the default policy refuses loopback feeds.
func TestRefreshRedactsAndRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var logged strings.Builder
	b.deps.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	b.putFeed(t, store.Feed{Name: "s", URL: b.srv.url("missing") + "?license_key=topsecret", Format: "list", Tag: "s", Enabled: true})
	run, err := worker.RefreshFeed(b.ctx, b.deps, "s", false)
	require.Error(t, err)
	require.Equal(t, "worker: refresh feed s: feed: fetch "+b.srv.url("missing")+"?license_key=xxxxx: unexpected status 404 Not Found", run.Error)
	var audit string
	require.NoError(t, b.st.Pool().QueryRow(b.ctx, `SELECT after::text FROM audit WHERE action = 'feed.put' AND object = 'feed/s'`).Scan(&audit))
	require.Contains(t, audit, "license_key=xxxxx")
	require.NotContains(t, audit, "topsecret")

	strict := b.deps
	strict.Fetcher = nil // the default policy
	run, err = worker.RefreshFeed(b.ctx, strict, "s", false)
	require.ErrorIs(t, err, feed.ErrForbiddenDestination)
	require.Equal(t, store.RunFailed, run.Status)
	require.Contains(t, run.Error, "127.0.0.1 is a loopback address (MUNINN_FEED_ALLOW_NETWORKS can allow it)")
	require.NotContains(t, run.Error+logged.String(), "topsecret")
}

type pgxTx = pgx.Tx
