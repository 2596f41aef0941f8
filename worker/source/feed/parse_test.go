package feed_test

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker/source/feed"
)

// sharedDir finds the shared data directory: MUNINN_SHARED_DIR, else
// ../../../shared or ../../../../shared from this package (the checkout
// sits beside shared/).
func sharedDir(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("MUNINN_SHARED_DIR"),
		filepath.Join("..", "..", "..", "shared"),
		filepath.Join("..", "..", "..", "..", "shared")}
	for _, dir := range candidates {
		if dir == "" {
			continue
		}
		if st, err := os.Stat(filepath.Join(dir, "data", "feeds")); err == nil && st.IsDir() {
			return filepath.Join(dir, "data", "feeds")
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI must run this: shared feed data not found; set MUNINN_SHARED_DIR")
	}
	t.Skip("shared feed data not found; set MUNINN_SHARED_DIR")
	return ""
}

// independent counts unique prefixes the slow, different way: regular
// expressions pick the address text and the old net package normalises it.
// It also counts entries wider than the default guard.
func independent(t *testing.T, format string, data []byte) (unique, wide int) {
	t.Helper()
	var tokens []string
	lines := strings.Split(string(data), "\n")
	switch format {
	case "dshield":
		re := regexp.MustCompile(`^([0-9.]+)\t[0-9.]+\t([0-9]+)\t`)
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				tokens = append(tokens, m[1]+"/"+m[2])
			}
		}
	case "spamhaus-json":
		re := regexp.MustCompile(`"cidr":"([^"]+)"`)
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				tokens = append(tokens, m[1])
			}
		}
	case "csv":
		for _, l := range lines[1:] {
			if l = strings.TrimSpace(l); l != "" {
				tokens = append(tokens, strings.Split(l, ",")[0])
			}
		}
	default:
		re := regexp.MustCompile(`^\s*([0-9a-fA-F:.]+(/[0-9]+)?)`)
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				tokens = append(tokens, m[1])
			}
		}
	}
	set := map[string]bool{}
	for _, tok := range tokens {
		if !strings.Contains(tok, "/") {
			ip := net.ParseIP(tok)
			require.NotNil(t, ip, tok)
			if ip.To4() != nil {
				tok += "/32"
			} else {
				tok += "/128"
			}
		}
		_, n, err := net.ParseCIDR(tok)
		require.NoError(t, err, tok)
		ones, bits := n.Mask.Size()
		if (bits == 32 && ones < 8) || (bits == 128 && ones < 32) {
			wide++
			continue
		}
		set[n.String()] = true
	}
	return len(set), wide
}

func TestParseSharedFeeds(t *testing.T) {
	t.Parallel()
	dir := sharedDir(t)
	var files []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(path, "README.md") {
			files = append(files, path)
		}
		return err
	}))
	require.NotEmpty(t, files)
	for _, path := range files {
		rel, _ := filepath.Rel(dir, path)
		format, indep, opts := "list", "list", feed.Options{}
		switch {
		case strings.HasPrefix(rel, "ipsum/ipsum.txt"):
			format = "ipsum"
		case strings.HasPrefix(rel, "spamhaus/") && strings.HasSuffix(rel, ".json"):
			format, indep = "spamhaus", "spamhaus-json"
		case strings.HasPrefix(rel, "spamhaus/"):
			format = "spamhaus"
		case strings.HasPrefix(rel, "dshield/"):
			format, indep = "dshield", "dshield"
		case strings.HasPrefix(rel, "stratosphere/"):
			format, indep, opts = "csv", "csv", feed.Options{ColumnName: "attacker"}
		}
		t.Run(rel, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			res, err := feed.Parse(format, opts, bytes.NewReader(data))
			require.NoError(t, err)
			unique, wide := independent(t, indep, data)
			require.Len(t, res.Prefixes, unique)
			require.Equal(t, wide, res.RejectedCount, "rejections: %v", res.Rejected)
			require.NotZero(t, unique)
			for _, p := range res.Prefixes {
				require.Equal(t, p, p.Masked())
				require.False(t, p.Addr().Is4In6())
			}
		})
	}
}

