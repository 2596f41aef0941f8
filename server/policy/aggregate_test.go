package policy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"
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

// feedFiles reads every file under shared/data/feeds (README.md aside).
func feedFiles(tb testing.TB) (files []string, data [][]byte) {
	root := filepath.Join(sharedDir(), "data", "feeds")
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
	require.NoError(tb, err, "feed data under %s (set MUNINN_SHARED_DIR)", root)
	require.NotEmpty(tb, files, "feed data under %s (set MUNINN_SHARED_DIR)", root)
	return files, data
}

// extractV4 returns, one a line, the IPv4 address, prefix or (for the few
// ranges that are no single prefix) "first-last" range of every line of data the aggregator takes, so iprange (which reads
// IPv4 only and resolves every other token through DNS) gets exactly the
// same entries and nothing else.
func extractV4(data [][]byte) []byte {
	var out []byte
	for _, d := range data {
		for line := range bytes.Lines(d) {
			var a Aggregator
			if !a.addLine(line) || len(a.v4) != 1 {
				continue
			}
			from, to := uint32(a.v4[0]>>32), uint32(a.v4[0])
			if ps := appendV4(nil, from, to); len(ps) == 1 {
				if ps[0].IsSingleIP() {
					out = fmt.Appendf(out, "%s\n", ps[0].Addr())
				} else {
					out = fmt.Appendf(out, "%s\n", ps[0])
				}
				continue
			}
			out = fmt.Appendf(out, "%s-%s\n", netip.AddrFrom4([4]byte{byte(from >> 24), byte(from >> 16), byte(from >> 8), byte(from)}),
				netip.AddrFrom4([4]byte{byte(to >> 24), byte(to >> 16), byte(to >> 8), byte(to)}))
		}
	}
	return out
}

// BenchmarkAggregateFeeds merges every file under shared/data/feeds into the
// minimal CIDR lists ("all"), then compares muninn and FireHOL's iprange
// (when installed; make bench installs it) on the same input: the IPv4
// entries of every feed line, extracted one a line into a file. The target
// is muninn ≤ 1.5× iprange on that input.
func BenchmarkAggregateFeeds(b *testing.B) {
	_, data := feedFiles(b)
	extracted := extractV4(data)
	path := filepath.Join(b.TempDir(), "extracted.txt")
	require.NoError(b, os.WriteFile(path, extracted, 0o600))
	b.Run("muninn-all", func(b *testing.B) { benchAggregate(b, data) })
	b.Run("muninn-extracted", func(b *testing.B) {
		// Read from the file, as iprange does.
		var lines, out int
		for b.Loop() {
			f, err := os.Open(path)
			require.NoError(b, err)
			var a Aggregator
			require.NoError(b, a.Add(f))
			f.Close()
			v4, _, err := a.Prefixes()
			require.NoError(b, err)
			w := bufio.NewWriter(io.Discard)
			for _, p := range v4 {
				w.WriteString(p.String())
				w.WriteByte('\n')
			}
			w.Flush()
			lines, out = a.Lines, len(v4)
		}
		b.ReportMetric(float64(lines), "lines")
		b.ReportMetric(float64(out), "cidrs")
	})
	b.Run("iprange-extracted", func(b *testing.B) {
		bin, err := exec.LookPath("iprange")
		if err != nil {
			b.Skip("iprange is not installed (apt-get install iprange)")
		}
		var out []byte
		for b.Loop() {
			out, err = exec.Command(bin, path).Output()
			require.NoError(b, err)
		}
		b.ReportMetric(float64(bytes.Count(extracted, []byte("\n"))), "lines")
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

// referenceAggregate is the straightforward aggregation the fast one must
// equal: every line parsed through net/netip into an IPSet.
func referenceAggregate(data []byte) (lines, entries int, v4, v6 []netip.Prefix) {
	var b netipx.IPSetBuilder
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	addField := func(f []byte) bool {
		p, err := parseCIDR(string(f))
		if err != nil {
			return false
		}
		b.AddPrefix(p)
		return true
	}
	add := func(line []byte) bool {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' || line[0] == ';' {
			return false
		}
		if line[0] == '{' {
			i := bytes.Index(line, []byte(`"cidr":"`))
			if i < 0 {
				return false
			}
			rest := line[i+len(`"cidr":"`):]
			end := bytes.IndexByte(rest, '"')
			if end < 0 {
				return false
			}
			return addField(rest[:end])
		}
		first, rest := field(line)
		if second, _ := field(rest); len(second) > 0 {
			from, err1 := netip.ParseAddr(string(first))
			to, err2 := netip.ParseAddr(string(second))
			if err1 == nil && err2 == nil {
				if r := netipx.IPRangeFrom(from.Unmap(), to.Unmap()); r.IsValid() {
					b.AddRange(r)
					return true
				}
			}
		}
		return addField(first)
	}
	for sc.Scan() {
		lines++
		if add(sc.Bytes()) {
			entries++
		}
	}
	s, _ := b.IPSet()
	for _, p := range s.Prefixes() {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return lines, entries, v4, v6
}

func requireSameAggregate(t *testing.T, data []byte) {
	t.Helper()
	var a Aggregator
	require.NoError(t, a.Add(bytes.NewReader(data)))
	v4, v6, err := a.Prefixes()
	require.NoError(t, err)
	lines, entries, w4, w6 := referenceAggregate(data)
	require.Equal(t, lines, a.Lines)
	require.Equal(t, entries, a.Entries)
	require.Equal(t, w4, v4)
	require.Equal(t, w6, v6)
}

// TestAggregatorMatchesReferenceOnFeeds compares the fast aggregation with
// the reference on every feed file (skipped files are reported as such).
func TestAggregatorMatchesReferenceOnFeeds(t *testing.T) {
	t.Parallel()
	_, data := feedFiles(t)
	requireSameAggregate(t, bytes.Join(data, []byte("\n")))
}

func FuzzAggregator(f *testing.F) {
	for _, s := range []string{
		"192.0.2.1\n198.51.100.0/24 ; SBL1\n", "203.0.113.128\t203.0.113.255\t25\n", `{"cidr":"203.0.113.0/25"}`,
		"2001:db8::/32\n::ffff:192.0.2.1\n", "1.2.3.4 ::ffff:1.2.3.9\n", "01.2.3.4\n1.2.3.4/08\n1.2.3.4/33\n255.255.255.255/0\n",
		"0.0.0.0/0\n255.255.255.255\n", "10.0.0.0 9.0.0.0\n", "fe80::1%eth0\n", "1.2.3.4.\n1..2.3\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		requireSameAggregate(t, data)
	})
}
