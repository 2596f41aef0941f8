package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type passiveName struct {
	Name      string    `json:"name"`
	Client    string    `json:"client"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Seen      int64     `json:"seen"`
}

// bsdYear is the year the server gives a BSD syslog timestamp of month m,
// day d (sensor.Options.Now): this year's, or last year's when that would be
// more than a day ahead.
func bsdYear(now time.Time, m time.Month, d, h, mi, s int) time.Time {
	t := time.Date(now.Year(), m, d, h, mi, s, 0, time.UTC)
	if t.After(now.Add(24 * time.Hour)) {
		t = t.AddDate(-1, 0, 0)
	}
	return t
}

// TestPassiveDNSOneTruth: the dnsmasq lines and the Zeek dns.log line of
// integrations.md §5 become passive DNS; GET /ips/{ip}, the search and the
// JSON, NDJSON and CSV exports of the address all carry the same names from
// the index. An address only answered for (not a sighting) stays unknown to
// GET /ips.
func TestPassiveDNSOneTruth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dnsmasq := strings.Join([]string{
		"Mar  3 10:00:02 gw dnsmasq[501]: query[A] updates.example.net from 192.168.1.10",
		"Mar  3 10:00:02 gw dnsmasq[501]: forwarded updates.example.net to 192.0.2.53",
		"Mar  3 10:00:02 gw dnsmasq[501]: reply updates.example.net is 198.51.100.20",
		"Mar  3 10:00:02 gw dnsmasq[501]: reply nothing.example.net is NXDOMAIN",
		"Mar  3 10:00:02 dnsmasq[501]: 7 192.168.1.11/53211 query[AAAA] cdn.example.com from 192.168.1.11",
		"Mar  3 10:00:02 dnsmasq[501]: 7 192.168.1.11/53211 reply cdn.example.com is <CNAME>",
		"Mar  3 10:00:02 dnsmasq[501]: 7 192.168.1.11/53211 reply edge.example.org is 2001:db8::20",
		"Mar  3 10:00:02 gw dnsmasq[501]: reply 198.51.100.21 is mail.example.net",
	}, "\n")
	res := b.postEvents(t, "Authorization", "Bearer "+b.writer, "?format=dnsmasq", "text/plain", dnsmasq)
	require.EqualValues(t, 8, res.Accepted)
	require.EqualValues(t, 4, res.Events)
	zeek := `{"ts":1772532003.5,"uid":"C1","id.orig_h":"192.168.1.12","id.orig_p":5353,"id.resp_h":"192.168.1.1","id.resp_p":53,"proto":"udp","query":"updates.example.net","qtype_name":"A","rcode_name":"NOERROR","answers":["alias.example.net","198.51.100.20"],"TTLs":[60.0,300.0]}`
	res = b.postEvents(t, "Authorization", "Bearer "+b.writer, "?format=zeek-dns", "text/plain", zeek)
	require.EqualValues(t, 1, res.Events)

	// DNS answers are not sightings: nothing is stored about the address.
	status, _ := b.do(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.20", "", nil)
	require.Equal(t, http.StatusNotFound, status)
	b.ingest(t, `{"ip":"198.51.100.20","source":"test"}`+"\n"+`{"ip":"2001:db8::20","source":"test"}`+"\n"+`{"ip":"198.51.100.0/24","source":"test"}`+"\n")

	dm := bsdYear(time.Now().UTC(), time.March, 3, 10, 0, 2)
	zk := time.Date(2026, 3, 3, 10, 0, 3, 500_000_000, time.UTC)
	first, last, client := dm, zk, "192.168.1.12"
	if zk.Before(dm) {
		first, last, client = zk, dm, "192.168.1.10"
	}
	var v struct {
		PassiveDNS []passiveName `json:"passive_dns"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/198.51.100.20", nil, http.StatusOK, &v)
	require.Equal(t, []passiveName{{Name: "updates.example.net", Client: client, FirstSeen: first, LastSeen: last, Seen: 2}}, v.PassiveDNS)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/2001:db8::20", nil, http.StatusOK, &v)
	require.Equal(t, []passiveName{
		{Name: "cdn.example.com", Client: "192.168.1.11", FirstSeen: dm, LastSeen: dm, Seen: 1},
		{Name: "edge.example.org", Client: "192.168.1.11", FirstSeen: dm, LastSeen: dm, Seen: 1},
	}, v.PassiveDNS)
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/198.51.100.0/24", nil, http.StatusOK, &v)
	require.Equal(t, []passiveName{}, v.PassiveDNS, "a network has none")

	type item struct {
		Prefix     string   `json:"prefix"`
		PassiveDNS []string `json:"passive_dns"`
	}
	want := []item{{Prefix: "198.51.100.0/24"}, {Prefix: "198.51.100.20/32", PassiveDNS: []string{"updates.example.net"}},
		{Prefix: "2001:db8::20/128", PassiveDNS: []string{"cdn.example.com", "edge.example.org"}}}
	var page struct {
		Items []item `json:"items"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips", nil, http.StatusOK, &page)
	require.Equal(t, want, page.Items)
	js, nd, csvLines, _ := b.exports(t, "")
	for name, rows := range map[string][]searchItem{"json": js, "ndjson": nd} {
		var names [][]string
		for _, it := range rows {
			names = append(names, it.PassiveDNS)
		}
		require.Equal(t, [][]string{nil, {"updates.example.net"}, {"cdn.example.com", "edge.example.org"}}, names, name)
	}
	require.Equal(t, "passive_dns", csvLines[0][11])
	require.Equal(t, []string{"", "updates.example.net", "cdn.example.com,edge.example.org"}, column(csvLines, 11))
}
