package export_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/export"
	"github.com/muninn/muninn/server/resolve"
)

// TestMMDBIPv4Forms: an IPv4 address looked up in its IPv4-mapped IPv6
// form finds its record; an IPv6 prefix over ::/96 and ::ffff:0:0/96 (or
// inside ::/96) never overwrites IPv4 data; 6to4 stays the stored IPv6
// prefix's (GET /ips answers it there).
func TestMMDBIPv4Forms(t *testing.T) {
	t.Parallel()
	rec := func(p, note string) export.Record {
		return export.Record{Prefix: netip.MustParsePrefix(p), View: resolve.View{Classification: "malicious", Note: note}, Score: 100}
	}
	records := []export.Record{
		rec("::/8", "C"), // broad IPv6, inserted after the IPv4 records
		rec("192.0.2.0/24", "A"),
		rec("192.0.2.128/25", "B"),
		rec("::1/128", "D"), // inside ::/96: left out
		rec("2002::/16", "E"),
		rec("0.0.0.0/30", "F"),
	}
	tree, err := export.MMDB(records, time.Unix(1_700_000_000, 0))
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = tree.WriteTo(&buf)
	require.NoError(t, err)
	db, err := maxminddb.OpenBytes(buf.Bytes())
	require.NoError(t, err)
	for addr, want := range map[string]string{
		"192.0.2.1":           "A",
		"::ffff:192.0.2.1":    "A",
		"192.0.2.200":         "B",
		"::ffff:192.0.2.200":  "B",
		"198.51.100.1":        "",
		"::ffff:198.51.100.1": "",
		"0.0.0.1":             "F", // not D, not C
		"::ffff:0.0.0.2":      "F",
		"0.0.0.9":             "",  // ::/8 does not reach into IPv4
		"::1:0:0:1":           "C", // in ::/8, outside ::/96
		"ff::1":               "C",
		"::fffe:0:0":          "C", // just below ::ffff:0:0/96
		"::1:0:0:0:0":         "C", // just above it
		"2002:c000:201::1":    "E", // 6to4: the stored IPv6 prefix, not 192.0.2.1
		"2001:db8::1":         "",
	} {
		var got struct {
			Muninn struct {
				Note string `maxminddb:"note"`
			} `maxminddb:"muninn"`
		}
		res := db.Lookup(netip.MustParseAddr(addr))
		require.NoError(t, res.Err(), addr)
		require.Equal(t, want != "", res.Found(), addr)
		if want != "" {
			require.NoError(t, res.Decode(&got), addr)
			require.Equal(t, want, got.Muninn.Note, addr)
		}
	}
}
