package policy

import (
	"bytes"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAggregatorFormats(t *testing.T) {
	t.Parallel()
	var a Aggregator
	require.NoError(t, a.Add(strings.NewReader(`# header
; spamhaus header
198.51.100.1	7
198.51.100.0 ; SBL123
198.51.100.2/31 ; SBL1
{"cidr":"203.0.113.0/25","sblid":"SBL1","rir":null}
{"type":"metadata","timestamp":1}
203.0.113.128	203.0.113.255	25	12	NET	US	abuse@example.net
attacker
192.0.2.1,0.9
2001:db8::/32 ; SBL9
garbage
`)))
	require.Equal(t, 12, a.Lines)
	require.Equal(t, 7, a.Entries)
	v4, v6, err := a.Prefixes()
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("198.51.100.0/30"), netip.MustParsePrefix("203.0.113.0/24")}, v4)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, v6)
}

// sharedDir locates ../shared: MUNINN_SHARED_DIR, else relative to the repo root.
func sharedDir() string {
	if d := os.Getenv("MUNINN_SHARED_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "shared")
}

// BenchmarkAggregateFeeds merges every file under shared/data/feeds into the
// minimal CIDR list and, when installed, times FireHOL's iprange on the same
// files for comparison (iprange reads IPv4 only).
func BenchmarkAggregateFeeds(b *testing.B) {
	root := filepath.Join(sharedDir(), "data", "feeds")
	var files []string
	var data [][]byte
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "README.md" {
			return err
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files, data = append(files, path), append(data, content)
		return nil
	})
	if err != nil || len(files) == 0 {
		b.Skipf("no feed data under %s: %v", root, err)
	}
	// iprange reads IPv4 only and sends every line it cannot parse to DNS (a
	// 1-6 s stall per file here), so it is compared on the plain-list files.
	var plainFiles []string
	var plainData [][]byte
	for i, f := range files {
		rel, _ := filepath.Rel(root, f)
		switch filepath.ToSlash(rel) {
		case "dshield/block.txt", "spamhaus/drop_v4.json", "spamhaus/dropv6.txt", "ipsum/ipsum.txt":
		default:
			plainFiles, plainData = append(plainFiles, f), append(plainData, data[i])
		}
	}
	b.Run("muninn-all", func(b *testing.B) { benchAggregate(b, data) })
	b.Run("muninn-plain", func(b *testing.B) { benchAggregate(b, plainData) })
	b.Run("iprange-plain", func(b *testing.B) {
		path, err := exec.LookPath("iprange")
		if err != nil {
			b.Skip("iprange is not installed")
		}
		var out []byte
		for b.Loop() {
			out, err = exec.Command(path, plainFiles...).Output()
			require.NoError(b, err)
		}
		b.ReportMetric(float64(bytes.Count(out, []byte("\n"))), "cidrs")
	})
}

func benchAggregate(b *testing.B, data [][]byte) {
	var lines, out int
	for b.Loop() {
		var a Aggregator
		for _, d := range data {
			require.NoError(b, a.Add(bytes.NewReader(d)))
		}
		v4, v6, err := a.Prefixes()
		require.NoError(b, err)
		lines, out = a.Lines, len(v4)+len(v6)
	}
	b.ReportMetric(float64(lines), "lines")
	b.ReportMetric(float64(out), "cidrs")
}
