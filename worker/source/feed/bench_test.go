package feed_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/muninn/muninn/worker/source/feed"
)

func BenchmarkParse(b *testing.B) {
	for _, tc := range []struct{ name, file, format string }{
		{"list/firehol_level4", "firehol/firehol_level4.netset", "list"},
		{"ipsum", "ipsum/ipsum.txt", "ipsum"},
		{"spamhaus/drop_v4.json", "spamhaus/drop_v4.json", "spamhaus"},
		{"json/drop_v4.json", "spamhaus/drop_v4.json", "json"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := os.Getenv("MUNINN_SHARED_DIR")
			if dir == "" {
				dir = filepath.Join("..", "..", "..", "..", "shared")
			}
			data, err := os.ReadFile(filepath.Join(dir, "data", "feeds", tc.file))
			if err != nil {
				b.Skipf("feed data: %v", err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				res, err := feed.Parse(tc.format, feed.Options{}, bytes.NewReader(data))
				if err != nil || len(res.Prefixes) == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}
