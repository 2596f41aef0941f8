package api_test

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/store"
)

func TestFlowExportersAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var e apigen.FlowExporter
	b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/gw", map[string]any{"address": "192.0.2.1", "inside": []string{"10.0.0.0/8", "fd00::1/8"}}, 200, &e)
	require.Equal(t, "gw", e.Name)
	require.Equal(t, "192.0.2.1", e.Address)
	require.Equal(t, []string{"10.0.0.0/8", "fd00::/8"}, e.Inside)
	b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/edge", map[string]any{"address": "192.0.2.2", "sampling_rate": 100}, 200, &e)
	require.Equal(t, []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}, e.Inside, "RFC 1918 and ULA by default")
	require.Equal(t, 100, e.SamplingRate)
	b.json(t, b.writer, http.MethodPut, "/api/v1/flows/exporters/x", map[string]any{"address": "192.0.2.3"}, 403, nil)
	raw := b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/other", map[string]any{"address": "192.0.2.1"}, 409, nil)
	require.Contains(t, string(raw), `"field":"/address"`)
	raw = b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/bad", map[string]any{"address": "192.0.2.300", "inside": []string{"10.0.0.0/33"}}, 400, nil)
	require.Contains(t, string(raw), `"field":"/address"`)
	require.Contains(t, string(raw), `"field":"/inside/0"`)
	b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/Bad%20Name", map[string]any{"address": "192.0.2.4"}, 400, nil)
	var all []apigen.FlowExporter
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/exporters", nil, 200, &all)
	require.Len(t, all, 2)
	require.Equal(t, "edge", all[0].Name)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/flows/exporters/edge", nil, 204, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/flows/exporters/edge", nil, 404, nil)
}

func TestFlowProfileAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	at := time.Now().UTC().Add(-2 * time.Hour).Truncate(5 * time.Minute)
	host, bad := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("203.0.113.66")
	_, err := b.store.FlowApply(ctx, store.FlowBatch{
		Hosts: []store.FlowHostSeen{{Address: host, Exporter: "gw", FirstSeen: at, LastSeen: at, Bytes: 1500, Packets: 10, Flows: 2},
			{Address: netip.MustParseAddr("10.0.1.9"), Exporter: "gw", FirstSeen: at, LastSeen: at, Bytes: 60, Packets: 1, Flows: 1}},
		Aggregates: []store.FlowAggregate{
			{Bucket: at, Host: host, Remote: bad, Port: 443, Proto: 6, Country: "NL", Org: "Example Hosting", ASN: 64500, Bytes: 1000, Packets: 6, Flows: 1},
			{Bucket: at, Host: host, Remote: netip.MustParseAddr("198.51.100.7"), Port: 53, Proto: 17, Country: "DE", Org: "Example Telecom", ASN: 64501, Bytes: 500, Packets: 4, Flows: 1},
			{Bucket: at, Host: netip.MustParseAddr("10.0.1.9"), Remote: netip.MustParseAddr("198.51.100.7"), Port: 53, Proto: 17, Country: "DE", Org: "Example Telecom", ASN: 64501, Bytes: 60, Packets: 1, Flows: 1}},
		Remotes: []store.FlowRemoteSeen{{Address: bad, Exporter: "gw", FirstSeen: at, LastSeen: at.Add(time.Minute), Bytes: 1000, Packets: 6, Flows: 1,
			Peers: []netip.Addr{host}, Ports: []int{443}}},
	})
	require.NoError(t, err)
	var fa []apigen.FlowAddress
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/addresses/203.0.113.66", nil, 200, &fa)
	require.Equal(t, []apigen.FlowAddress{{Address: "203.0.113.66", Exporter: "gw", FirstSeen: at, LastSeen: at.Add(time.Minute),
		Bytes: 1000, Packets: 6, Flows: 1, Peers: []string{"10.0.0.5"}, Ports: []int{443}}}, fa)
	raw := b.json(t, b.reader, http.MethodGet, "/api/v1/flows/addresses/198.51.100.200", nil, 404, nil)
	require.Contains(t, string(raw), "no exporter saw 198.51.100.200")
	raw = b.json(t, b.reader, http.MethodGet, "/api/v1/flows/addresses/nope", nil, 400, nil)
	require.Contains(t, string(raw), `"field":"address"`)
	// Contacts come from the index: the address's view now.
	require.NoError(t, b.store.Ingest(ctx, []store.Observation{{Prefix: netip.PrefixFrom(bad, 32), Source: "ingest:test",
		Classification: "malicious", Tags: []string{"c2"}, SeenAt: at}}, "test"))
	require.NoError(t, b.ix.CatchUp(ctx))

	var hp apigen.FlowHostProfile
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/hosts/10.0.0.5", nil, 200, &hp)
	require.Equal(t, "10.0.0.5", hp.Host.Address)
	require.Equal(t, int64(1500), hp.Profile.Bytes)
	require.Equal(t, []apigen.FlowCount{{Key: "NL", Bytes: 1000, Packets: 6, Flows: 1}, {Key: "DE", Bytes: 500, Packets: 4, Flows: 1}}, hp.Profile.Countries)
	require.Equal(t, []apigen.FlowCount{{Key: "443/6", Bytes: 1000, Packets: 6, Flows: 1}, {Key: "53/17", Bytes: 500, Packets: 4, Flows: 1}}, hp.Profile.Ports)
	require.Len(t, hp.Profile.Series, 1)
	require.Len(t, hp.Profile.NewDestinations, 2)
	require.Equal(t, []apigen.FlowContact{{Host: "10.0.0.5", Address: "203.0.113.66", LastHour: at.Truncate(time.Hour), Classification: "malicious", Tags: []string{"c2"}, Bytes: 1000}}, hp.Profile.Contacts)

	var pr apigen.FlowProfile
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/networks/10.0.0.0/16?since=24h", nil, 200, &pr)
	require.Equal(t, "10.0.0.0/16", pr.Network)
	require.Equal(t, int64(1560), pr.Bytes)
	require.Equal(t, []apigen.FlowCount{{Key: "Example Hosting", Bytes: 1000, Packets: 6, Flows: 1}, {Key: "Example Telecom", Bytes: 560, Packets: 5, Flows: 2}}, pr.Orgs)
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/networks/10.0.0.1/16", nil, 400, nil)
	raw = b.json(t, b.reader, http.MethodGet, "/api/v1/flows/hosts/10.0.0.5?since=forever", nil, 400, nil)
	require.Contains(t, string(raw), `"field":"since"`)
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/hosts/10.9.9.9", nil, 404, nil)
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/hosts/nope", nil, 400, nil)

	var hosts []apigen.FlowHost
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/hosts", nil, 200, &hosts)
	require.Len(t, hosts, 2)
	require.Equal(t, "10.0.0.5", hosts[0].Address)
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/hosts?within=10.0.1.0/24", nil, 200, &hosts)
	require.Len(t, hosts, 1)
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/hosts?within=x", nil, 400, nil)

	var h apigen.FlowHost
	b.json(t, b.reader, http.MethodPut, "/api/v1/flows/hosts/10.0.0.5/label", map[string]any{"label": "printer"}, 403, nil)
	b.json(t, b.writer, http.MethodPut, "/api/v1/flows/hosts/10.0.0.5/label", map[string]any{"label": "printer"}, 200, &h)
	require.Equal(t, "printer", h.Label)
	b.json(t, b.writer, http.MethodPut, "/api/v1/flows/hosts/10.9.9.9/label", map[string]any{"label": "x"}, 404, nil)
}

// flowAudit is the audit log under object as (actor, action, object)
// triples, newest first.
func flowAudit(t *testing.T, b *testBundle, object string) [][3]string {
	t.Helper()
	var page apigen.AuditPage
	b.json(t, b.admin, http.MethodGet, "/api/v1/audit?object="+object, nil, 200, &page)
	var out [][3]string
	for _, e := range page.Items {
		out = append(out, [3]string{e.Actor, e.Action, e.Object})
	}
	return out
}

