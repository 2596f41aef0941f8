package rdap_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker/source/rdap"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeRDAP answers /ip/{addr} like a RIR's RDAP service: the testdata
// objects for their networks, a generated /32 network for 192.0.2.128/25
// addresses, 404 for 198.18.0.0/15 and 500 for 198.51.100.0/24.
type fakeRDAP struct {
	srv      *httptest.Server
	requests atomic.Int32
}

func newFakeRDAP(t *testing.T) *fakeRDAP {
	t.Helper()
	arin, err := os.ReadFile(filepath.Join("testdata", "rdap_arin_192.0.2.0.json"))
	require.NoError(t, err)
	apnic, err := os.ReadFile(filepath.Join("testdata", "rdap_apnic_203.0.113.0.json"))
	require.NoError(t, err)
	f := &fakeRDAP{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		q, ok := strings.CutPrefix(r.URL.Path, "/ip/")
		addr, err := netip.ParseAddr(q)
		if !ok || err != nil {
			http.Error(w, `{"errorCode":400,"title":"bad request"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/rdap+json")
		switch {
		case netip.MustParsePrefix("192.0.2.128/25").Contains(addr):
			fmt.Fprintf(w, `{"objectClassName":"ip network","handle":"NET-%s","startAddress":"%s","endAddress":"%s","ipVersion":"v4","name":"HOST-%s","country":"US"}`, addr, addr, addr, addr)
		case netip.MustParsePrefix("192.0.2.0/24").Contains(addr):
			_, _ = w.Write(arin)
		case netip.MustParsePrefix("203.0.113.0/25").Contains(addr), netip.MustParsePrefix("203.0.113.128/26").Contains(addr):
			_, _ = w.Write(apnic)
		case netip.MustParsePrefix("2001:db8::/32").Contains(addr):
			_, _ = w.Write([]byte(`{"objectClassName":"ip network","handle":"2001:db8::/32","startAddress":"2001:db8::","endAddress":"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff","ipVersion":"v6","name":"DOC-V6","country":"ZZ"}`))
		case netip.MustParsePrefix("3fff::/20").Contains(addr):
			_, _ = w.Write([]byte(`{"objectClassName":"ip network","handle":"3fff::/20","startAddress":"3fff::","endAddress":"3fff:0fff:ffff:ffff:ffff:ffff:ffff:ffff","ipVersion":"v6","name":"DOC-V6-2","country":"ZZ"}`))
		case netip.MustParsePrefix("198.51.100.0/24").Contains(addr):
			http.Error(w, `{"errorCode":500,"title":"internal error"}`, http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errorCode":404,"title":"Not Found","description":["no network"]}`))
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// fakeWhois serves one canned answer per connection on 127.0.0.1 and records
// the queries.
type fakeWhois struct {
	ln      net.Listener
	mu      sync.Mutex
	queries []string
}

func newFakeWhois(t *testing.T, answer string) *fakeWhois {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeWhois{ln: ln}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(conn).ReadString('\n')
			f.mu.Lock()
			f.queries = append(f.queries, line)
			f.mu.Unlock()
			_, _ = conn.Write([]byte(answer))
			conn.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return f
}

type testBundle struct {
	rdap   *fakeRDAP
	clock  *clock
	waits  *atomic.Int32
	client *rdap.Client
}

func setup(t *testing.T, mod func(*rdap.Config)) testBundle {
	t.Helper()
	b := testBundle{rdap: newFakeRDAP(t), clock: &clock{now: time.Date(2026, 8, 22, 12, 0, 0, 0, time.UTC)}, waits: &atomic.Int32{}}
	base, err := url.Parse(b.rdap.srv.URL + "/")
	require.NoError(t, err)
	cfg := rdap.Config{
		HTTP:     b.rdap.srv.Client(),
		BaseURL:  base,
		Rate:     1,
		Burst:    2,
		CacheTTL: time.Hour,
		Now:      b.clock.Now,
		// The limiter's waits advance the fake clock: delays are counted,
		// never slept.
		Wait: func(ctx context.Context, d time.Duration) error {
			b.waits.Add(1)
			b.clock.Add(d)
			return ctx.Err()
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	b.client, err = rdap.New(cfg)
	require.NoError(t, err)
	return b
}

func TestLookupRDAP(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	n, err := b.client.Lookup(ctx, netip.MustParseAddr("192.0.2.10"))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, n.Prefixes)
	require.Equal(t, "NET-192-0-2-0-1", n.Handle)
	require.Equal(t, "EXAMPLE-NET-1", n.Name)
	require.Equal(t, "Example Networks Inc.", n.Org)
	require.Equal(t, "abuse@example.net", n.AbuseEmail)
	require.Equal(t, "arin", n.Registry)
	require.Equal(t, rdap.SourceRDAP, n.Source)
	require.True(t, json.Valid(n.Raw))
	require.Contains(t, string(n.Raw), "NET-192-0-2-0-1")

	n, err = b.client.Lookup(ctx, netip.MustParseAddr("203.0.113.9"))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/25"), netip.MustParsePrefix("203.0.113.128/26")}, n.Prefixes)
	require.Equal(t, "Sample Cloud K.K.", n.Org)
	require.Equal(t, "JP", n.Country)
	require.Equal(t, "abuse@cloud.example", n.AbuseEmail)
	require.Equal(t, "apnic", n.Registry)

	n, err = b.client.Lookup(ctx, netip.MustParseAddr("2001:db8::1"))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, n.Prefixes)
	require.Equal(t, "apnic", n.Registry, "inside APNIC's 2001:c00::/23")

	n, err = b.client.Lookup(ctx, netip.MustParseAddr("3fff::1"))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("3fff::/20")}, n.Prefixes)
	require.Equal(t, "arin", n.Registry, "not in the bootstrap: fallback registry")
}

