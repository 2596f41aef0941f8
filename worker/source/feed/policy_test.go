package feed_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker/source/feed"
)

// The default policy refuses every special-purpose destination, checked on
// the address dialled: a literal, a name that resolves to one, or a
// redirect from an allowed server.
func TestFetchRefusesSpecialDestinations(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	strict := feed.NewFetcher(feed.FetchPolicy{})
	for _, c := range []struct{ url, want string }{
		{"http://127.0.0.1:1/x", "127.0.0.1 is a loopback address"},
		{"http://[::1]:1/x", "::1 is a loopback address"},
		{"http://10.1.2.3/x", "10.1.2.3 is a private address"},
		{"http://192.168.0.1/x", "192.168.0.1 is a private address"},
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"},
		{"http://[fe80::1]/x", "fe80::1 is a link-local address"},
		{"http://224.0.0.1/x", "224.0.0.1 is a multicast address"},
		{"http://0.0.0.0/x", "0.0.0.0 is an unspecified address"},
		{"http://[::ffff:127.0.0.1]:1/x", "127.0.0.1 is a loopback address"},
		{"http://localhost:1/x", "is a loopback address"},
		{"http://100.64.0.1/x", "100.64.0.1 is a shared (carrier-grade NAT) address"},
	} {
		_, _, _, _, err := strict.Fetch(ctx, c.url, "", "", 0)
		require.ErrorIs(t, err, feed.ErrForbiddenDestination, c.url)
		require.ErrorContains(t, err, c.want, c.url)
		require.ErrorContains(t, err, "MUNINN_FEED_ALLOW_NETWORKS can allow it", c.url)
	}

	// A redirect from an allowed server to a refused one is refused at the dial.
	inner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("192.0.2.1\n")) }))
	t.Cleanup(inner.Close)
	outer := httptest.NewServer(http.RedirectHandler(inner.URL+"/list", http.StatusFound))
	t.Cleanup(outer.Close)
	outerAddr := netip.MustParseAddrPort(outer.Listener.Addr().String())
	// Only the outer server's own address is allowed, not the inner one's
	// (another loopback address).
	innerLn, err := net.Listen("tcp", "127.0.0.2:0")
	if err == nil {
		inner2 := httptest.NewUnstartedServer(inner.Config.Handler)
		inner2.Listener.Close()
		inner2.Listener = innerLn
		inner2.Start()
		t.Cleanup(inner2.Close)
		outer2 := httptest.NewServer(http.RedirectHandler(inner2.URL+"/list", http.StatusFound))
		t.Cleanup(outer2.Close)
		onlyOuter := feed.NewFetcher(feed.FetchPolicy{Allow: []netip.Prefix{netip.PrefixFrom(outerAddr.Addr(), 32)}})
		_, _, _, _, err = onlyOuter.Fetch(ctx, outer2.URL+"/start", "", "", 0)
		require.ErrorIs(t, err, feed.ErrForbiddenDestination)
		require.ErrorContains(t, err, "127.0.0.2 is a loopback address")
	}
	// With the allow-list naming loopback, both work.
	rc, _, _, _, err := loopback.Fetch(ctx, outer.URL+"/start", "", "", 0)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
}

// A peer that is not an HTTP server used to have its first bytes quoted in
// the run error ("malformed HTTP response \"SSH-2.0-… db_password=…\"").
func TestFetchErrorsDoNotQuoteThePeer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6 db_password=hunter2\r\n"))
			_ = c.Close()
		}
	}()
	_, _, _, _, err = loopback.Fetch(t.Context(), "http://"+ln.Addr().String()+"/feed?license_key=topsecret", "", "", 0)
	require.Error(t, err)
	require.Equal(t, "feed: fetch http://"+ln.Addr().String()+"/feed?license_key=xxxxx: the server's answer is not valid HTTP", err.Error())

	// Nor the reason phrase of a status line.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, buf, _ := w.(http.Hijacker).Hijack()
		_, _ = buf.WriteString("HTTP/1.1 500 db_password=hunter2\r\nContent-Length: 0\r\n\r\n")
		_ = buf.Flush()
		_ = conn.Close()
	}))
	t.Cleanup(srv.Close)
	_, _, _, _, err = loopback.Fetch(t.Context(), srv.URL+"/x", "", "", 0)
	require.EqualError(t, err, "feed: fetch "+srv.URL+"/x: unexpected status 500 Internal Server Error")

	// A connection refused says so.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := closed.Addr().String()
	closed.Close()
	_, _, _, _, err = loopback.Fetch(context.Background(), "http://"+addr+"/x", "", "", 0)
	require.EqualError(t, err, "feed: fetch http://"+addr+"/x: could not connect: connection refused")
}

