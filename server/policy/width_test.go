package policy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckWidth(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0.0.0.0/0":            "0.0.0.0/0 is wider than /8, the widest IPv4 prefix accepted (it covers all of IPv4); an admin may accept it with allow_wide=true",
		"::/0":                 "::/0 is wider than /32, the widest IPv6 prefix accepted (it covers all of IPv6); an admin may accept it with allow_wide=true",
		"::ffff:0:0/96":        "0.0.0.0/0 is wider than /8, the widest IPv4 prefix accepted (it covers all of IPv4); an admin may accept it with allow_wide=true",
		"::ffff:192.0.0.0/103": "192.0.0.0/7 is wider than /8, the widest IPv4 prefix accepted (it covers 1/128 of IPv4, 33554432 addresses); an admin may accept it with allow_wide=true",
		"128.0.0.0/1":          "128.0.0.0/1 is wider than /8, the widest IPv4 prefix accepted (it covers 1/2 of IPv4, 2147483648 addresses); an admin may accept it with allow_wide=true",
		"2001:db8::/31":        "2001:db8::/31 is wider than /32, the widest IPv6 prefix accepted (it covers 1/2147483648 of IPv6, 2^97 addresses); an admin may accept it with allow_wide=true",
		"8000::/1":             "8000::/1 is wider than /32, the widest IPv6 prefix accepted (it covers 1/2 of IPv6, 2^127 addresses); an admin may accept it with allow_wide=true",
		"192.0.0.0/8":          "",
		"::ffff:192.0.0.0/104": "",
		"2001:db8::/32":        "",
		"192.0.2.1/32":         "",
		"2001:db8::1/128":      "",
		// A mapped prefix shorter than /96 is IPv6 space, judged as IPv6.
		"::ffff:0:0/95": "",
	} {
		err := CheckWidth(netip.MustParsePrefix(in))
		if want == "" {
			require.NoError(t, err, in)
			continue
		}
		require.EqualError(t, err, want, in)
	}
}

// FuzzCheckWidth: the width rule agrees with its definition on every
// prefix, and WideCIDRs finds exactly the cidr values it refuses.
func FuzzCheckWidth(f *testing.F) {
	for _, s := range []string{"0.0.0.0/0", "::/0", "::ffff:0:0/96", "192.0.0.0/8", "192.0.0.0/7", "2001:db8::/32", "2001:db8::/31", "::ffff:0:0/95", "198.51.100.7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseCIDR(s)
		if err != nil {
			return
		}
		limit := MinBitsV6
		if p.Addr().Is4() {
			limit = MinBitsV4
		}
		werr := CheckWidth(p)
		require.Equal(t, p.Bits() < limit, werr != nil, "%s (%s)", s, p)
		rs := &Ruleset{Name: "f", Hook: HookInput, Rules: []Rule{{Action: ActionBlock, Conds: []Cond{{Kind: KindCIDR, Values: []string{p.String()}}}}}}
		wide := rs.WideCIDRs()
		if werr == nil {
			require.Empty(t, wide)
			return
		}
		require.Len(t, wide, 1)
		require.Equal(t, "/rules/0/conds/0/values/0", wide[0].Pointer)
		require.Equal(t, "rule 1: cidr "+werr.Error(), wide[0].Reason())
	})
}