func TestParseSpamhausJSONAsGenericJSON(t *testing.T) {
	t.Parallel()
	dir := sharedDir(t)
	data, err := os.ReadFile(filepath.Join(dir, "spamhaus", "drop_v4.json"))
	require.NoError(t, err)
	viaJSON, err := feed.Parse("json", feed.Options{}, bytes.NewReader(data))
	require.NoError(t, err)
	viaSpamhaus, err := feed.Parse("spamhaus", feed.Options{}, bytes.NewReader(data))
	require.NoError(t, err)
	require.Equal(t, viaSpamhaus.Prefixes, viaJSON.Prefixes)
}

func TestParseList(t *testing.T) {
	t.Parallel()
	in := "# header\n" +
		"; also a comment\n" +
		"\n" +
		"192.0.2.1\n" +
		"198.51.100.77/24   # host bits set\n" +
		"  2001:db8::1/32 ; v6\n" +
		"::ffff:203.0.113.9\n" +
		"::ffff:203.0.113.0/120\n" +
		"not-an-ip\n" +
		"192.0.2.1\n" +
		"10.0.0.0/7\n" +
		"192.0.2.5 192.0.2.6\n" +
		"192.0.2.300\n" +
		"fe80::1%eth0\n"
	res, err := feed.Parse("list", feed.Options{}, strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("203.0.113.9/32"),
		netip.MustParsePrefix("203.0.113.0/24"),
	}, res.Prefixes)
	require.Equal(t, 1, res.Duplicates)
	require.Equal(t, 14, res.Lines)
	require.Equal(t, 5, res.RejectedCount)
	lines := []int{}
	for _, r := range res.Rejected {
		lines = append(lines, r.Line)
		require.NotEmpty(t, r.Reason)
	}
	require.Equal(t, []int{9, 11, 12, 13, 14}, lines)
	require.Equal(t, "not-an-ip", res.Rejected[0].Text)
	require.Contains(t, res.Rejected[1].Reason, "wider than /8")
}

func TestParseGuardConfigurable(t *testing.T) {
	t.Parallel()
	in := "10.0.0.0/7\n2001:db8::/24\n"
	res, err := feed.Parse("list", feed.Options{}, strings.NewReader(in))
	require.NoError(t, err)
	require.Empty(t, res.Prefixes)
	require.Equal(t, 2, res.RejectedCount)

	res, err = feed.Parse("list", feed.Options{MaxPrefixLen: feed.MaxPrefixLen{V4: -1, V6: 16}}, strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, res.Prefixes, 2)

	res, err = feed.Parse("list", feed.Options{MaxPrefixLen: feed.MaxPrefixLen{V4: 16}}, strings.NewReader("10.1.0.0/15\n10.1.0.0/16\n"))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, res.Prefixes)
}

func TestParseRejectedKeepsFirst100(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 250 {
		b.WriteString("bad" + strconv.Itoa(i) + "\n")
	}
	res, err := feed.Parse("list", feed.Options{}, strings.NewReader(b.String()))
	require.NoError(t, err)
	require.Equal(t, 250, res.RejectedCount)
	require.Len(t, res.Rejected, feed.MaxRejectedKept)
	require.Equal(t, 100, res.Rejected[99].Line)
}

func TestParseLineTooLong(t *testing.T) {
	t.Parallel()
	in := "192.0.2.1\n" + strings.Repeat("x", 2<<20) + "\n"
	_, err := feed.Parse("list", feed.Options{}, strings.NewReader(in))
	require.ErrorContains(t, err, "line 2")
}

func TestParseIPsum(t *testing.T) {
	t.Parallel()
	in := "# IPsum\n# IP\tnumber of (black)lists\n" +
		"192.0.2.1\t10\n" +
		"192.0.2.2\t3\n" +
		"192.0.2.3\t1\n" +
		"192.0.2.4\n" +
		"192.0.2.5\tmany\n"
	res, err := feed.Parse("ipsum", feed.Options{MinCount: 3}, strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32")}, res.Prefixes)
	require.Equal(t, 1, res.Filtered)
	require.Equal(t, 2, res.RejectedCount)
	require.Equal(t, 6, res.Rejected[0].Line)
	require.Equal(t, 7, res.Rejected[1].Line)
}

func TestParseSpamhaus(t *testing.T) {
	t.Parallel()
	in := "; Spamhaus DROP List 2026/08/21\n" +
		"192.0.2.0/24 ; SBL000001\n" +
		"2001:db8::/32 ; SBL000002\n" +
		`{"cidr":"198.51.100.0/24","sblid":"SBL000003","rir":null}` + "\n" +
		`{"cidr":"bogus","sblid":"SBL000004","rir":"ripencc"}` + "\n" +
		`{"type":"metadata","timestamp":1784798042,"size":101866,"records":3}` + "\n" +
		`{"cidr":` + "\n" +
		"192.0.2.0/24 SBL ; x\n" +
		"; EOF\n"
	res, err := feed.Parse("spamhaus", feed.Options{}, strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("198.51.100.0/24"),
	}, res.Prefixes)
	require.Equal(t, 1, res.Filtered)
	require.Equal(t, 3, res.RejectedCount)
	require.Equal(t, 5, res.Rejected[0].Line)
	require.Equal(t, 7, res.Rejected[1].Line)
	require.Equal(t, 8, res.Rejected[2].Line)
}

