package feed_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker/source/feed"
)

// bomCases are a feed of every format, each starting with a UTF-8 byte-order
// mark, and the prefixes it holds. csv lost its header handling (the mark
// became part of the first column's name) and json failed outright.
var bomCases = []struct {
	format string
	opts   feed.Options
	text   string
	want   []string
}{
	{feed.FormatList, feed.Options{}, "198.51.100.1\n203.0.113.0/24\n", []string{"198.51.100.1/32", "203.0.113.0/24"}},
	{feed.FormatIPsum, feed.Options{}, "198.51.100.1\t3\n", []string{"198.51.100.1/32"}},
	{feed.FormatSpamhaus, feed.Options{}, "203.0.113.0/24 ; SBL1\n", []string{"203.0.113.0/24"}},
	{feed.FormatDShield, feed.Options{}, "203.0.113.0\t203.0.113.255\t24\n", []string{"203.0.113.0/24"}},
	{feed.FormatCSV, feed.Options{}, "198.51.100.1,x\n198.51.100.2,y\n", []string{"198.51.100.1/32", "198.51.100.2/32"}},
	{feed.FormatCSV, feed.Options{ColumnName: "ip"}, "ip,score\n198.51.100.1,5\n", []string{"198.51.100.1/32"}},
	{feed.FormatJSON, feed.Options{}, `[{"ip":"198.51.100.1"},{"ip":"2001:db8::/32"}]`, []string{"198.51.100.1/32", "2001:db8::/32"}},
	{feed.FormatJSON, feed.Options{}, "{\"ip\":\"198.51.100.1\"}\n{\"ip\":\"198.51.100.2\"}\n", []string{"198.51.100.1/32", "198.51.100.2/32"}},
}

func TestParseSkipsByteOrderMarkInEveryFormat(t *testing.T) {
	t.Parallel()
	for _, c := range bomCases {
		res, err := feed.Parse(c.format, c.opts, strings.NewReader("\ufeff"+c.text))
		require.NoError(t, err, "%s %+v", c.format, c.opts)
		var got []string
		for _, p := range res.Prefixes {
			got = append(got, p.String())
		}
		require.Equal(t, c.want, got, "%s %+v", c.format, c.opts)
		require.Zero(t, res.RejectedCount, "%s %+v: %+v", c.format, c.opts, res.Rejected)
	}
}

// FuzzParse: every format's parser never panics on any input; what it returns
// is canonical, unique and within the width limit, and the rejected lines
// are counted.
func FuzzParse(f *testing.F) {
	formats := feed.Formats()
	for i, c := range bomCases {
		f.Add(uint8(i), []byte("\ufeff"+c.text))
		f.Add(uint8(i), []byte(c.text))
	}
	for i := range formats {
		for _, s := range []string{"0.0.0.0/0\n::/0\n::ffff:0:0/96\n", "# comment\n198.51.100.1 # x\n", "\"a,\"b\n", "{\"ip\":[\"198.51.100.1\",{\"x\":\"2001:db8::1\"}]}", "198.51.100.1\x00\n\xff\xfe\n"} {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, pick uint8, text []byte) {
		format := formats[int(pick)%len(formats)]
		var opts feed.Options
		if format == feed.FormatCSV && pick&0x80 != 0 {
			opts.Header = true
		}
		res, err := feed.Parse(format, opts, strings.NewReader(string(text)))
		if err != nil {
			return
		}
		seen := map[netip.Prefix]bool{}
		for _, p := range res.Prefixes {
			require.True(t, p.IsValid())
			require.Equal(t, p.Masked(), p)
			require.False(t, p.Addr().Is4In6())
			require.False(t, seen[p], "duplicate %s", p)
			seen[p] = true
			if p.Addr().Is4() {
				require.GreaterOrEqual(t, p.Bits(), 8, "%s", p)
			} else {
				require.GreaterOrEqual(t, p.Bits(), 32, "%s", p)
			}
		}
		require.GreaterOrEqual(t, res.RejectedCount, len(res.Rejected))
		require.LessOrEqual(t, len(res.Rejected), feed.MaxRejectedKept)
	})
}
