package ui_test

import (
	"context"
	"net/http"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
)

// flowNow is the clock of the flow page tests: a minute into this hour
// (sessions expire by the database's clock, so it stays close to it).
var flowNow = time.Now().UTC().Truncate(time.Hour).Add(time.Minute)

// flowH is the hour h hours before flowNow's; flowT formats a time as the
// pages do.
func flowH(h int) time.Time { return flowNow.Truncate(time.Hour).Add(-time.Duration(h) * time.Hour) }

func flowT(t time.Time) string { return t.Format("2006-01-02 15:04 UTC") }

// seedFlows stores flows of two inside hosts of 10.0.0.0/24 and views for
// their outside peers: 203.0.113.66 malicious, 198.51.100.99 suspicious,
// 198.51.100.7 with no view. No contact rows are stored: the pages find the
// bad addresses through the index.
func seedFlows(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, st.Ingest(ctx, []store.Observation{
		{Prefix: netip.MustParsePrefix("203.0.113.66/32"), Source: "ingest:test", Classification: "malicious", Tags: []string{"c2"}, SeenAt: flowNow.Add(-time.Hour)},
		{Prefix: netip.MustParsePrefix("198.51.100.99/32"), Source: "ingest:test", Classification: "suspicious", SeenAt: flowNow.Add(-time.Hour)},
	}, "test"))
	h5, h6 := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.6")
	bad, susp, plain := netip.MustParseAddr("203.0.113.66"), netip.MustParseAddr("198.51.100.99"), netip.MustParseAddr("198.51.100.7")
	ten, eleven := flowH(2).Add(5*time.Minute), flowH(1).Add(55*time.Minute)
	_, err := st.FlowApply(ctx, store.FlowBatch{
		Aggregates: []store.FlowAggregate{
			{Bucket: ten, Host: h5, Remote: bad, Port: 443, Proto: 6, Country: "NL", Org: "Example Hosting", ASN: 64500, Bytes: 10500, Packets: 18, Flows: 2},
			{Bucket: eleven, Host: h5, Remote: plain, Port: 53, Proto: 17, Country: "DE", Org: "Example Telecom", ASN: 64501, Bytes: 660, Packets: 11, Flows: 2},
			{Bucket: eleven, Host: h6, Remote: susp, Port: 8443, Proto: 6, Country: "DE", Org: "Example Telecom", ASN: 64501, Bytes: 300, Packets: 3, Flows: 1},
		},
		Hosts: []store.FlowHostSeen{
			{Address: h5, Exporter: "gw", MAC: "02:00:00:00:00:05", FirstSeen: ten, LastSeen: eleven, Bytes: 11160, Packets: 29, Flows: 4},
			{Address: h6, Exporter: "gw", FirstSeen: eleven, LastSeen: eleven, Bytes: 300, Packets: 3, Flows: 1},
		},
		Remotes: []store.FlowRemoteSeen{
			{Address: bad, Exporter: "gw", FirstSeen: ten, LastSeen: ten, Bytes: 10500, Packets: 18, Flows: 2, Peers: []netip.Addr{h5}, Ports: []int{443}},
			{Address: bad, Exporter: "lab", FirstSeen: eleven, LastSeen: eleven, Bytes: 40, Packets: 1, Flows: 1, Peers: []netip.Addr{h5, h6}, Ports: []int{22, 443}},
		},
	})
	require.NoError(t, err)
}

var (
	tagRe    = regexp.MustCompile(`<[^>]+>`)
	spacesRe = regexp.MustCompile(`\s+`)
)

// rowsOf returns the text of every row of the table inside the element with
// id, cells separated by " | ".
func rowsOf(t *testing.T, body, id string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?s)id="` + id + `".*?<tbody>(.*?)</tbody>`).FindStringSubmatch(body)
	require.NotNil(t, m, "no table in #%s", id)
	var out []string
	for _, tr := range regexp.MustCompile(`(?s)<tr>(.*?)</tr>`).FindAllStringSubmatch(m[1], -1) {
		var cells []string
		for _, td := range regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`).FindAllStringSubmatch(tr[1], -1) {
			cells = append(cells, spacesRe.ReplaceAllString(tagRe.ReplaceAllString(td[1], ""), " "))
		}
		out = append(out, joinCells(cells))
	}
	return out
}

