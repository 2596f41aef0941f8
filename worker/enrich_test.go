package worker_test

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker"
	"github.com/muninn/muninn/worker/source/geo"
	"github.com/muninn/muninn/worker/source/rdap"
	"github.com/muninn/muninn/worker/source/rdns"
)

// writeCountryMMDB writes an ip-location-db shaped country database.
func writeCountryMMDB(t *testing.T, path string, records map[string]string) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "country", IncludeReservedNetworks: true, RecordSize: 28})
	require.NoError(t, err)
	for cidr, cc := range records {
		_, n, err := net.ParseCIDR(cidr)
		require.NoError(t, err)
		require.NoError(t, tree.Insert(n, mmdbtype.Map{"country_code": mmdbtype.String(cc)}))
	}
	f, err := os.Create(path)
	require.NoError(t, err)
	_, err = tree.WriteTo(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

type geoRow struct {
	Network   string
	Country   string
	Continent string
	ASN       int64
	Org       string
}

func geoRows(t *testing.T, b testBundle) []geoRow {
	t.Helper()
	rows, err := b.st.Pool().Query(b.ctx, `SELECT network::text, country, continent, asn, as_org FROM geo_networks ORDER BY network`)
	require.NoError(t, err)
	defer rows.Close()
	var out []geoRow
	for rows.Next() {
		var r geoRow
		require.NoError(t, rows.Scan(&r.Network, &r.Country, &r.Continent, &r.ASN, &r.Org))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestGeoSyncLoadsAndReloads(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dir := t.TempDir()
	country := filepath.Join(dir, "country.mmdb")
	writeCountryMMDB(t, country, map[string]string{"192.0.2.0/24": "DE", "2001:db8::/32": "JP"})
	asn4 := filepath.Join(dir, "asn-ipv4.csv")
	require.NoError(t, os.WriteFile(asn4, []byte("192.0.2.0,192.0.2.127,64500,\"Example, Inc.\"\n"), 0o600))
	w, err := geo.NewWatcher(geo.Paths{Country: country, ASNCSV: []string{asn4}})
	require.NoError(t, err)
	b.deps.Geo = w
	rc, events := startClient(t, b)

	// Loaded on start, split where the ASN data changes.
	waitFor(t, events, worker.GeoSyncArgs{}.Kind())
	require.Equal(t, []geoRow{
		{"192.0.2.0/25", "DE", "EU", 64500, "Example, Inc."},
		{"192.0.2.128/25", "DE", "EU", 0, ""},
		{"2001:db8::/32", "JP", "AS", 0, ""},
	}, geoRows(t, b))

	// A new release of the file is picked up by the next sync.
	writeCountryMMDB(t, country, map[string]string{"198.51.100.0/24": "US"})
	later := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(country, later, later))
	_, err = rc.Insert(b.ctx, worker.GeoSyncArgs{}, nil)
	require.NoError(t, err)
	ev := waitFor(t, events, worker.GeoSyncArgs{}.Kind())
	require.Equal(t, river.EventKindJobCompleted, ev.Kind)
	require.Equal(t, []geoRow{{"198.51.100.0/24", "US", "NA", 0, ""}}, geoRows(t, b))
}

func TestRDAPLookupsServeWholeNetworks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		addr, err := netip.ParseAddr(strings.TrimPrefix(r.URL.Path, "/ip/"))
		w.Header().Set("Content-Type", "application/rdap+json")
		if err == nil && netip.MustParsePrefix("192.0.2.0/24").Contains(addr) {
			fmt.Fprint(w, `{"objectClassName":"ip network","handle":"NET-192-0-2-0-1","startAddress":"192.0.2.0",
				"endAddress":"192.0.2.255","ipVersion":"v4","name":"EXAMPLE-NET","country":"US",
				"entities":[{"objectClassName":"entity","roles":["registrant"],"vcardArray":["vcard",[["version",{},"text","4.0"],["fn",{},"text","Example Org"]]]},
				            {"objectClassName":"entity","roles":["abuse"],"vcardArray":["vcard",[["version",{},"text","4.0"],["email",{},"text","abuse@example.org"]]]}]}`)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errorCode":404,"title":"Not Found"}`)
	}))
	t.Cleanup(srv.Close)
	base, err := url.Parse(srv.URL + "/")
	require.NoError(t, err)
	client, err := rdap.New(rdap.Config{HTTP: srv.Client(), BaseURL: base, Rate: 1000, Burst: 100})
	require.NoError(t, err)
	b.deps.RDAP = client
	b.deps.EnrichWorkers = 1    // one at a time, so the second address finds the network stored
	b.deps.EnrichSpecial = true // documentation addresses stand in for public ones

	now := time.Now()
	var obs []store.Observation
	for _, a := range []string{"192.0.2.10/32", "192.0.2.20/32", "198.51.100.1/32", "203.0.113.0/24"} {
		obs = append(obs, store.Observation{Prefix: netip.MustParsePrefix(a), Source: "ingest:test", SeenAt: now})
	}
	require.NoError(t, b.st.Ingest(b.ctx, obs, "test"))
	_, events := startClient(t, b)
	for range 3 { // the /24 is not a single address and is not looked up
		ev := waitFor(t, events, worker.RDAPLookupArgs{}.Kind())
		require.Equal(t, river.EventKindJobCompleted, ev.Kind)
	}
	require.EqualValues(t, 2, requests.Load(), "192.0.2.20 is served by the network 192.0.2.10 fetched")

	var name, org, abuse string
	require.NoError(t, b.st.Pool().QueryRow(b.ctx, `SELECT name, org, abuse_email FROM rdap_networks WHERE network = '192.0.2.0/24'`).Scan(&name, &org, &abuse))
	require.Equal(t, []string{"EXAMPLE-NET", "Example Org", "abuse@example.org"}, []string{name, org, abuse})
	// Not found is remembered, so the next scan asks for nothing.
	lacking, err := b.st.AddrsLacking(b.ctx, store.EnrichRDAP, time.Date(2026, 8, 22, 11, 0, 0, 0, time.UTC), 10)
	require.NoError(t, err)
	require.Empty(t, lacking)
	// Each address's last attempt says how it went.
	for addr, want := range map[string][2]string{
		"192.0.2.10":   {store.EnrichOK, ""},
		"192.0.2.20":   {store.EnrichOK, ""}, // covered by the stored network
		"198.51.100.1": {store.EnrichNotFound, "rdap: query 198.51.100.1 at arin: rdap: no network found"},
	} {
		got := attempts(t, b, addr)
		require.Len(t, got, 1, addr)
		require.Equal(t, store.EnrichRDAP, got[0].Kind, addr)
		require.Equal(t, want, [2]string{got[0].Outcome, got[0].Error}, addr)
		require.False(t, got[0].AttemptedAt.IsZero())
	}
}

