package store_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func TestFlowExporters(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	e, err := st.FlowExporterPut(ctx, store.FlowExporter{Address: netip.MustParseAddr("192.0.2.1"), Name: "gw"}, "alice")
	require.NoError(t, err)
	require.Equal(t, store.DefaultInside, e.Inside)
	_, err = st.FlowExporterPut(ctx, store.FlowExporter{Address: netip.MustParseAddr("192.0.2.1"), Name: "other"}, "alice")
	require.ErrorIs(t, err, store.ErrConflict)
	got, err := st.FlowExporterGet(ctx, "gw")
	require.NoError(t, err)
	require.Equal(t, e, got)
	e2, err := st.FlowExporterPut(ctx, store.FlowExporter{Address: netip.MustParseAddr("192.0.2.1"), Name: "gw", SamplingRate: 100,
		Inside: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}, "bob")
	require.NoError(t, err)
	all, err := st.FlowExporters(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, 100, all[0].SamplingRate)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, all[0].Inside)
	require.Equal(t, e.ID, all[0].ID)
	require.NoError(t, st.FlowExporterDelete(ctx, "gw", "carol"))
	require.ErrorIs(t, st.FlowExporterDelete(ctx, "gw", "carol"), store.ErrNotFound)
	_, err = st.FlowExporterGet(ctx, "gw")
	require.ErrorIs(t, err, store.ErrNotFound)

	// Every change is one audit entry, written with it; the refused ones
	// (conflict, nothing to delete) none.
	ts := func(at time.Time) string { return at.Format(time.RFC3339Nano) }
	first := fmt.Sprintf(`{"id":%d,"address":"192.0.2.1","name":"gw","sampling_rate":0,
		"inside":["10.0.0.0/8","172.16.0.0/12","192.168.0.0/16","fc00::/7"],"created_at":%q,"updated_at":%q}`, e.ID, ts(e.CreatedAt), ts(e.UpdatedAt))
	second := fmt.Sprintf(`{"id":%d,"address":"192.0.2.1","name":"gw","sampling_rate":100,
		"inside":["198.51.100.0/24"],"created_at":%q,"updated_at":%q}`, e.ID, ts(e.CreatedAt), ts(e2.UpdatedAt))
	requireAudit(t, st, "flow_exporter", []auditWant{
		{"carol", "flow_exporter.delete", "flow_exporter/gw", second, ""},
		{"bob", "flow_exporter.put", "flow_exporter/gw", first, second},
		{"alice", "flow_exporter.put", "flow_exporter/gw", "", first},
	})
}

// auditWant is an audit entry a test expects: before and after as JSON
// ("" for none).
type auditWant struct {
	Actor, Action, Object, Before, After string
}

// requireAudit asserts the audit entries of objects under object, newest first.
func requireAudit(t *testing.T, st *store.Store, object string, want []auditWant) {
	t.Helper()
	es, err := st.Audit(context.Background(), store.AuditFilter{Object: object}, 0, 100)
	require.NoError(t, err)
	require.Len(t, es, len(want))
	for i, w := range want {
		e := es[i]
		require.Equal(t, []string{w.Actor, w.Action, w.Object}, []string{e.Actor, e.Action, e.Object}, "entry %d", i)
		for _, p := range [][2]string{{w.Before, string(e.Before)}, {w.After, string(e.After)}} {
			if p[0] == "" {
				require.Empty(t, p[1], "entry %d", i)
			} else {
				require.JSONEq(t, p[0], p[1], "entry %d", i)
			}
		}
	}
}