func joinCells(cs []string) string {
	s := ""
	for i, c := range cs {
		if i > 0 {
			s += " | "
		}
		s += c
	}
	return s
}

func idText(t *testing.T, body, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + id + `">([^<]*)<`).FindStringSubmatch(body)
	require.NotNil(t, m, "#%s", id)
	return m[1]
}

func TestFlowPages(t *testing.T) {
	t.Parallel()
	b := setup(t, testOpts{now: func() time.Time { return flowNow }})
	seedFlows(t, b.store)
	b.catchUp(t)
	c := b.client(t)
	c.mustLogin("reader")

	resp, body := c.get("/ui/flows")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, []string{
		"10.0.0.5 |  | 02:00:00:00:00:05 | gw | " + flowT(flowH(2).Add(5*time.Minute)) + " | " + flowT(flowH(1).Add(55*time.Minute)) + " | 11160 | 29 | 4",
		"10.0.0.6 |  |  | gw | " + flowT(flowH(1).Add(55*time.Minute)) + " | " + flowT(flowH(1).Add(55*time.Minute)) + " | 300 | 3 | 1",
	}, rowsOf(t, body, "hosts"))
	require.Contains(t, body, `<a href="/ui/flows" aria-current="page">Hosts</a>`)

	resp, body = c.get("/ui/flows/hosts/10.0.0.5")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, "<h1>Inside host 10.0.0.5</h1>")
	require.Equal(t, "02:00:00:00:00:05", idText(t, body, "mac"))
	require.Equal(t, "11160", idText(t, body, "bytes"))
	require.Equal(t, "29", idText(t, body, "packets"))
	require.Equal(t, "4", idText(t, body, "flows"))
	require.Equal(t, "1", idText(t, body, "bad-count"))
	require.Equal(t, []string{"10.0.0.5 | 203.0.113.66 | malicious | c2 | 10500 | " + flowT(flowH(2))}, rowsOf(t, body, "contacts"))
	require.Equal(t, []string{
		"198.51.100.7 | DE | Example Telecom | " + flowT(flowH(1)) + " | 660",
		"203.0.113.66 | NL | Example Hosting | " + flowT(flowH(2)) + " | 10500",
	}, rowsOf(t, body, "new-destinations"))
	// Bytes over time: 169 hours (7 days back to the hour, and this one).
	require.Contains(t, body, `aria-label="Bytes per hour: 11160 in total"`)
	require.Len(t, regexp.MustCompile(`<rect class="bar" [^>]*><title>[0-9-]+ [0-9]+h: `).FindAllString(body, -1), 169)
	require.Contains(t, body, "<title>"+flowH(2).Format("01-02 15h")+": 10500</title>")
	require.Contains(t, body, "<title>"+flowH(1).Format("01-02 15h")+": 660</title>")
	require.Contains(t, body, `<title>NL: 10500</title>`)
	require.Contains(t, body, `<title>Example Telecom: 660</title>`)
	require.Contains(t, body, `<title>443/6: 10500</title>`)

	// A view that changes later changes the page: the index is read now.
	require.NoError(t, b.store.Ingest(context.Background(), []store.Observation{
		{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Source: "ingest:test", Classification: "suspicious", SeenAt: flowNow},
	}, "test"))
	b.catchUp(t)
	_, body = c.get("/ui/flows/hosts/10.0.0.5?since=24h")
	require.Equal(t, []string{
		"10.0.0.5 | 198.51.100.7 | suspicious |  | 660 | " + flowT(flowH(1)),
		"10.0.0.5 | 203.0.113.66 | malicious | c2 | 10500 | " + flowT(flowH(2)),
	}, rowsOf(t, body, "contacts"))
	require.Len(t, regexp.MustCompile(`<rect class="bar" [^>]*><title>[0-9-]+ [0-9]+h: `).FindAllString(body, -1), 25)

	resp, body = c.get("/ui/flows/networks/10.0.0.0/24")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, "<h1>Subnet 10.0.0.0/24</h1>")
	require.Equal(t, "11460", idText(t, body, "bytes"))
	require.Equal(t, "3", idText(t, body, "bad-count"))
	require.Equal(t, []string{
		"10.0.0.5 | 198.51.100.7 | suspicious |  | 660 | " + flowT(flowH(1)),
		"10.0.0.6 | 198.51.100.99 | suspicious |  | 300 | " + flowT(flowH(1)),
		"10.0.0.5 | 203.0.113.66 | malicious | c2 | 10500 | " + flowT(flowH(2)),
	}, rowsOf(t, body, "contacts"))
	require.Equal(t, []string{"10.0.0.5 |  | " + flowT(flowH(1).Add(55*time.Minute)) + " | 11160", "10.0.0.6 |  | " + flowT(flowH(1).Add(55*time.Minute)) + " | 300"}, rowsOf(t, body, "subnet-hosts"))
	require.Contains(t, body, `<title>DE: 960</title>`)

	// The address page of an outside address shows what each exporter saw.
	resp, body = c.get("/ui/ips/203.0.113.66")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, []string{
		"gw | " + flowT(flowH(2).Add(5*time.Minute)) + " | " + flowT(flowH(2).Add(5*time.Minute)) + " | 10500 | 18 | 2 | 10.0.0.5 | 443",
		"lab | " + flowT(flowH(1).Add(55*time.Minute)) + " | " + flowT(flowH(1).Add(55*time.Minute)) + " | 40 | 1 | 1 | 10.0.0.5, 10.0.0.6 | 22, 443",
	}, rowsOf(t, body, "flows"))
	require.Contains(t, body, `<a href="/ui/flows/hosts/10.0.0.6">10.0.0.6</a>`)
	_, body = c.get("/ui/ips/198.51.100.99")
	require.NotContains(t, body, `id="flows"`, "no exporter listed it")

	resp, _ = c.get("/ui/flows/networks/10.0.0.5/32")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/flows/hosts/10.0.0.5", resp.Header.Get("Location"))
	for path, status := range map[string]int{
		"/ui/flows/hosts/10.0.0.9":             http.StatusNotFound,
		"/ui/flows/hosts/not-an-address":       http.StatusBadRequest,
		"/ui/flows/hosts/10.0.0.5?since=soon":  http.StatusBadRequest,
		"/ui/flows/hosts/10.0.0.5?since=9000h": http.StatusBadRequest,
		"/ui/flows/networks/10.0.0.0/33":       http.StatusBadRequest,
	} {
		resp, body := c.get(path)
		require.Equal(t, status, resp.StatusCode, path)
		require.Contains(t, body, `class="error"`, path)
	}

	// The dashboard's panels: top talkers and contacts with bad addresses
	// of the last 24 hours.
	resp, body = c.get("/ui/")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `<title>10.0.0.5: 11160</title>`)
	require.Contains(t, body, `<title>10.0.0.6: 300</title>`)
	m := regexp.MustCompile(`(?s)id="bad-contacts">.*?<ul>(.*?)</ul>`).FindStringSubmatch(body)
	require.NotNil(t, m)
	var items []string
	for _, li := range regexp.MustCompile(`(?s)<li>(.*?)</li>`).FindAllStringSubmatch(m[1], -1) {
		items = append(items, spacesRe.ReplaceAllString(tagRe.ReplaceAllString(li[1], ""), " "))
	}
	require.Equal(t, []string{
		"10.0.0.5 → 198.51.100.7 suspicious (660 bytes, " + flowT(flowH(1)) + ")",
		"10.0.0.6 → 198.51.100.99 suspicious (300 bytes, " + flowT(flowH(1)) + ")",
		"10.0.0.5 → 203.0.113.66 malicious (10500 bytes, " + flowT(flowH(2)) + ")",
	}, items)
}