func TestLookupCacheByNetwork(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := t.Context()
	_, err := b.client.Lookup(ctx, netip.MustParseAddr("203.0.113.9"))
	require.NoError(t, err)
	require.EqualValues(t, 1, b.rdap.requests.Load())

	// Another address in the second CIDR of the same range is a hit.
	n, err := b.client.Lookup(ctx, netip.MustParseAddr("203.0.113.150"))
	require.NoError(t, err)
	require.Equal(t, "SAMPLE-JP-NET", n.Name)
	require.EqualValues(t, 1, b.rdap.requests.Load())

	// Outside the range is a miss.
	_, err = b.client.Lookup(ctx, netip.MustParseAddr("203.0.113.200"))
	require.ErrorIs(t, err, rdap.ErrNotFound)
	require.EqualValues(t, 2, b.rdap.requests.Load())

	// Expiry.
	b.clock.Add(time.Hour)
	_, err = b.client.Lookup(ctx, netip.MustParseAddr("203.0.113.150"))
	require.NoError(t, err)
	require.EqualValues(t, 3, b.rdap.requests.Load())
}

func TestLookupRateLimitPerRegistry(t *testing.T) {
	t.Parallel()
	b := setup(t, nil) // 1 query/s, burst 2
	ctx := t.Context()
	start := b.clock.Now()
	for i := range 5 {
		n, err := b.client.Lookup(ctx, netip.AddrFrom4([4]byte{192, 0, 2, byte(130 + i)}))
		require.NoError(t, err)
		require.Len(t, n.Prefixes, 1)
	}
	require.EqualValues(t, 5, b.rdap.requests.Load())
	require.EqualValues(t, 3, b.waits.Load(), "the burst covers two, the rest wait")
	require.Equal(t, 3*time.Second, b.clock.Now().Sub(start))

	// APNIC has its own bucket: no wait.
	_, err := b.client.Lookup(ctx, netip.MustParseAddr("203.0.113.1"))
	require.NoError(t, err)
	require.EqualValues(t, 3, b.waits.Load())

	// Cache hits cost no token.
	for range 10 {
		_, err := b.client.Lookup(ctx, netip.MustParseAddr("192.0.2.130"))
		require.NoError(t, err)
	}
	require.EqualValues(t, 3, b.waits.Load())

	// A cancelled wait fails the lookup.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = b.client.Lookup(cctx, netip.MustParseAddr("192.0.2.200"))
	require.ErrorIs(t, err, context.Canceled)
}

func TestLookupNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *rdap.Config) { c.Whois = true; c.WhoisServers = map[string]string{"arin": "127.0.0.1:1"} })
	_, err := b.client.Lookup(t.Context(), netip.MustParseAddr("198.18.0.1"))
	require.ErrorIs(t, err, rdap.ErrNotFound)
}

func TestLookupWhoisFallback(t *testing.T) {
	t.Parallel()
	text, err := os.ReadFile(filepath.Join("testdata", "whois_arin.txt"))
	require.NoError(t, err)
	whois := newFakeWhois(t, string(text))
	b := setup(t, func(c *rdap.Config) {
		c.Whois = true
		c.WhoisServers = map[string]string{"arin": whois.ln.Addr().String()}
	})
	n, err := b.client.Lookup(t.Context(), netip.MustParseAddr("198.51.100.7"))
	require.NoError(t, err)
	require.Equal(t, rdap.SourceWhois, n.Source)
	require.Equal(t, "arin", n.Registry)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, n.Prefixes)
	require.Equal(t, "Doc Customer LLC", n.Org)
	require.Equal(t, "abuse@transit.example", n.AbuseEmail)
	var raw map[string]string
	require.NoError(t, json.Unmarshal(n.Raw, &raw))
	require.Contains(t, raw["whois"], "NetRange:")
	whois.mu.Lock()
	require.Equal(t, []string{"n + 198.51.100.7\r\n"}, whois.queries)
	whois.mu.Unlock()

	// Without whois the RDAP failure is the answer.
	b2 := setup(t, nil)
	_, err = b2.client.Lookup(t.Context(), netip.MustParseAddr("198.51.100.7"))
	require.ErrorContains(t, err, "rdap: query 198.51.100.7 at arin")
}

func TestWhoisErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = rdap.Whois(t.Context(), addr, "192.0.2.1", time.Second)
	require.ErrorContains(t, err, "rdap: whois dial")

	// A server that accepts and never answers: cancelling the context
	// ends the read.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { silent.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := silent.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := rdap.Whois(ctx, silent.Addr().String(), "192.0.2.1", 0)
		done <- err
	}()
	conn := <-accepted
	t.Cleanup(func() { conn.Close() })
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

func TestNewRejectsBadBootstrap(t *testing.T) {
	t.Parallel()
	_, err := rdap.New(rdap.Config{BootstrapIPv4: []byte("{")})
	require.Error(t, err)
}
