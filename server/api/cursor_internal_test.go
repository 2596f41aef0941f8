package api

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParseCursor: a search cursor is accepted only when it is a canonical
// prefix (what next_cursor carries), and it round-trips through its string.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"", "192.0.2.0/24", "192.0.2.1/24", "2001:db8::/32", "::ffff:192.0.2.0/120", "17", "fe80::1%eth0/128"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, fe := parseCursor(&s)
		if fe != nil {
			require.Equal(t, "cursor", fe.Field)
			require.False(t, p.IsValid())
			return
		}
		if s == "" {
			require.False(t, p.IsValid())
			return
		}
		require.Equal(t, p.Masked(), p)
		require.False(t, p.Addr().Is4In6())
		again := p.String()
		q, fe := parseCursor(&again)
		require.Nil(t, fe)
		require.Equal(t, p, q)
	})
}

func TestParseCursor(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]netip.Prefix{
		"192.0.2.0/24":  netip.MustParsePrefix("192.0.2.0/24"),
		"2001:db8::/32": netip.MustParsePrefix("2001:db8::/32"),
	} {
		p, fe := parseCursor(&in)
		require.Nil(t, fe, in)
		require.Equal(t, want, p, in)
	}
	for _, in := range []string{"192.0.2.1/24", "17", "::ffff:192.0.2.0/120", "192.0.2.1"} {
		_, fe := parseCursor(&in)
		require.NotNil(t, fe, in)
	}
}