func TestFlowApplyEventsAggregatesAndPrune(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 12, 5, 0, 0, time.UTC)
	host, bad, good := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("203.0.113.66"), netip.MustParseAddr("198.51.100.7")
	batch := func(at time.Time, remote netip.Addr, country string, bytes uint64) store.FlowBatch {
		return store.FlowBatch{
			Hosts: []store.FlowHostSeen{{Address: host, Exporter: "gw", MAC: "02:00:00:00:00:05", FirstSeen: at, LastSeen: at, Bytes: bytes, Packets: 2, Flows: 1}},
			Aggregates: []store.FlowAggregate{{Bucket: at.Truncate(5 * time.Minute), Host: host, Remote: remote, Port: 443, Proto: 6,
				Country: country, Org: "Org " + country, ASN: 64500, Bytes: bytes, Packets: 2, Flows: 1}},
			Remotes: []store.FlowRemoteSeen{{Address: remote, Exporter: "gw", FirstSeen: at, LastSeen: at, Bytes: bytes, Packets: 2, Flows: 1,
				Peers: []netip.Addr{host}, Ports: []int{443}}},
		}
	}
	b := batch(at, bad, "NL", 1000)
	b.Contacts = []store.FlowContact{{Host: host, Remote: bad, Hour: at.Truncate(time.Hour), Classification: "malicious", Bytes: 1000}}
	ap, err := st.FlowApply(ctx, b)
	require.NoError(t, err)
	kinds := func(evs []store.Event) []string {
		var k []string
		for _, e := range evs {
			k = append(k, e.Kind)
		}
		return k
	}
	// A new host's first countries are its baseline: no new-destination events.
	require.Equal(t, []string{store.EventFlowNewHost, store.EventFlowBadContact}, kinds(ap.Events))

	// The same contact in the same hour is one event; a new country is one.
	b = batch(at.Add(time.Minute), bad, "NL", 500)
	b.Contacts = []store.FlowContact{{Host: host, Remote: bad, Hour: at.Truncate(time.Hour), Classification: "malicious", Bytes: 500}}
	ap, err = st.FlowApply(ctx, b)
	require.NoError(t, err)
	require.Empty(t, ap.Events)
	ap, err = st.FlowApply(ctx, batch(at.Add(2*time.Minute), good, "DE", 300))
	require.NoError(t, err)
	require.Equal(t, []string{store.EventFlowNewDestination, store.EventFlowNewDestination}, kinds(ap.Events))
	require.Equal(t, map[string]any{"kind": "country", "value": "DE"}, ap.Events[0].Details)
	evs, err := st.ListEvents(ctx, store.EventFilter{SubjectType: "host", Subject: "10.0.0.5"})
	require.NoError(t, err)
	require.Len(t, evs, 4)

	h, err := st.FlowHostGet(ctx, host)
	require.NoError(t, err)
	require.Equal(t, int64(1800), h.Bytes)
	require.Equal(t, "02:00:00:00:00:05", h.MAC)
	require.NoError(t, st.FlowLeasesApply(ctx, []store.FlowLease{{Address: host, Name: "printer"}}))
	h, err = st.FlowHostLabel(ctx, host, "office printer", "alice")
	require.NoError(t, err)
	require.Equal(t, "printer", h.LeaseName)
	require.Equal(t, "office printer", h.Label)
	h, err = st.FlowHostLabel(ctx, host, "", "bob")
	require.NoError(t, err)
	require.Equal(t, "", h.Label)
	_, err = st.FlowHostLabel(ctx, netip.MustParseAddr("10.9.9.9"), "never seen", "bob")
	require.ErrorIs(t, err, store.ErrNotFound)
	requireAudit(t, st, "flow_host", []auditWant{
		{"bob", "flow_host.label", "flow_host/10.0.0.5", `{"label":"office printer"}`, `{"label":""}`},
		{"alice", "flow_host.label", "flow_host/10.0.0.5", `{"label":""}`, `{"label":"office printer"}`},
	})

	pr, err := st.FlowProfileGet(ctx, netip.MustParsePrefix("10.0.0.0/24"), at.Add(-24*time.Hour), at.Add(-7*24*time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, int64(1800), pr.Bytes)
	require.Equal(t, []store.FlowCount{{Key: "NL", Bytes: 1500, Packets: 4, Flows: 2}, {Key: "DE", Bytes: 300, Packets: 2, Flows: 1}}, pr.Countries)
	require.Equal(t, []store.FlowCount{{Key: "443/6", Bytes: 1800, Packets: 6, Flows: 3}}, pr.Ports)
	require.Len(t, pr.Series, 1)
	require.Equal(t, int64(1800), pr.Series[0].Bytes)
	require.Len(t, pr.NewDestinations, 2)
	require.Empty(t, pr.Contacts, "contacts come from the index, not the store")
	var peers []store.FlowPeer
	require.NoError(t, st.FlowPeersEach(ctx, netip.MustParsePrefix("10.0.0.0/24"), at.Add(-24*time.Hour), func(p store.FlowPeer) (bool, error) {
		peers = append(peers, p)
		return true, nil
	}))
	require.Equal(t, []store.FlowPeer{{Host: host, Remote: good, Bytes: 300, LastHour: at.Truncate(time.Hour)},
		{Host: host, Remote: bad, Bytes: 1500, LastHour: at.Truncate(time.Hour)}}, peers)

	rs, err := st.FlowRemotes(ctx, bad)
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.Equal(t, uint64(1500), rs[0].Bytes)
	require.Equal(t, []netip.Addr{host}, rs[0].Peers)
	require.Equal(t, []int{443}, rs[0].Ports)

	top, err := st.FlowTopTalkers(ctx, at.Add(-time.Hour), 5)
	require.NoError(t, err)
	require.Equal(t, []store.FlowCount{{Key: "10.0.0.5", Bytes: 1800, Packets: 6, Flows: 3}}, top)

	// Retention is a partition drop: the day's partition of each table goes
	// once it ended before now - keep.
	n, err := st.FlowPrune(ctx, at.Add(48*time.Hour), 24*time.Hour, 50*time.Hour)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = st.FlowPrune(ctx, at.Add(72*time.Hour), 24*time.Hour, 50*time.Hour)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	pr, err = st.FlowProfileGet(ctx, netip.MustParsePrefix("10.0.0.5/32"), at.Add(-24*time.Hour), at.Add(-7*24*time.Hour), 10)
	require.NoError(t, err)
	require.Zero(t, pr.Bytes)
	require.Empty(t, pr.Contacts)
}

