package export_test

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer/nft/netnstest"
	"github.com/muninn/muninn/server/export"
)

var sample = export.List{
	Kind:     export.KindDeny,
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
			"create muninn-deny-edge-1-4 hash:net family inet -exist\nflush muninn-deny-edge-1-4\n" +
			"add muninn-deny-edge-1-4 192.0.2.0/24 -exist\nadd muninn-deny-edge-1-4 198.51.100.7/32 -exist\n" +
			"create muninn-deny-edge-1-6 hash:net family inet6 -exist\nflush muninn-deny-edge-1-6\n" +
			"add muninn-deny-edge-1-6 2001:db8::/48 -exist\n",
		export.Nft: "# two lines\ntable inet muninn_export {\n}\n" +
			"add set inet muninn_export muninn_deny_edge-1_4 { type ipv4_addr; flags interval; }\nflush set inet muninn_export muninn_deny_edge-1_4\n" +
			"add element inet muninn_export muninn_deny_edge-1_4 { 192.0.2.0/24, 198.51.100.7/32 }\n" +
			"add set inet muninn_export muninn_deny_edge-1_6 { type ipv6_addr; flags interval; }\nflush set inet muninn_export muninn_deny_edge-1_6\n" +
			"add element inet muninn_export muninn_deny_edge-1_6 { 2001:db8::/48 }\n",
		export.MikroTik: "# two lines\n/ip firewall address-list\nremove [find list=\"muninn-deny-edge-1\"]\n" +
			"add list=\"muninn-deny-edge-1\" address=192.0.2.0/24\nadd list=\"muninn-deny-edge-1\" address=198.51.100.7/32\n" +
			"/ipv6 firewall address-list\nremove [find list=\"muninn-deny-edge-1\"]\nadd list=\"muninn-deny-edge-1\" address=2001:db8::/48\n",
	}
	require.Len(t, want, len(export.Formats))
	for _, f := range export.Formats {
		var b bytes.Buffer
		require.NoError(t, export.WritePrefixes(&b, f, sample))
		require.Equal(t, want[f], b.String(), "format %s", f)
	}
	require.Error(t, export.WritePrefixes(&bytes.Buffer{}, "xml", sample))
}

// TestSetNames pins the set names: the kind is in every name, names that
// fit are used as they are, and a long ipset name is cut and hashed.
func TestSetNames(t *testing.T) {
	t.Parallel()
	long := "a-very-long-list-name-of-sixty-four-characters-xxxxxxxxxxxxxxxxx"
	for _, c := range []struct {
		f      export.Format
		k      export.Kind
		name   string
		v4, v6 string
	}{
		{export.IPSet, export.KindDeny, "edge", "muninn-deny-edge-4", "muninn-deny-edge-6"},
		{export.IPSet, export.KindAllow, "edge", "muninn-allow-edge-4", "muninn-allow-edge-6"},
		{export.IPSet, export.KindList, "edge", "muninn-list-edge-4", "muninn-list-edge-6"},
		{export.IPSet, export.KindDeny, long, "muninn-deny-a-very-l.ff79f22e-4", "muninn-deny-a-very-l.ff79f22e-6"},
		// 31 bytes: as it is; one more (allow is a letter longer): cut and hashed
		{export.IPSet, export.KindList, "exactly-17-chars-", "muninn-list-exactly-17-chars--4", "muninn-list-exactly-17-chars--6"},
		{export.IPSet, export.KindAllow, "exactly-17-chars-", "muninn-allow-exactly.c3acee9a-4", "muninn-allow-exactly.c3acee9a-6"},
		{export.Nft, export.KindDeny, "a-b", "muninn_deny_a-b_4", "muninn_deny_a-b_6"},
		{export.Nft, export.KindDeny, "a_b", "muninn_deny_a_b_4", "muninn_deny_a_b_6"},
		{export.Nft, export.KindAllow, long, "muninn_allow_" + long + "_4", "muninn_allow_" + long + "_6"},
		{export.MikroTik, export.KindList, "edge", "muninn-list-edge", "muninn-list-edge"},
		{export.Nft, export.KindList, "bad name", "muninn_list_bad_name.b1abac28_4", "muninn_list_bad_name.b1abac28_6"},
	} {
		v4, v6 := export.SetNames(c.f, c.k, c.name)
		require.Equal(t, [2]string{c.v4, c.v6}, [2]string{v4, v6}, "%s %s %s", c.f, c.k, c.name)
	}
}

