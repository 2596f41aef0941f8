package feed_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker/source/feed"
)

func TestSniffBody(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
		want error
	}{
		{"empty", "", nil},
		{"list", "198.51.100.1\n", nil},
		{"short", "1", nil},
		{"utf16le-bom", "\xff\xfe1\x009\x00", feed.ErrUTF16},
		{"utf16be-bom", "\xfe\xff\x001\x009", feed.ErrUTF16},
		{"utf16le-nul", "1\x009\x008\x00.\x00", feed.ErrUTF16},
		{"utf16be-nul", "\x001\x009\x008\x00.", feed.ErrUTF16},
		{"all-nul", "\x00\x00\x00\x00", nil},
		{"doctype", "<!doctype html><p>x", feed.ErrHTML},
		{"doctype-upper-bom-space", "\ufeff \r\n<!DOCTYPE HTML>", feed.ErrHTML},
		{"html", "<html lang=en>", feed.ErrHTML},
		{"xml", "<?xml version=\"1.0\"?>", nil},
		{"json", `[{"ip":"198.51.100.1"}]`, nil},
		{"late-html", strings.Repeat(" ", 600) + "<html>", nil},
	} {
		require.Equal(t, tc.want, feed.SniffBody([]byte(tc.body)), tc.name)
	}
	_, err := feed.Parse(feed.FormatJSON, feed.Options{}, strings.NewReader("<html><body>502</body></html>"))
	require.EqualError(t, err, "feed: parse json: body is an HTML page, not a feed")
	_, err = feed.Parse(feed.FormatCSV, feed.Options{}, strings.NewReader("\xff\xfei\x00p\x00"))
	require.EqualError(t, err, "feed: parse csv: body is UTF-16; convert to UTF-8")
}

// FuzzSniffBody: SniffBody never panics and answers one of its three values.
func FuzzSniffBody(f *testing.F) {
	for _, s := range []string{"", "\xff\xfe", "1\x002\x00", "<!doctype html>", "<html>", "198.51.100.1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := feed.SniffBody(b)
		if err != nil && err != feed.ErrUTF16 && err != feed.ErrHTML {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
