package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestETagMatches: If-None-Match as RFC 9110 §13.1.2 reads it: "*" for a
// resource that exists, lists, weak comparison, malformed members.
func TestETagMatches(t *testing.T) {
	t.Parallel()
	const etag = `"abc"`
	for inm, want := range map[string]bool{
		`"abc"`:                 true,
		`*`:                     true,
		` * `:                   true,
		`W/"abc"`:               true,
		`"x", "abc"`:            true,
		`"x",W/"abc"`:           true,
		`"x" ,  "abc" , "y"`:    true,
		`"a,b", "abc"`:          true, // a comma inside an entity tag
		`"x"`:                   false,
		`"ab"`:                  false,
		`"abcd"`:                false,
		`abc`:                   false,
		`"x", abc`:              false,
		`""`:                    false,
		``:                      false,
		`"x" "abc"`:             false, // no comma: malformed, nothing after it counts
		`W/"x", W/"y"`:          false,
		`"abc`:                  false,
		`*, "x"`:                false, // * is alone or not at all
		`"xabc"`:                false,
		`W/"a", "abc"` + ",":    true,
		`, , "abc"`:             true,
		`"abc" ; "x"`:           false,
		`w/"abc"`:               false, // W/ is case-sensitive
		`"x", "y", *`:           false,
		`"\u00e9", "abc"`:       true,
		`"x",` + "\t" + `"abc"`: true,
	} {
		require.Equal(t, want, etagMatches(&inm, etag), "If-None-Match: %s", inm)
	}
	require.False(t, etagMatches(nil, etag))
	weak := `"x", "abc"`
	require.True(t, etagMatches(&weak, `W/"abc"`), "a weak current ETag compares weakly too")
}

// FuzzETagMatches: any If-None-Match header is read without a panic; a
// well-formed ETag matches itself and its weak form; a header that matches
// keeps matching with an unrelated tag added to its list.
func FuzzETagMatches(f *testing.F) {
	for _, s := range []string{`"abc"`, `*`, `W/"abc", "x"`, `"a,b"`, `"`, `W/`, `, ,`, `"x" "abc"`, `W/"abc`} {
		f.Add(s, `"abc"`)
	}
	f.Fuzz(func(t *testing.T, inm, etag string) {
		m := etagMatches(&inm, etag)
		if m && strings.TrimSpace(inm) != "*" {
			more := inm + `, "unrelated-tag"`
			require.True(t, etagMatches(&more, etag), "%q", more)
		}
		if len(etag) < 2 || etag[0] != '"' || strings.IndexByte(etag[1:], '"') != len(etag)-2 {
			return // not an entity tag
		}
		for _, self := range []string{etag, "W/" + etag, `"x", ` + etag} {
			require.True(t, etagMatches(&self, etag), "%q", self)
		}
	})
}
