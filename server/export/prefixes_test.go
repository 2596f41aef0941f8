package export_test

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/export"
)

var sample = export.List{
	Name:     "edge-1",
	Comments: []string{"two\nlines"},
	V4:       []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.7/32")},
	V6:       []netip.Prefix{netip.MustParsePrefix("2001:db8::/48")},
}

// TestWritePrefixes pins every format byte for byte.
func TestWritePrefixes(t *testing.T) {
	t.Parallel()
	want := map[export.Format]string{
		export.Txt:     "192.0.2.0/24\n198.51.100.7/32\n2001:db8::/48\n",
		export.Plain:   "# two lines\n192.0.2.0/24\n198.51.100.7/32\n2001:db8::/48\n",
		export.Nginx:   "# two lines\n192.0.2.0/24 1;\n198.51.100.7/32 1;\n2001:db8::/48 1;\n",
		export.HAProxy: "# two lines\n192.0.2.0/24 edge-1\n198.51.100.7/32 edge-1\n2001:db8::/48 edge-1\n",
		export.IPSet: "# two lines\n" +
			"create muninn-edge-1-4 hash:net family inet -exist\nflush muninn-edge-1-4\n" +
			"add muninn-edge-1-4 192.0.2.0/24 -exist\nadd muninn-edge-1-4 198.51.100.7/32 -exist\n" +
			"create muninn-edge-1-6 hash:net family inet6 -exist\nflush muninn-edge-1-6\n" +
			"add muninn-edge-1-6 2001:db8::/48 -exist\n",
		export.Nft: "# two lines\ntable inet muninn {\n}\n" +
			"add set inet muninn muninn_edge_1_4 { type ipv4_addr; flags interval; }\nflush set inet muninn muninn_edge_1_4\n" +
			"add element inet muninn muninn_edge_1_4 { 192.0.2.0/24, 198.51.100.7/32 }\n" +
			"add set inet muninn muninn_edge_1_6 { type ipv6_addr; flags interval; }\nflush set inet muninn muninn_edge_1_6\n" +
			"add element inet muninn muninn_edge_1_6 { 2001:db8::/48 }\n",
		export.MikroTik: "# two lines\n/ip firewall address-list\nremove [find list=\"muninn-edge-1\"]\n" +
			"add list=\"muninn-edge-1\" address=192.0.2.0/24\nadd list=\"muninn-edge-1\" address=198.51.100.7/32\n" +
			"/ipv6 firewall address-list\nremove [find list=\"muninn-edge-1\"]\nadd list=\"muninn-edge-1\" address=2001:db8::/48\n",
	}
	require.Len(t, want, len(export.Formats))
	for _, f := range export.Formats {
		var b bytes.Buffer
		require.NoError(t, export.WritePrefixes(&b, f, sample))
		require.Equal(t, want[f], b.String(), "format %s", f)
	}
	require.Error(t, export.WritePrefixes(&bytes.Buffer{}, "xml", sample))
}

// TestIPSetNameLength: ipset names are at most 31 bytes.
func TestIPSetNameLength(t *testing.T) {
	t.Parallel()
	v4, v6 := export.SetNames(export.IPSet, "a-very-long-list-name-of-sixty-four-characters-xxxxxxxxxxxxxxxxx")
	require.Equal(t, "muninn-a-very-long-list-name--4", v4)
	require.Equal(t, "muninn-a-very-long-list-name--6", v6)
	require.LessOrEqual(t, len(v4), 31)
}

// TestNftLoadsFile checks the nft file with the real nft's parser and
// kernel checks (`nft -c -f`: nothing is changed). It needs root and nft;
// under CI a missing nft fails.
func TestNftLoadsFile(t *testing.T) {
	t.Parallel()
	nft, err := exec.LookPath("nft")
	if err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("nft (as root) is needed under CI: make deps")
		}
		t.Skip("needs nft and root")
	}
	big := sample
	for i := range 2500 { // more than one element statement
		big.V4 = append(big.V4, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
	}
	big.V4 = append(big.V4[2:], sample.V4...) // unsorted on purpose: nft sorts
	for _, l := range []export.List{sample, big, {Name: "empty"}} {
		var b bytes.Buffer
		require.NoError(t, export.WritePrefixes(&b, export.Nft, l))
		file := filepath.Join(t.TempDir(), "muninn.nft")
		require.NoError(t, os.WriteFile(file, b.Bytes(), 0o600))
		out, err := exec.Command(nft, "-c", "-f", file).CombinedOutput()
		require.NoError(t, err, "nft -c -f: %s\n%s", out, b.String()[:min(b.Len(), 2000)])
	}
}

// TestFamilyAnswerTouchesOnlyItsSets: a ?family=6 answer loaded after the
// ?family=4 one must not create, flush or fill the IPv4 set (a new user
// found the IPv6 load emptied the IPv4 block set).
func TestFamilyAnswerTouchesOnlyItsSets(t *testing.T) {
	t.Parallel()
	only6 := export.List{Name: "edge-1", V6: sample.V6, Family: 6}
	want := map[export.Format]string{
		export.IPSet: "create muninn-edge-1-6 hash:net family inet6 -exist\nflush muninn-edge-1-6\nadd muninn-edge-1-6 2001:db8::/48 -exist\n",
		export.Nft: "table inet muninn {\n}\nadd set inet muninn muninn_edge_1_6 { type ipv6_addr; flags interval; }\nflush set inet muninn muninn_edge_1_6\n" +
			"add element inet muninn muninn_edge_1_6 { 2001:db8::/48 }\n",
		export.MikroTik: "/ipv6 firewall address-list\nremove [find list=\"muninn-edge-1\"]\nadd list=\"muninn-edge-1\" address=2001:db8::/48\n",
	}
	for f, w := range want {
		var b bytes.Buffer
		require.NoError(t, export.WritePrefixes(&b, f, only6))
		require.Equal(t, w, b.String(), "format %s", f)
	}
	only4 := export.List{Name: "edge-1", V4: sample.V4, Family: 4}
	var b bytes.Buffer
	require.NoError(t, export.WritePrefixes(&b, export.IPSet, only4))
	require.Equal(t, "create muninn-edge-1-4 hash:net family inet -exist\nflush muninn-edge-1-4\n"+
		"add muninn-edge-1-4 192.0.2.0/24 -exist\nadd muninn-edge-1-4 198.51.100.7/32 -exist\n", b.String())
}