// TestSetNamesOneToOne: over random list names (the contract's ObjectName:
// [A-Za-z0-9][A-Za-z0-9_-]{0,63}), near misses (a-b against a_b, long
// names alike in their first characters) and every kind, no two distinct
// (kind, name) give one set name in any set format, and every name is
// within its tool's limit.
func TestSetNamesOneToOne(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(18, 29))
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
	names := map[string]bool{}
	for len(names) < 20000 {
		n := 1 + rng.IntN(64)
		if rng.IntN(2) == 0 {
			n = 1 + rng.IntN(24) // around ipset's limit
		}
		b := make([]byte, n)
		b[0] = alpha[rng.IntN(62)]
		for i := 1; i < n; i++ {
			b[i] = alpha[rng.IntN(len(alpha))]
			if rng.IntN(4) == 0 {
				b[i] = "-_"[rng.IntN(2)] // separators often
			}
		}
		names[string(b)] = true
		// its near misses: '-' and '_' swapped, and one more character
		names[strings.NewReplacer("-", "_", "_", "-").Replace(string(b))] = true
		if n < 64 {
			names[string(b)+"-"] = true
		}
	}
	limits := map[export.Format]int{export.IPSet: export.IPSetNameMax, export.Nft: export.NftNameMax, export.MikroTik: export.MikroTikNameMax}
	for f, limit := range limits {
		seen := map[string]string{}
		for name := range names {
			for _, k := range []export.Kind{export.KindDeny, export.KindAllow, export.KindList} {
				v4, v6 := export.SetNames(f, k, name)
				key := string(k) + "/" + name
				both := []string{v4, v6}
				if f == export.MikroTik {
					require.Equal(t, v4, v6)
					both = both[:1] // one list holds both families
				}
				for _, s := range both {
					require.LessOrEqual(t, len(s), limit, "%s %s: %s", f, key, s)
					prev, dup := seen[s]
					require.False(t, dup, "%s: %s and %s both give %s", f, prev, key, s)
					seen[s] = key
				}
			}
		}
		require.Len(t, seen, len(names)*3*map[bool]int{true: 1, false: 2}[f == export.MikroTik], "%s", f)
	}
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
	for _, l := range []export.List{sample, big, {Kind: export.KindList, Name: "empty"}} {
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
	only6 := export.List{Kind: export.KindDeny, Name: "edge-1", V6: sample.V6, Family: 6}
	want := map[export.Format]string{
		export.IPSet: "create muninn-deny-edge-1-6 hash:net family inet6 -exist\nflush muninn-deny-edge-1-6\nadd muninn-deny-edge-1-6 2001:db8::/48 -exist\n",
		export.Nft: "table inet muninn_export {\n}\nadd set inet muninn_export muninn_deny_edge-1_6 { type ipv6_addr; flags interval; }\nflush set inet muninn_export muninn_deny_edge-1_6\n" +
			"add element inet muninn_export muninn_deny_edge-1_6 { 2001:db8::/48 }\n",
		export.MikroTik: "/ipv6 firewall address-list\nremove [find list=\"muninn-deny-edge-1\"]\nadd list=\"muninn-deny-edge-1\" address=2001:db8::/48\n",
	}
	for f, w := range want {
		var b bytes.Buffer
		require.NoError(t, export.WritePrefixes(&b, f, only6))
		require.Equal(t, w, b.String(), "format %s", f)
	}
	only4 := export.List{Kind: export.KindDeny, Name: "edge-1", V4: sample.V4, Family: 4}
	var b bytes.Buffer
	require.NoError(t, export.WritePrefixes(&b, export.IPSet, only4))
	require.Equal(t, "create muninn-deny-edge-1-4 hash:net family inet -exist\nflush muninn-deny-edge-1-4\n"+
		"add muninn-deny-edge-1-4 192.0.2.0/24 -exist\nadd muninn-deny-edge-1-4 198.51.100.7/32 -exist\n", b.String())
}

// TestNftKindsKeepTheirSets loads, with the real nft in a network namespace
// of its own, the deny, allow and named list files of one name, with a drop
// rule on the deny set: loading the allow list and the list after the deny
// list leaves the deny set (and so the drop rule) holding the deny list
// only (a new user found the allow list filled the set the drop rule
// used). It loads names near each other (a-b, a_b) and cut ipset-length
// names too.
func TestNftKindsKeepTheirSets(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	ns := netnstest.New(t)
	load := func(l export.List) {
		var b bytes.Buffer
		require.NoError(t, export.WritePrefixes(&b, export.Nft, l))
		file := filepath.Join(t.TempDir(), "muninn.nft")
		require.NoError(t, os.WriteFile(file, b.Bytes(), 0o600))
		ns.Exec(t, "nft", "-f", file)
	}
	deny := export.List{Kind: export.KindDeny, Name: "edge", V4: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	load(deny)
	ns.Exec(t, "nft", "add chain inet muninn_export in { type filter hook input priority 0; }")
	ns.Exec(t, "nft", "add rule inet muninn_export in ip saddr @muninn_deny_edge_4 drop")
	load(export.List{Kind: export.KindAllow, Name: "edge", V4: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("128.0.0.0/2")}})
	load(export.List{Kind: export.KindList, Name: "edge", V4: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	load(export.List{Kind: export.KindList, Name: "a-b", V4: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}})
	load(export.List{Kind: export.KindList, Name: "a_b", V4: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32")}})
	long := "a-very-long-list-name-of-sixty-four-characters-xxxxxxxxxxxxxxxxx"
	load(export.List{Kind: export.KindList, Name: long, V6: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}})
	for set, want := range map[string]string{
		"muninn_deny_edge_4":         "198.51.100.0/24",
		"muninn_allow_edge_4":        "0.0.0.0/1, 128.0.0.0/2",
		"muninn_list_edge_4":         "203.0.113.0/24",
		"muninn_list_a-b_4":          "192.0.2.1",
		"muninn_list_a_b_4":          "192.0.2.2",
		"muninn_list_" + long + "_6": "2001:db8::/32",
		"muninn_deny_edge_6":         "",
	} {
		out := ns.Exec(t, "nft", "list", "set", "inet", "muninn_export", set)
		elems := ""
		if _, after, ok := strings.Cut(out, "elements = { "); ok {
			elems, _, _ = strings.Cut(after, " }")
		}
		require.Equal(t, want, elems, "set %s:\n%s", set, out)
	}
	require.Contains(t, ns.Exec(t, "nft", "list", "chain", "inet", "muninn_export", "in"), "ip saddr @muninn_deny_edge_4 drop")
}
