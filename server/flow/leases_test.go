package flow_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/flow"
	"github.com/muninn/muninn/server/store"
)

// leaseFile is a dnsmasq lease file with a line of every kind, read at
// leaseNow.
const leaseFile = "1796043600 02:00:00:00:00:05 10.0.0.5 printer 01:02:00:00:00:00:00:05\n" +
	"0 02:00:00:00:00:09 10.0.0.9 nas *\n" +
	"1796039999 02:00:00:00:00:04 10.0.0.4 gone *\n" +
	"1796040000 02:00:00:00:00:03 10.0.0.3 edge *\n" +
	"1796043600 02:00:00:00:00:06 10.0.0.6 * *\n" +
	"1796043600 02:00:00:00:00:07 ::ffff:10.0.0.7 tv *\n" +
	"1796043600 20:00:00:00:00:00:00:0a 10.0.0.10 infiniband *\n" +
	"1796043600 02:00:00:00:00:08 fe80::8%eth0 zoned *\n" +
	"soon 02:00:00:00:00:0b 10.0.0.11 bad-expiry *\n" +
	"-1 02:00:00:00:00:0c 10.0.0.12 negative *\n" +
	"1796043600 02:00:00:00:00:0d 10.0.0.13\n" +
	"duid 00:01:00:01:2c:00:00:00:02:00:00:00:00:01\n" +
	"1796043600 1234 fd00::5 laptop 00:01:00:01\n" +
	"1796043600 T5 fd00::6 * 00:01:00:02\n" +
	"1796039000 77 fd00::7 phone 00:01:00:03\n" +
	"garbage\n"

var leaseNow = time.Unix(1796040000, 0)

func TestParseLeases(t *testing.T) {
	t.Parallel()
	require.Equal(t, []store.FlowLease{
		{Address: netip.MustParseAddr("10.0.0.5"), Name: "printer", MAC: "02:00:00:00:00:05"},
		{Address: netip.MustParseAddr("10.0.0.9"), Name: "nas", MAC: "02:00:00:00:00:09"},  // 0: never expires
		{Address: netip.MustParseAddr("10.0.0.3"), Name: "edge", MAC: "02:00:00:00:00:03"}, // expires now: still valid
		{Address: netip.MustParseAddr("10.0.0.6"), Name: "", MAC: "02:00:00:00:00:06"},     // no name: its MAC still counts
		{Address: netip.MustParseAddr("10.0.0.7"), Name: "tv", MAC: "02:00:00:00:00:07"},
		{Address: netip.MustParseAddr("10.0.0.10"), Name: "infiniband"}, // not an Ethernet address
		{Address: netip.MustParseAddr("fd00::5"), Name: "laptop"},       // DHCPv6: an IAID, not a MAC
		{Address: netip.MustParseAddr("fd00::6"), Name: ""},
	}, flow.ParseLeases([]byte(leaseFile), leaseNow))
	require.Nil(t, flow.ParseLeases(nil, leaseNow))
	// An hour later only the leases that never expire are left.
	require.Equal(t, []store.FlowLease{{Address: netip.MustParseAddr("10.0.0.9"), Name: "nas", MAC: "02:00:00:00:00:09"}},
		flow.ParseLeases([]byte(leaseFile), leaseNow.Add(time.Hour+time.Second)))
}

// FuzzParseLeases: any file parses without a panic, and every lease it
// returns has a valid, unmapped address without a zone, a name of at most
// 253 bytes other than "*", and no MAC or a canonical Ethernet one.
func FuzzParseLeases(f *testing.F) {
	f.Add([]byte(leaseFile), int64(1796040000))
	f.Add([]byte("0 02:00:00:00:00:01 ::ffff:192.0.2.1 a b\nduid 1\n0 02:00:00:00:00:02 192.0.2.2 * *\n"), int64(0))
	f.Add([]byte("9223372036854775807 x ::1 *\n"), int64(-1))
	f.Fuzz(func(t *testing.T, b []byte, now int64) {
		for _, l := range flow.ParseLeases(b, time.Unix(now, 0)) {
			if !l.Address.IsValid() || l.Address.Zone() != "" || l.Address != l.Address.Unmap() {
				t.Fatalf("lease with address %v", l.Address)
			}
			if l.Name == "*" || len(l.Name) > 253 {
				t.Fatalf("lease with name %q", l.Name)
			}
			if l.MAC != "" {
				hw, err := net.ParseMAC(l.MAC)
				if err != nil || len(hw) != 6 || hw.String() != l.MAC {
					t.Fatalf("lease with MAC %q", l.MAC)
				}
			}
		}
	})
}

// TestCollectorLeaseFile: the collector applies the lease file as of its
// clock after a flush, and again when the file changes: a removed line
// takes its name away.
func TestCollectorLeaseFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "dnsmasq.leases")
	b := setup(t, flow.Config{LeaseFile: file})
	ctx := context.Background()
	later, earlier := b.now.Unix()+3600, b.now.Unix()-1
	write := func(lines string) { require.NoError(t, os.WriteFile(file, []byte(lines), 0o600)) }
	write(fmt.Sprintf("%d 02:00:00:00:00:05 10.0.0.5 printer *\n%d 02:00:00:00:00:06 10.0.0.6 * *\n%d 02:00:00:00:00:07 10.0.0.7 expired *\n",
		later, later, earlier))
	require.True(t, b.c.Handle(flow.NetFlow, netip.MustParseAddrPort("192.0.2.1:40000"), netflowV5(1, 0,
		v5Record{src: "10.0.0.5", dst: "203.0.113.9", srcPort: 1, dstPort: 443, proto: 6, packets: 1, bytes: 40},
		v5Record{src: "10.0.0.6", dst: "203.0.113.9", srcPort: 1, dstPort: 443, proto: 6, packets: 1, bytes: 40},
		v5Record{src: "10.0.0.7", dst: "203.0.113.9", srcPort: 1, dstPort: 443, proto: 6, packets: 1, bytes: 40})))
	require.NoError(t, b.c.Flush(ctx))
	type row struct{ LeaseName, MAC string }
	hosts := func() map[string]row {
		t.Helper()
		hs, err := b.st.FlowHosts(ctx, netip.Prefix{}, 100)
		require.NoError(t, err)
		out := map[string]row{}
		for _, h := range hs {
			out[h.Address.String()] = row{h.LeaseName, h.MAC}
		}
		return out
	}
	require.Equal(t, map[string]row{
		"10.0.0.5": {"printer", "02:00:00:00:00:05"},
		"10.0.0.6": {"", "02:00:00:00:00:06"},
		"10.0.0.7": {"", ""},
	}, hosts())

	write(fmt.Sprintf("%d 02:00:00:00:00:07 10.0.0.7 camera *\n", later))
	require.NoError(t, b.c.Flush(ctx))
	require.Equal(t, map[string]row{
		"10.0.0.5": {"", "02:00:00:00:00:05"},
		"10.0.0.6": {"", "02:00:00:00:00:06"},
		"10.0.0.7": {"camera", "02:00:00:00:00:07"},
	}, hosts())

	// The camera's lease runs out while the network is silent and the file
	// stays as it is: the name goes within leaseReapply (5 minutes).
	b.later.Store(int64(time.Hour + 5*time.Minute))
	require.NoError(t, b.c.Flush(ctx))
	require.Equal(t, row{"", "02:00:00:00:00:07"}, hosts()["10.0.0.7"])
}
