package api

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
)

// FuzzOverrideBody: an override body is either refused with field errors
// that point into it, or becomes a store override holding exactly its valid
// values.
func FuzzOverrideBody(f *testing.F) {
	for _, s := range []string{
		`{"classification":"malicious","add_tags":["scanner"]}`,
		`{"add_tags":["reviewed"],"suppress_tags":["ipsum"],"note":"ok","expires_at":"2030-01-01T00:00:00Z"}`,
		`{"classification":"evil","add_tags":["","a b"]}`,
		`{"add_tags":["x\u0000y"],"note":"\u0000"}`,
		`{}`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var o apigen.Override
		if json.Unmarshal(b, &o) != nil {
			return
		}
		out, errs := validateOverride(o)
		for _, e := range errs {
			require.Contains(t, []string{"/classification", "/add_tags/", "/suppress_tags/"}, fieldRoot(e.Field), e.Field)
			require.NotEmpty(t, e.Reason)
		}
		if len(errs) > 0 {
			return
		}
		if out.Classification != "" {
			require.True(t, resolve.ValidClassification(out.Classification))
		}
		for _, tag := range append(append([]string{}, out.AddTags...), out.SuppressTags...) {
			require.Empty(t, tagNameProblem(tag), tag)
		}
		require.Equal(t, deref(o.Note), out.Note)
		require.Equal(t, deref(o.AddTags), out.AddTags)
	})
}

func fieldRoot(f string) string {
	for _, root := range []string{"/add_tags/", "/suppress_tags/"} {
		if len(f) > len(root) && f[:len(root)] == root {
			if _, err := strconv.Atoi(f[len(root):]); err == nil {
				return root
			}
		}
	}
	return f
}

// FuzzNetworkPath: the network of /networks/{address}/{bits}[/override] is
// refused with a field error, or is canonical; the width check of overrides
// refuses exactly what the one width rule refuses.
func FuzzNetworkPath(f *testing.F) {
	for _, c := range []struct {
		addr string
		bits int
	}{{"0.0.0.0", 0}, {"::", 0}, {"::ffff:0:0", 96}, {"::ffff:192.0.2.0", 120}, {"192.0.2.0", 24}, {"192.0.2.1", 24}, {"2001:db8::", 32}, {"fe80::1%eth0", 64}, {"::ffff:0:0", 95}} {
		f.Add(c.addr, c.bits)
	}
	f.Fuzz(func(t *testing.T, addr string, bits int) {
		p, bad := netPrefix(addr, bits)
		if bad != nil {
			require.Equal(t, 400, bad.Status)
			require.NotNil(t, bad.Errors)
			require.Len(t, *bad.Errors, 1)
			require.Contains(t, []string{"address", "bits"}, (*bad.Errors)[0].Field)
			return
		}
		require.Equal(t, p.Masked(), p)
		require.False(t, p.Addr().Is4In6())
		require.Empty(t, p.Addr().Zone())
		wp := widthProblem(p, "bits", false)
		require.Equal(t, policy.CheckWidth(p) != nil, wp != nil)
		require.Nil(t, widthProblem(p, "bits", true), "allow_wide lifts the limit")
	})
}

// FuzzParseIDCursor: an audit cursor is a non-negative id, or a field error.
func FuzzParseIDCursor(f *testing.F) {
	for _, s := range []string{"", "0", "17", "-1", "9223372036854775808", "1e3", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, fe := parseIDCursor(&s)
		if fe != nil {
			require.Equal(t, "cursor", fe.Field)
			return
		}
		require.GreaterOrEqual(t, n, int64(0))
		if s != "" {
			require.Equal(t, s, strconv.FormatInt(n, 10), "only the canonical form is accepted")
		}
	})
}