func TestParseDShield(t *testing.T) {
	t.Parallel()
	in := "# DShield\nStart\tEnd\tNetblock\tAttacks\tName\tCountry\temail\n" +
		"192.0.2.0\t192.0.2.255\t24\t170\tEXAMPLE\tZZ\tabuse@example.net\n" +
		"198.51.100.0\t198.51.100.127\t24\t9\t-\t-\t-\n"
	res, err := feed.Parse("dshield", feed.Options{}, strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, res.Prefixes)
	require.Equal(t, 1, res.RejectedCount)
	require.Equal(t, 4, res.Rejected[0].Line)
}

func TestParseCSV(t *testing.T) {
	t.Parallel()
	in := "n;ip;score\n1;192.0.2.1;0.9\n2;\"198.51.100.0/24\";0.5\n3;nope;0.1\n4\n"
	res, err := feed.Parse("csv", feed.Options{ColumnName: "IP", Comma: ';'}, strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("198.51.100.0/24")}, res.Prefixes)
	require.Equal(t, 2, res.RejectedCount)
	require.Equal(t, 4, res.Rejected[0].Line)
	require.Equal(t, 5, res.Rejected[1].Line)

	res, err = feed.Parse("csv", feed.Options{Column: 1, Header: true, Comma: ';'}, strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, res.Prefixes, 2)

	_, err = feed.Parse("csv", feed.Options{ColumnName: "addr"}, strings.NewReader(in))
	require.ErrorContains(t, err, `no column "addr"`)
}

func TestParseJSON(t *testing.T) {
	t.Parallel()
	in := `{"192.0.2.99": "keys are not values",
  "data": [
    {"ip": "192.0.2.1", "tags": ["scanner", "2001:db8::/48"], "n": 3, "ok": true},
    {"nested": {"deep": {"cidr": "198.51.100.0/24"}}, "x": null},
    "203.0.113.7",
    {"wide": "10.0.0.0/6"}
  ]
}
{"ndjson": "192.0.2.200"}
["192.0.2.1"]
`
	res, err := feed.Parse("json", feed.Options{}, strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("2001:db8::/48"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.7/32"),
		netip.MustParsePrefix("192.0.2.200/32"),
	}, res.Prefixes)
	require.Equal(t, 1, res.Duplicates)
	require.Equal(t, 1, res.RejectedCount)
	require.Equal(t, 6, res.Rejected[0].Line)
	require.Equal(t, 10, res.Lines)

	_, err = feed.Parse("json", feed.Options{}, strings.NewReader("{\"a\":\n[1,}"))
	require.ErrorContains(t, err, "line 2")
}

func TestParseOptionsValidated(t *testing.T) {
	t.Parallel()
	_, err := feed.Parse("xml", feed.Options{}, strings.NewReader(""))
	require.ErrorContains(t, err, `unknown format "xml"`)
	for _, tc := range []struct {
		format string
		opts   feed.Options
		want   string
	}{
		{"list", feed.Options{MinCount: 2}, "min count"},
		{"ipsum", feed.Options{MinCount: -1}, "negative"},
		{"list", feed.Options{Column: 2}, "csv"},
		{"csv", feed.Options{Column: -1}, "negative"},
		{"csv", feed.Options{Comma: '"'}, "comma"},
		{"list", feed.Options{MaxPrefixLen: feed.MaxPrefixLen{V4: 33}}, "out of range"},
	} {
		require.ErrorContains(t, tc.opts.Validate(tc.format), tc.want, "%+v", tc)
	}
}
