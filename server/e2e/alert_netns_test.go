//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/muninn/muninn/worker"
)

// TestHoneypotHitAlertsOnce: a TCP connect from a documentation address in
// the client namespace to bouncer fw1's honeypot port (tcp/23, a real
// nftables ruleset in fw1's namespace) is reported by the bouncer, stored
// as a sighting with its event, matched by an alert rule and delivered as
// exactly one message to a loopback webhook, with the facts the resolver
// gives (classification, tags, country/ASN, reason lines) and the link
// under the base URL.
func TestHoneypotHitAlertsOnce(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	const attacker = "203.0.113.9"
	log := testLogger(t)
	ctx := context.Background()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealer, err := alert.NewSealer(key)
	require.NoError(t, err)
	// The server with alerting as serve runs it: facts from its index.
	srv := startNodeWith(t, storetest.Store(t), log, nil, nil, &worker.AlertDeps{Sealer: sealer,
		BaseURL: "https://muninn.example", Period: 100 * time.Millisecond, CheckPeriod: time.Hour})

	// What the resolver will say about the attacker besides the hit.
	require.NoError(t, srv.st.Ingest(ctx, []store.Observation{{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Source: "ingest:feedx",
		Classification: "malicious", SeenAt: time.Now()}}, "test"))
	_, err = srv.st.ReplaceGeoNetworks(ctx, "test", func(yield func(store.GeoNetwork, error) bool) {
		yield(store.GeoNetwork{Network: netip.MustParsePrefix("203.0.113.0/24"), Country: "NL", Continent: "EU", ASN: 64500, ASOrg: "Example Net"}, nil)
	})
	require.NoError(t, err)

	// The webhook receiver (loopback of the test's namespace).
	var mu sync.Mutex
	var got []map[string]string
	arrived := make(chan struct{}, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]string
		_ = json.Unmarshal(b, &m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		arrived <- struct{}{}
	}))
	t.Cleanup(hook.Close)

	raw := "generic://" + strings.TrimPrefix(hook.URL, "http://") + "/hook?template=json&disabletls=yes"
	sealed, err := sealer.Seal(raw)
	require.NoError(t, err)
	_, _, err = srv.st.PutAlertChannel(ctx, store.AlertChannel{Name: "hook", Service: "generic", URLSealed: sealed, URLRedacted: alert.Redact(raw)}, "test")
	require.NoError(t, err)
	_, _, err = srv.st.PutAlertRule(ctx, store.AlertRule{Name: "hits", Kind: store.EventHoneypot, Channels: []string{"hook"}, Enabled: true}, "test")
	require.NoError(t, err)
	n := newNetwork(t, 1)
	n.addSources(t, attacker)
	srv.putRuleset(t, "ruleset edge\n  hook input\n  scope tcp dport 80\n  honeypot tcp 23\n  block tag honeypot\n")
	fw1 := n.hosts[0]
	fw1.listen(t, 80)
	b := startBouncer(t, fw1, bouncer.NewClient(srv.url, srv.createBouncer(t, "fw1", "edge"), nil), t.TempDir(), log)
	b.waitApplied(t, "edge")

	n.connect(t, fw1, attacker, 23, dropped) // whatever its outcome, the SYN was seen
	select {
	case <-arrived:
	case <-time.After(settle):
		all, _ := srv.st.ListEvents(ctx, store.EventFilter{})
		t.Fatalf("no message arrived; events: %+v; tags of %s: %v", all, attacker, srv.ipTags(t, attacker))
	}
	evs, err := srv.st.ListEvents(ctx, store.EventFilter{Kind: store.EventHoneypot})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	mu.Lock()
	msgs := append([]map[string]string(nil), got...)
	mu.Unlock()
	require.Equal(t, []map[string]string{{
		"title": "[muninn] honeypot: 203.0.113.9 touched tcp/23 on fw1",
		"message": "honeypot: 203.0.113.9 touched tcp/23 on fw1\n" +
			"at: " + evs[0].At.UTC().Format("2006-01-02 15:04:05Z") + "\n" +
			"classification: malicious\n" +
			"tags: honeypot\n" +
			"country/ASN: NL AS64500 Example Net\n" +
			"reason: classification malicious from ingest:feedx on 203.0.113.0/24\n" +
			"reason: tag honeypot from bouncer:fw1 on 203.0.113.9/32\n" +
			"https://muninn.example/ui/ips/203.0.113.9",
	}}, msgs)
	// The bouncer reported the source once: after its next reports the
	// server still holds one event and the hook one message.
	eventually(t, settle, func() bool { return !n.connect(t, fw1, attacker, 80, 100*time.Millisecond) },
		"fw1 does not block the honeypot source")
	evs, err = srv.st.ListEvents(ctx, store.EventFilter{Kind: store.EventHoneypot})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	mu.Lock()
	require.Len(t, got, 1)
	mu.Unlock()
}