func attempts(t *testing.T, b testBundle, addr string) []store.EnrichAttempt {
	t.Helper()
	got, err := b.st.EnrichAttempts(b.ctx, netip.MustParseAddr(addr))
	require.NoError(t, err)
	return got
}

// TestEnrichSkipsSpecialUse: documentation and private addresses are not
// looked up (no request reaches the registry, no PTR query the resolver),
// and their status says why; MUNINN_ENRICH_SPECIAL=on lifts that.
func TestEnrichSkipsSpecialUse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var requests, queries atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	base, err := url.Parse(srv.URL + "/")
	require.NoError(t, err)
	client, err := rdap.New(rdap.Config{HTTP: srv.Client(), BaseURL: base, Rate: 1000, Burst: 100})
	require.NoError(t, err)
	b.deps.RDAP = client
	b.deps.RDNS = rdns.New(rdns.Config{Server: servePTRCounting(t, &queries), Timeout: 5 * time.Second})
	now := time.Now()
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{
		{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Source: "ingest:test", SeenAt: now},
		{Prefix: netip.MustParsePrefix("10.1.2.3/32"), Source: "ingest:test", SeenAt: now},
		{Prefix: netip.MustParsePrefix("2001:db8::7/128"), Source: "ingest:test", SeenAt: now},
	}, "test"))
	_, events := startClient(t, b)
	ev := waitFor(t, events, worker.EnrichScanArgs{}.Kind())
	require.Equal(t, river.EventKindJobCompleted, ev.Kind)

	doc := "not looked up: special-use: documentation (RFC 5737, RFC 3849) (MUNINN_ENRICH_SPECIAL=on allows it)"
	for addr, why := range map[string]string{
		"192.0.2.7":   doc,
		"2001:db8::7": doc,
		"10.1.2.3":    "not looked up: special-use: private network (RFC 1918) (MUNINN_ENRICH_SPECIAL=on allows it)",
	} {
		got := attempts(t, b, addr)
		require.Len(t, got, 2, addr)
		for i, kind := range []string{store.EnrichRDAP, store.EnrichPTR} {
			require.Equal(t, store.EnrichAttempt{Kind: kind, AttemptedAt: got[i].AttemptedAt, Outcome: store.EnrichSkipped, Error: why}, got[i], addr)
		}
	}
	require.Zero(t, requests.Load())
	require.Zero(t, queries.Load())
	lacking, err := b.st.AddrsLacking(b.ctx, store.EnrichRDAP, b.deps.Now().Add(-time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, lacking, "skipped addresses wait for the retry period like any other")
}

