package export_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/export"
	"github.com/muninn/muninn/server/resolve"
)

// FuzzZeekRow: whatever a note, tag, source or base URL holds, a Zeek row
// is one line of exactly the header's five TAB-separated fields, none empty.
func FuzzZeekRow(f *testing.F) {
	f.Add("198.51.100.7/32", "malicious", "ssh-bruteforce", "https://muninn.example")
	f.Add("2001:db8::/48", "", "a\tb\nc", "")
	f.Fuzz(func(t *testing.T, prefix, class, tag, base string) {
		p, err := netip.ParsePrefix(prefix)
		if err != nil {
			return
		}
		v := resolve.View{Classification: class, Tags: []resolve.TagFact{{Name: tag}}}
		var b bytes.Buffer
		require.NoError(t, export.WriteZeekRow(&b, export.Record{Prefix: p.Masked(), View: v, Score: 100}, base))
		line, ok := strings.CutSuffix(b.String(), "\n")
		require.True(t, ok)
		require.NotContains(t, line, "\n")
		fields := strings.Split(line, "\t")
		require.Len(t, fields, 5)
		for _, fl := range fields {
			require.NotEmpty(t, fl)
		}
	})
}

// FuzzSuricataCategories: every categories line is `id,short_name,description`
// with exactly three comma-separated fields and an id from 1 to 60.
func FuzzSuricataCategories(f *testing.F) {
	f.Add("scanner", "Internet, scanners\nand more")
	f.Fuzz(func(t *testing.T, tag, desc string) {
		if tag == "" || strings.ContainsAny(tag, ",\r\n") {
			return // tag names never hold these (the API refuses them)
		}
		var b bytes.Buffer
		require.NoError(t, export.WriteSuricataCategories(&b, map[string]int{tag: 1}, map[string]string{tag: desc}))
		line, ok := strings.CutSuffix(b.String(), "\n")
		require.True(t, ok)
		require.NotContains(t, line, "\n")
		require.Len(t, strings.Split(line, ","), 3)
		require.True(t, strings.HasPrefix(line, "1,"+tag+","))
	})
}

// FuzzMMDB: any set of prefixes builds a database (nested, both families,
// 6to4 and Teredo included) without error.
func FuzzMMDB(f *testing.F) {
	f.Add([]byte{198, 51, 100, 0, 24, 1, 0x20, 0x02, 0, 0, 16})
	f.Fuzz(func(t *testing.T, data []byte) {
		var recs []export.Record
		for len(data) >= 5 {
			var p netip.Prefix
			if data[0]&1 == 0 {
				p = netip.PrefixFrom(netip.AddrFrom4([4]byte(data[:4])), int(data[4])%33)
				data = data[5:]
			} else if len(data) >= 18 {
				p = netip.PrefixFrom(netip.AddrFrom16([16]byte(data[1:17])), int(data[17])%129)
				data = data[18:]
			} else {
				break
			}
			recs = append(recs, export.Record{Prefix: p.Masked(), View: resolve.View{Classification: "unknown"}})
		}
		_, err := export.MMDB(recs, time.Unix(0, 0))
		require.NoError(t, err)
	})
}
