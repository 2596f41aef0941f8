package feed_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker/source/feed"
)

// loopback fetches from the tests' own servers, which the default policy
// refuses.
var loopback = feed.NewFetcher(feed.FetchPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})

func TestFetchHTTPConditional(t *testing.T) {
	t.Parallel()
	const body = "192.0.2.1\n198.51.100.0/24\n"
	var requests, notModified atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Last-Modified", "Sat, 22 Aug 2026 06:00:00 GMT")
		if r.Header.Get("If-None-Match") == `"v1"` {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	ctx := t.Context()

	rc, etag, lm, nm, err := loopback.Fetch(ctx, srv.URL+"/list.txt", "", "", 1<<20)
	require.NoError(t, err)
	require.False(t, nm)
	require.Equal(t, `"v1"`, etag)
	require.Equal(t, "Sat, 22 Aug 2026 06:00:00 GMT", lm)
	res, err := feed.Parse("list", feed.Options{}, rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.Len(t, res.Prefixes, 2)

	rc, etag2, lm2, nm, err := loopback.Fetch(ctx, srv.URL+"/list.txt", etag, lm, 1<<20)
	require.NoError(t, err)
	require.True(t, nm)
	require.Nil(t, rc)
	require.Equal(t, etag, etag2)
	require.Equal(t, lm, lm2)
	require.EqualValues(t, 2, requests.Load())
	require.EqualValues(t, 1, notModified.Load())
}

func TestFetchHTTPErrors(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("192.0.2.1\n", 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = io.WriteString(w, big)
		case "/chunked":
			// Flushing first forces chunked encoding: no Content-Length,
			// so the limit has to trip while reading.
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, big)
		case "/exact":
			_, _ = io.WriteString(w, big[:100])
		default:
			http.Error(w, "gone", http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	ctx := t.Context()

	_, _, _, _, err := loopback.Fetch(ctx, srv.URL+"/big", "", "", 100)
	require.ErrorIs(t, err, feed.ErrTooLarge)

	rc, _, _, _, err := loopback.Fetch(ctx, srv.URL+"/chunked", "", "", 100)
	require.NoError(t, err)
	_, err = io.ReadAll(rc)
	require.ErrorIs(t, err, feed.ErrTooLarge)
	require.NoError(t, rc.Close())

	rc, _, _, _, err = loopback.Fetch(ctx, srv.URL+"/exact", "", "", 100)
	require.NoError(t, err)
	got, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.Len(t, got, 100)
	require.NoError(t, rc.Close())

	_, _, _, _, err = loopback.Fetch(ctx, srv.URL+"/missing?key=secret", "", "", 100)
	require.ErrorContains(t, err, "404")
	require.NotContains(t, err.Error(), "secret")

	_, _, _, _, err = loopback.Fetch(ctx, "ftp://example.invalid/x", "", "", 100)
	require.ErrorContains(t, err, "unsupported scheme")

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, _, _, err = loopback.Fetch(canceled, srv.URL+"/big", "", "", 0)
	require.ErrorIs(t, err, context.Canceled)
}

func TestFetchFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "local list.txt")
	require.NoError(t, os.WriteFile(path, []byte("192.0.2.1\n2001:db8::/48\n"), 0o600))
	mod := time.Date(2026, 8, 22, 6, 0, 0, 0, time.UTC)
	require.NoError(t, os.Chtimes(path, mod, mod))
	u := (&url.URL{Scheme: "file", Path: path}).String()
	ctx := t.Context()
	files := feed.NewFetcher(feed.FetchPolicy{FileDir: dir})

	rc, etag, lm, nm, err := files.Fetch(ctx, u, "", "", 1<<20)
	require.NoError(t, err)
	require.False(t, nm)
	require.NotEmpty(t, etag)
	require.Equal(t, "Sat, 22 Aug 2026 06:00:00 GMT", lm)
	res, err := feed.Parse("list", feed.Options{}, rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.Len(t, res.Prefixes, 2)

	_, _, _, nm, err = files.Fetch(ctx, u, etag, "", 1<<20)
	require.NoError(t, err)
	require.True(t, nm)
	_, _, _, nm, err = files.Fetch(ctx, u, "", lm, 1<<20)
	require.NoError(t, err)
	require.True(t, nm)

	later := mod.Add(time.Hour)
	require.NoError(t, os.Chtimes(path, later, later))
	rc, etag2, _, nm, err := files.Fetch(ctx, u, etag, lm, 1<<20)
	require.NoError(t, err)
	require.False(t, nm)
	require.NotEqual(t, etag, etag2)
	require.NoError(t, rc.Close())

	_, _, _, _, err = files.Fetch(ctx, u, "", "", 5)
	require.ErrorIs(t, err, feed.ErrTooLarge)
	_, _, _, _, err = files.Fetch(ctx, "file:relative.txt", "", "", 0)
	require.ErrorContains(t, err, "absolute path")
	_, _, _, _, err = files.Fetch(ctx, "file://"+filepath.Join(dir, "nope"), "", "", 0)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestCatalog(t *testing.T) {
	t.Parallel()
	names := map[string]bool{}
	for _, f := range feed.Catalog() {
		require.False(t, names[f.Name], "duplicate %s", f.Name)
		names[f.Name] = true
		u, err := url.Parse(f.URL)
		require.NoError(t, err)
		require.Equal(t, "https", u.Scheme, f.Name)
		require.NoError(t, feed.Options{}.Validate(f.Format), f.Name)
		_, err = time.ParseDuration(f.Schedule)
		require.NoError(t, err, f.Name)
		require.Contains(t, []string{"malicious", "suspicious", "benign", "unknown"}, f.Classification)
		require.NotEmpty(t, f.Tag)
		require.NotEmpty(t, f.Description)
	}
	for _, want := range []string{"firehol_level1", "firehol_level2", "firehol_level3", "spamhaus_drop", "spamhaus_edrop", "ipsum", "tor_exits", "blocklist_de_all"} {
		require.True(t, names[want], want)
	}
}