func TestFlowChangesAudited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/gw", map[string]any{"address": "192.0.2.1"}, 200, nil)
	b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/gw", map[string]any{"address": "192.0.2.1", "sampling_rate": 10}, 200, nil)
	b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/gw2", map[string]any{"address": "192.0.2.1"}, 409, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/flows/exporters/gw", nil, 204, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/flows/exporters/gw", nil, 404, nil)
	at := time.Now().UTC().Truncate(time.Minute)
	_, err := b.store.FlowApply(context.Background(), store.FlowBatch{Hosts: []store.FlowHostSeen{
		{Address: netip.MustParseAddr("10.0.0.5"), Exporter: "gw", FirstSeen: at, LastSeen: at, Bytes: 1, Packets: 1, Flows: 1}}})
	require.NoError(t, err)
	b.json(t, b.writer, http.MethodPut, "/api/v1/flows/hosts/10.0.0.5/label", map[string]any{"label": "printer"}, 200, nil)
	b.json(t, b.writer, http.MethodPut, "/api/v1/flows/hosts/10.9.9.9/label", map[string]any{"label": "x"}, 404, nil)

	require.Equal(t, [][3]string{
		{"t-admin", "flow_exporter.delete", "flow_exporter/gw"},
		{"t-admin", "flow_exporter.put", "flow_exporter/gw"},
		{"t-admin", "flow_exporter.put", "flow_exporter/gw"},
	}, flowAudit(t, b, "flow_exporter"))
	require.Equal(t, [][3]string{{"t-writer", "flow_host.label", "flow_host/10.0.0.5"}}, flowAudit(t, b, "flow_host"))
	var page apigen.AuditPage
	b.json(t, b.admin, http.MethodGet, "/api/v1/audit?object=flow_host", nil, 200, &page)
	require.Equal(t, map[string]any{"label": ""}, page.Items[0].Before)
	require.Equal(t, map[string]any{"label": "printer"}, page.Items[0].After)
	var exporters apigen.AuditPage
	b.json(t, b.admin, http.MethodGet, "/api/v1/audit?object=flow_exporter", nil, 200, &exporters)
	require.Nil(t, exporters.Items[0].After, "a deletion has no after")
	require.Equal(t, float64(10), exporters.Items[0].Before.(map[string]any)["sampling_rate"])
	require.Equal(t, float64(0), exporters.Items[1].Before.(map[string]any)["sampling_rate"])
	require.Equal(t, float64(10), exporters.Items[1].After.(map[string]any)["sampling_rate"])
	require.Nil(t, exporters.Items[2].Before, "a creation has no before")
	require.Equal(t, "192.0.2.1", exporters.Items[2].After.(map[string]any)["address"])
}

func TestGetFlowExporter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var put, got apigen.FlowExporter
	b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/edge", map[string]any{"address": "2001:db8::1", "sampling_rate": 100,
		"inside": []string{"192.168.0.0/16"}}, 200, &put)
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/exporters/edge", nil, 200, &got)
	require.Equal(t, put, got)
	require.Equal(t, "edge", got.Name)
	require.Equal(t, "2001:db8::1", got.Address)
	require.Equal(t, 100, got.SamplingRate)
	require.Equal(t, []string{"192.168.0.0/16"}, got.Inside)
	var p apigen.Problem
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/exporters/gw", nil, 404, &p)
	require.Equal(t, "no exporter named gw", *p.Detail)
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/exporters/Bad%20Name", nil, 400, nil)
	b.json(t, "", http.MethodGet, "/api/v1/flows/exporters/edge", nil, 401, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/flows/exporters/edge", nil, 204, nil)
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/exporters/edge", nil, 404, nil)
}