// TestFlowLeasesApplyIsTheWholeFile: every application of a lease file sets
// the names it lists and clears those it no longer lists; a lease without a
// name still gives its MAC to a host without one; labels stay.
func TestFlowLeasesApplyIsTheWholeFile(t *testing.T) {
	t.Parallel()
	st := storetest.Store(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 12, 5, 0, 0, time.UTC)
	a5, a6, a7, a8 := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.6"), netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("10.0.0.8")
	var seen []store.FlowHostSeen
	for _, a := range []netip.Addr{a5, a6, a7, a8} {
		mac := ""
		if a == a5 {
			mac = "02:00:00:00:00:55"
		}
		seen = append(seen, store.FlowHostSeen{Address: a, Exporter: "gw", MAC: mac, FirstSeen: at, LastSeen: at, Bytes: 1, Packets: 1, Flows: 1})
	}
	_, err := st.FlowApply(ctx, store.FlowBatch{Hosts: seen})
	require.NoError(t, err)
	_, err = st.FlowHostLabel(ctx, a8, "kettle", "test")
	require.NoError(t, err)
	type row struct{ LeaseName, MAC, Label string }
	hosts := func() map[string]row {
		t.Helper()
		hs, err := st.FlowHosts(ctx, netip.Prefix{}, 100)
		require.NoError(t, err)
		out := map[string]row{}
		for _, h := range hs {
			out[h.Address.String()] = row{h.LeaseName, h.MAC, h.Label}
		}
		return out
	}

	require.NoError(t, st.FlowLeasesApply(ctx, []store.FlowLease{
		{Address: a5, Name: "printer", MAC: "02:00:00:00:00:05"},
		{Address: a6, Name: "laptop", MAC: "02:00:00:00:00:06"},
		{Address: a8, Name: "kettle-dhcp"},
		{Address: netip.MustParseAddr("10.0.0.99"), Name: "never seen"},
	}))
	require.Equal(t, map[string]row{
		"10.0.0.5": {"printer", "02:00:00:00:00:55", ""}, // the exporter's MAC stays
		"10.0.0.6": {"laptop", "02:00:00:00:00:06", ""},
		"10.0.0.7": {"", "", ""},
		"10.0.0.8": {"kettle-dhcp", "", "kettle"},
	}, hosts())

	// laptop's line is gone and kettle's expired (left out by the parser):
	// their names go; a lease without a name gives 10.0.0.7 its MAC; the
	// last of two leases of one address counts.
	require.NoError(t, st.FlowLeasesApply(ctx, []store.FlowLease{
		{Address: a5, Name: "old-printer"},
		{Address: netip.MustParseAddr("::ffff:10.0.0.7"), MAC: "02:00:00:00:00:07"},
		{Address: a5, Name: "printer2"},
	}))
	require.Equal(t, map[string]row{
		"10.0.0.5": {"printer2", "02:00:00:00:00:55", ""},
		"10.0.0.6": {"", "02:00:00:00:00:06", ""},
		"10.0.0.7": {"", "02:00:00:00:00:07", ""},
		"10.0.0.8": {"", "", "kettle"},
	}, hosts())

	// An empty file names nobody.
	require.NoError(t, st.FlowLeasesApply(ctx, nil))
	require.Equal(t, map[string]row{
		"10.0.0.5": {"", "02:00:00:00:00:55", ""},
		"10.0.0.6": {"", "02:00:00:00:00:06", ""},
		"10.0.0.7": {"", "02:00:00:00:00:07", ""},
		"10.0.0.8": {"", "", "kettle"},
	}, hosts())
}