// servePTRCounting is servePTR with no names that counts the queries.
func servePTRCounting(t *testing.T, n *atomic.Int32) string {
	t.Helper()
	return servePTRWith(t, map[string]string{}, n)
}

// servePTR answers PTR queries on a UDP socket from names (reverse name ->
// PTR targets) with dnsmessage; other names get NXDOMAIN.
func servePTR(t *testing.T, names map[string]string) string {
	t.Helper()
	return servePTRWith(t, names, nil)
}

// servePTRWith is servePTR counting the queries in n when n is set.
func servePTRWith(t *testing.T, names map[string]string, queries *atomic.Int32) string {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed at cleanup
			}
			if queries != nil {
				queries.Add(1)
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
			target, ok := names[q.Name.String()]
			if !ok {
				rh.RCode = dnsmessage.RCodeNameError
			}
			bld := dnsmessage.NewBuilder(nil, rh)
			_ = bld.StartQuestions()
			_ = bld.Question(q)
			if ok && q.Type == dnsmessage.TypePTR {
				_ = bld.StartAnswers()
				_ = bld.PTRResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 300},
					dnsmessage.PTRResource{PTR: dnsmessage.MustNewName(target)})
			}
			if msg, err := bld.Finish(); err == nil {
				_, _ = conn.WriteTo(msg, from)
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return conn.LocalAddr().String()
}

func TestPTRLookupsStoreHostnames(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deps.RDNS = rdns.New(rdns.Config{Server: servePTR(t, map[string]string{"1.2.0.192.in-addr.arpa.": "host.example."}), Timeout: 5 * time.Second})
	b.deps.EnrichSpecial = true // documentation addresses stand in for public ones
	now := time.Now()
	require.NoError(t, b.st.Ingest(b.ctx, []store.Observation{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Source: "ingest:test", SeenAt: now},
		{Prefix: netip.MustParsePrefix("192.0.2.2/32"), Source: "ingest:test", SeenAt: now},
	}, "test"))
	_, events := startClient(t, b)
	for range 2 {
		ev := waitFor(t, events, worker.PTRLookupArgs{}.Kind())
		require.Equal(t, river.EventKindJobCompleted, ev.Kind, "no PTR record is an answer, not a failure")
	}
	var name, source string
	require.NoError(t, b.st.Pool().QueryRow(b.ctx, `SELECT name, source FROM hostnames WHERE address = '192.0.2.1'`).Scan(&name, &source))
	require.Equal(t, "host.example", strings.TrimSuffix(name, "."))
	require.Equal(t, "ptr", source)
	lacking, err := b.st.AddrsLacking(b.ctx, store.EnrichPTR, time.Date(2026, 8, 22, 11, 0, 0, 0, time.UTC), 10)
	require.NoError(t, err)
	require.Empty(t, lacking)
	got := attempts(t, b, "192.0.2.1")
	require.Equal(t, []string{store.EnrichPTR, store.EnrichOK, ""}, []string{got[0].Kind, got[0].Outcome, got[0].Error})
	got = attempts(t, b, "192.0.2.2")
	require.Equal(t, []string{store.EnrichPTR, store.EnrichNotFound, "rdns: lookup 192.0.2.2: rdns: no PTR record"}, []string{got[0].Kind, got[0].Outcome, got[0].Error})
}