func TestFlowExporterRefusesDangerousSettings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, c := range []struct {
		body  map[string]any
		field string
		want  string
	}{
		{map[string]any{"address": "0.0.0.0"}, "/address", "0.0.0.0 is the unspecified address; no exporter sends from it"},
		{map[string]any{"address": "::"}, "/address", ":: is the unspecified address; no exporter sends from it"},
		{map[string]any{"address": "::ffff:0.0.0.0"}, "/address", "0.0.0.0 is the unspecified address; no exporter sends from it"},
		{map[string]any{"address": "224.0.0.1"}, "/address", "224.0.0.1 is a multicast address; no exporter sends from it"},
		{map[string]any{"address": "ff02::1"}, "/address", "ff02::1 is a multicast address; no exporter sends from it"},
		{map[string]any{"address": "255.255.255.255"}, "/address", "255.255.255.255 is the broadcast address; no exporter sends from it"},
		{map[string]any{"address": "192.0.2.1", "inside": []string{}}, "/inside", "no inside network: every flow would be transit"},
		{map[string]any{"address": "192.0.2.1", "inside": []string{"10.0.0.0/8", "0.0.0.0/0"}}, "/inside/1",
			"every address would be inside; no outside address would ever be seen"},
		{map[string]any{"address": "192.0.2.1", "inside": []string{"::/0"}}, "/inside/0",
			"every address would be inside; no outside address would ever be seen"},
		{map[string]any{"address": "192.0.2.1", "inside": []string{"10.1.2.3/0"}}, "/inside/0",
			"every address would be inside; no outside address would ever be seen"},
	} {
		var p apigen.Problem
		b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/gw", c.body, 400, &p)
		require.NotNil(t, p.Errors, "%v", c.body)
		require.Equal(t, []apigen.FieldError{{Field: c.field, Reason: c.want}}, *p.Errors, "%v", c.body)
	}
	var all []apigen.FlowExporter
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/exporters", nil, 200, &all)
	require.Empty(t, all, "nothing refused was stored")

	// Duplicates after masking go, the first of each kept in place.
	var e apigen.FlowExporter
	b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/gw", map[string]any{"address": "192.0.2.1",
		"inside": []string{"192.168.1.0/24", "10.0.0.0/8", "192.168.1.77/24", "10.1.2.3/8", "::ffff:10.0.0.0/104", "fd00::/8"}}, 200, &e)
	require.Equal(t, []string{"192.168.1.0/24", "10.0.0.0/8", "fd00::/8"}, e.Inside)
	b.json(t, b.reader, http.MethodGet, "/api/v1/flows/exporters/gw", nil, 200, &e)
	require.Equal(t, []string{"192.168.1.0/24", "10.0.0.0/8", "fd00::/8"}, e.Inside)
	// Omitted inside is the RFC 1918 and ULA default.
	b.json(t, b.admin, http.MethodPut, "/api/v1/flows/exporters/gw", map[string]any{"address": "192.0.2.1"}, 200, &e)
	require.Equal(t, []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}, e.Inside)
}

// TestFlowHostsWithinIsSearchsRule: GET /flows/hosts reads within as GET
// /ips does (parseWithin): host bits are zeroed, an empty or malformed
// value is a 400 on the field within; both endpoints answer alike.
func TestFlowHostsWithinIsSearchsRule(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Now().UTC().Truncate(time.Minute)
	_, err := b.store.FlowApply(context.Background(), store.FlowBatch{Hosts: []store.FlowHostSeen{
		{Address: netip.MustParseAddr("192.168.1.5"), Exporter: "gw", FirstSeen: at, LastSeen: at, Bytes: 2, Packets: 1, Flows: 1},
		{Address: netip.MustParseAddr("192.168.2.5"), Exporter: "gw", FirstSeen: at, LastSeen: at, Bytes: 1, Packets: 1, Flows: 1}}})
	require.NoError(t, err)
	for _, c := range []struct {
		within string
		status int
		hosts  []string
		reason string
	}{
		{"192.168.1.5/24", 200, []string{"192.168.1.5"}, ""},
		{"192.168.1.0/24", 200, []string{"192.168.1.5"}, ""},
		{"192.168.0.0/16", 200, []string{"192.168.1.5", "192.168.2.5"}, ""},
		{"192.168.2.5", 200, []string{"192.168.2.5"}, ""},
		{"::ffff:192.168.2.0/120", 200, []string{"192.168.2.5"}, ""},
		{"", 400, nil, `"" is not an IP address`},
		{"x", 400, nil, `"x" is not an IP address`},
		{"10.0.0.0/33", 400, nil, `"10.0.0.0/33" is not an IP address or CIDR`},
	} {
		q := "?within=" + url.QueryEscape(c.within)
		if c.status == 200 {
			var hosts []apigen.FlowHost
			b.json(t, b.reader, http.MethodGet, "/api/v1/flows/hosts"+q, nil, 200, &hosts)
			var addrs []string
			for _, h := range hosts {
				addrs = append(addrs, h.Address)
			}
			require.Equal(t, c.hosts, addrs, c.within)
			b.json(t, b.reader, http.MethodGet, "/api/v1/ips"+q, nil, 200, nil)
			continue
		}
		for _, path := range []string{"/api/v1/flows/hosts", "/api/v1/ips"} {
			var p apigen.Problem
			b.json(t, b.reader, http.MethodGet, path+q, nil, 400, &p)
			require.NotNil(t, p.Errors, path+q)
			require.Equal(t, []apigen.FieldError{{Field: "within", Reason: c.reason}}, *p.Errors, path+q)
		}
	}
}
