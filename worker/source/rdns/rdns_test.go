package rdns_test

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker/source/rdns"
)

// fakeDNS is a tiny UDP DNS server on 127.0.0.1 answering PTR queries from a
// table. Names absent from the table get NXDOMAIN; names in drop get no
// answer at all; names in fail get SERVFAIL.
type fakeDNS struct {
	conn    net.PacketConn
	ptr     map[string][]string
	drop    map[string]bool
	fail    map[string]bool
	queries atomic.Int32
}

func newFakeDNS(t *testing.T, ptr map[string][]string, fail, drop []string) *fakeDNS {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeDNS{conn: conn, ptr: ptr, drop: map[string]bool{}, fail: map[string]bool{}}
	for _, n := range fail {
		f.fail[n] = true
	}
	for _, n := range drop {
		f.drop[n] = true
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed at cleanup
			}
			if resp := f.answer(buf[:n]); resp != nil {
				_, _ = conn.WriteTo(resp, from)
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return f
}

func (f *fakeDNS) addr() string { return f.conn.LocalAddr().String() }

// answer builds the response to one query by hand: header, the question
// copied back, and PTR answers with a compression pointer to the question.
func (f *fakeDNS) answer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	f.queries.Add(1)
	// Parse the question name.
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	qEnd := i + 1 + 4 // zero byte, qtype, qclass
	if qEnd > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	name := strings.ToLower(strings.Join(labels, ".")) + "."
	if f.drop[name] {
		return nil
	}
	names, ok := f.ptr[name]
	rcode := uint16(0)
	switch {
	case f.fail[name]:
		rcode, names = 2, nil
	case !ok:
		rcode = 3 // NXDOMAIN
	case qtype != 12:
		names = nil
	}
	resp := make([]byte, 12, 512)
	copy(resp, q[:2])                                        // ID
	binary.BigEndian.PutUint16(resp[2:], 0x8180|rcode)       // QR RD RA + rcode
	binary.BigEndian.PutUint16(resp[4:], 1)                  // QDCOUNT
	binary.BigEndian.PutUint16(resp[6:], uint16(len(names))) // ANCOUNT
	resp = append(resp, q[12:qEnd]...)
	for _, n := range names {
		var rdata []byte
		for _, l := range strings.Split(strings.TrimSuffix(n, "."), ".") {
			rdata = append(rdata, byte(len(l)))
			rdata = append(rdata, l...)
		}
		rdata = append(rdata, 0)
		resp = append(resp, 0xC0, 12)                  // pointer to the question name
		resp = binary.BigEndian.AppendUint16(resp, 12) // PTR
		resp = binary.BigEndian.AppendUint16(resp, 1)  // IN
		resp = binary.BigEndian.AppendUint32(resp, 300)
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdata)))
		resp = append(resp, rdata...)
	}
	return resp
}

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

type testBundle struct {
	dns   *fakeDNS
	clock *clock
	res   *rdns.Resolver
}

func setup(t *testing.T) testBundle {
	t.Helper()
	dns := newFakeDNS(t, map[string][]string{
		"7.2.0.192.in-addr.arpa.": {"scanner.example.net."},
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.": {"v6.example.org."},
	}, []string{"9.2.0.192.in-addr.arpa."}, nil)
	clk := &clock{now: time.Date(2026, 8, 22, 12, 0, 0, 0, time.UTC)}
	res := rdns.New(rdns.Config{Server: dns.addr(), Timeout: 2 * time.Second, TTL: time.Hour, NegativeTTL: time.Minute, Now: clk.Now})
	return testBundle{dns: dns, clock: clk, res: res}
}

func TestLookupPositiveCache(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	names, err := b.res.Lookup(ctx, netip.MustParseAddr("192.0.2.7"))
	require.NoError(t, err)
	require.Equal(t, []string{"scanner.example.net"}, names)
	q := b.dns.queries.Load()

	names, err = b.res.Lookup(ctx, netip.MustParseAddr("::ffff:192.0.2.7"))
	require.NoError(t, err)
	require.Equal(t, []string{"scanner.example.net"}, names)
	require.Equal(t, q, b.dns.queries.Load(), "served from cache")

	b.clock.Add(time.Hour)
	_, err = b.res.Lookup(ctx, netip.MustParseAddr("192.0.2.7"))
	require.NoError(t, err)
	require.Greater(t, b.dns.queries.Load(), q, "expired entry queried again")

	names, err = b.res.Lookup(ctx, netip.MustParseAddr("2001:db8::1"))
	require.NoError(t, err)
	require.Equal(t, []string{"v6.example.org"}, names)
}

func TestLookupNegativeCache(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	_, err := b.res.Lookup(ctx, netip.MustParseAddr("192.0.2.8"))
	require.ErrorIs(t, err, rdns.ErrNotFound)
	q := b.dns.queries.Load()
	_, err = b.res.Lookup(ctx, netip.MustParseAddr("192.0.2.8"))
	require.ErrorIs(t, err, rdns.ErrNotFound)
	require.Equal(t, q, b.dns.queries.Load())

	b.clock.Add(time.Minute)
	_, err = b.res.Lookup(ctx, netip.MustParseAddr("192.0.2.8"))
	require.ErrorIs(t, err, rdns.ErrNotFound)
	require.Greater(t, b.dns.queries.Load(), q)
}

func TestLookupFailuresNotCached(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	_, err := b.res.Lookup(ctx, netip.MustParseAddr("192.0.2.9"))
	require.Error(t, err)
	require.False(t, errors.Is(err, rdns.ErrNotFound))
	q := b.dns.queries.Load()
	_, err = b.res.Lookup(ctx, netip.MustParseAddr("192.0.2.9"))
	require.Error(t, err)
	require.Greater(t, b.dns.queries.Load(), q, "SERVFAIL is not cached")
}

func TestLookupTimeout(t *testing.T) {
	t.Parallel()
	dns := newFakeDNS(t, nil, nil, []string{"10.2.0.192.in-addr.arpa."})
	res := rdns.New(rdns.Config{Server: dns.addr(), Timeout: 50 * time.Millisecond})
	_, err := res.Lookup(t.Context(), netip.MustParseAddr("192.0.2.10"))
	require.Error(t, err)
	require.False(t, errors.Is(err, rdns.ErrNotFound))
	require.Contains(t, err.Error(), "rdns: lookup 192.0.2.10")
}

func TestLookupCacheBounded(t *testing.T) {
	t.Parallel()
	dns := newFakeDNS(t, nil, nil, nil)
	res := rdns.New(rdns.Config{Server: dns.addr(), MaxEntries: 2})
	ctx := t.Context()
	for i := range 5 {
		_, err := res.Lookup(ctx, netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}))
		require.ErrorIs(t, err, rdns.ErrNotFound)
	}
	q := dns.queries.Load()
	hits := 0
	for i := range 5 {
		_, _ = res.Lookup(ctx, netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}))
		if dns.queries.Load() == q {
			hits++
		}
		q = dns.queries.Load()
	}
	require.LessOrEqual(t, hits, 2)
}