// TestGeoSyncPicksUpFilesAfterStart: the geo directory does not exist when
// the workers start; a GeoLite2 country database written there later is
// loaded by the periodic check, without a restart.
func TestGeoSyncPicksUpFilesAfterStart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dir := filepath.Join(t.TempDir(), "geo")
	w, err := geo.NewDirWatcher(dir)
	require.NoError(t, err)
	b.deps.Geo = w
	b.deps.GeoCheckPeriod = 200 * time.Millisecond
	var logs lockedBuffer
	b.deps.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// What an earlier run loaded stays while this process has no files.
	_, err = b.st.ReplaceGeoNetworks(b.ctx, "geo", func(yield func(store.GeoNetwork, error) bool) {
		yield(store.GeoNetwork{Network: netip.MustParsePrefix("198.51.100.0/24"), Country: "US", Continent: "NA"}, nil)
	})
	require.NoError(t, err)
	_, events := startClient(t, b)
	ev := waitFor(t, events, worker.GeoSyncArgs{}.Kind())
	require.Equal(t, river.EventKindJobCompleted, ev.Kind)
	require.Equal(t, []geoRow{{"198.51.100.0/24", "US", "NA", 0, ""}}, geoRows(t, b))
	const hint = "; `make geodata` fetches the free databases, and files added to the directory are loaded without a restart."
	noCountry := "no country data (GeoLite2-Country.mmdb, dbip-country-lite.mmdb, country.mmdb or geo-whois-asn-country.mmdb): country and continent rules disabled"
	noASN := "no ASN data (GeoLite2-ASN.mmdb, dbip-asn-lite.mmdb, asn.mmdb or asn-ipv4.csv/asn-ipv6.csv): asn and org rules and network owner names disabled"
	require.Equal(t, []string{"Geo data is incomplete: " + noCountry + "; " + noASN + hint}, logs.messages(t))

	require.NoError(t, os.MkdirAll(dir, 0o755))
	tmp := filepath.Join(t.TempDir(), "GeoLite2-Country.mmdb")
	writeCountryMMDB(t, tmp, map[string]string{"192.0.2.0/24": "DE"})
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, "GeoLite2-Country.mmdb")))
	require.Eventually(t, func() bool {
		rows := geoRows(t, b)
		return len(rows) == 1 && rows[0] == geoRow{"192.0.2.0/24", "DE", "EU", 0, ""}
	}, time.Minute, 50*time.Millisecond)
	require.Eventually(t, func() bool { return len(logs.messages(t)) == 2 }, time.Minute, 50*time.Millisecond)
	require.Equal(t, "Geo data is incomplete: "+noASN+hint, logs.messages(t)[1])
}

// lockedBuffer is a log destination written by River's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// messages returns the msg of every logged line.
func (l *lockedBuffer) messages(t *testing.T) []string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.buf.String()) {
		_, after, ok := strings.Cut(line, "msg=")
		require.True(t, ok, line)
		msg, err := strconv.Unquote(strings.TrimSpace(after))
		require.NoError(t, err, line)
		out = append(out, msg)
	}
	return out
}