// file:// reads only under the configured directory (it read /etc/shadow).
func TestFetchFileOnlyUnderTheFeedDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	feeds := filepath.Join(dir, "feeds")
	require.NoError(t, os.Mkdir(feeds, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(feeds, "ok.txt"), []byte("192.0.2.1\n"), 0o600))
	secret := filepath.Join(dir, "secret.txt")
	require.NoError(t, os.WriteFile(secret, []byte("root:x\n"), 0o600))
	require.NoError(t, os.Symlink(secret, filepath.Join(feeds, "link.txt")))
	ctx := t.Context()
	f := feed.NewFetcher(feed.FetchPolicy{FileDir: feeds})

	rc, _, _, _, err := f.Fetch(ctx, "file://"+filepath.Join(feeds, "ok.txt"), "", "", 0)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	for _, u := range []string{"file:///etc/shadow", "file://" + secret, "file://" + feeds + "/../secret.txt", "file://" + filepath.Join(feeds, "link.txt")} {
		_, _, _, _, err = f.Fetch(ctx, u, "", "", 0)
		require.ErrorIs(t, err, feed.ErrOutsideFileDir, u)
	}
	_, _, _, _, err = f.Fetch(ctx, "file://"+feeds, "", "", 0)
	require.ErrorContains(t, err, "not a regular file")
	// A relative directory (make run's ./data/feeds) works too.
	wd, err := os.Getwd()
	require.NoError(t, err)
	rel, err := filepath.Rel(wd, feeds)
	require.NoError(t, err)
	require.False(t, filepath.IsAbs(rel))
	rc, _, _, _, err = feed.NewFetcher(feed.FetchPolicy{FileDir: rel}).Fetch(ctx, "file://"+filepath.Join(feeds, "ok.txt"), "", "", 0)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	_, _, _, _, err = feed.NewFetcher(feed.FetchPolicy{FileDir: rel}).Fetch(ctx, "file://"+secret, "", "", 0)
	require.ErrorIs(t, err, feed.ErrOutsideFileDir)
	// No directory configured: no file feeds at all.
	_, _, _, _, err = feed.NewFetcher(feed.FetchPolicy{}).Fetch(ctx, "file://"+filepath.Join(feeds, "ok.txt"), "", "", 0)
	require.ErrorIs(t, err, feed.ErrOutsideFileDir)
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://example.org/list.txt":                              "https://example.org/list.txt",
		"https://download.example/geo?license_key=abc123&suffix=gz": "https://download.example/geo?license_key=xxxxx&suffix=xxxxx",
		"https://user:pa55@example.org/x":                           "https://xxxxx:xxxxx@example.org/x",
		"https://tok3n@example.org/x?a=1&a=2":                       "https://xxxxx@example.org/x?a=xxxxx&a=xxxxx",
		"https://example.org/x#frag-secret":                         "https://example.org/x",
		"http://[::1]:8080/x?key=%ZZ":                               "http://[::1]:8080/x?xxxxx",
		"https://exa mple.org/x?key=secret":                         "(a URL that does not parse)",
		"file:///var/lib/muninn/feeds/list.txt":                     "file:///var/lib/muninn/feeds/list.txt",
	} {
		require.Equal(t, want, feed.RedactURL(in), in)
	}
}
