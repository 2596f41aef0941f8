package api_test

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/crowdsecurity/crowdsec/pkg/models"
	csbouncer "github.com/crowdsecurity/go-cs-bouncer"
	"github.com/stretchr/testify/require"
)

// These tests drive /crowdsec with CrowdSec's own Go client library
// (go-cs-bouncer, which crowdsec-firewall-bouncer is built on), as issue 11
// asks: the wire format is the one the library parses, not our reading of it.

const csLibAgent = "crowdsec-firewall-bouncer/v0.0.31"

// csFromModel converts one library decision to the test's decision type.
func csFromModel(t *testing.T, d *models.Decision) csDecision {
	t.Helper()
	require.NotNil(t, d)
	for _, p := range []*string{d.Origin, d.Type, d.Scope, d.Value, d.Scenario, d.Duration} {
		require.NotNil(t, p, "decision %+v has a nil field", d)
	}
	out := csDecision{
		ID: d.ID, UUID: d.UUID, Origin: *d.Origin, Type: *d.Type, Scope: *d.Scope,
		Value: *d.Value, Scenario: *d.Scenario, Duration: *d.Duration,
	}
	if d.Simulated != nil {
		out.Simulated = *d.Simulated
	}
	return out
}

// csFromStream converts a stream answer as the library hands it over.
func csFromStream(t *testing.T, s *models.DecisionsStreamResponse) csStream {
	t.Helper()
	require.NotNil(t, s)
	out := csStream{New: []csDecision{}, Deleted: []csDecision{}}
	for _, d := range s.New {
		out.New = append(out.New, csFromModel(t, d))
	}
	for _, d := range s.Deleted {
		out.Deleted = append(out.Deleted, csFromModel(t, d))
	}
	return out
}

// startStreamBouncer starts a StreamBouncer on the test server with key; its
// Run loop ends at cleanup.
func (b *renderBundle) startStreamBouncer(t *testing.T, key string) *csbouncer.StreamBouncer {
	t.Helper()
	sb := &csbouncer.StreamBouncer{
		APIUrl:         b.srv.URL + "/crowdsec/",
		APIKey:         key,
		TickerInterval: "100ms",
		UserAgent:      csLibAgent,
	}
	require.NoError(t, sb.Init())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sb.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		// Run may be blocked handing over an answer nobody reads any more:
		// take those until it returned.
		for {
			select {
			case <-sb.Stream:
			case <-done:
				return
			}
		}
	})
	return sb
}

// csSync replays the library's stream into replay until it holds the deny
// list of ruleset name, address by address, at the version bouncer has
// applied; it returns what the stream sent meanwhile. Every decision must be
// a ban from muninn.
func (b *renderBundle) csSync(t *testing.T, sb *csbouncer.StreamBouncer, replay csReplay, bouncer, name string) csStream {
	t.Helper()
	sent := csStream{New: []csDecision{}, Deleted: []csDecision{}}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case s, ok := <-sb.Stream:
			require.True(t, ok, "the library closed its stream (its first pull failed)")
			got := csFromStream(t, s)
			for _, d := range append(slices.Clone(got.New), got.Deleted...) {
				require.Equal(t, "muninn", d.Origin, "%+v", d)
				require.Equal(t, "ban", d.Type, "%+v", d)
			}
			sent.New = append(sent.New, got.New...)
			sent.Deleted = append(sent.Deleted, got.Deleted...)
			replay.apply(got)
		case <-deadline:
			want, _ := b.denySet(t, name)
			t.Fatalf("the replayed stream did not reach the deny list:\nwant %v\ngot  %v", want.Prefixes(), replay.set(t).Prefixes())
		}
		want, version := b.denySet(t, name)
		if b.applied(t, bouncer) == version && want.Equal(replay.set(t)) {
			return sent
		}
	}
}

// TestCrowdSecStreamBouncerLibrary replays the stream as go-cs-bouncer's
// StreamBouncer hands it over through a few changes, including the
// neighbour case of issue 11, and compares it with the deny list.
func TestCrowdSecStreamBouncerLibrary(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.7","source":"feed","tags":["bad"]}`+"\n")
	b.putRuleset(t, "ruleset edge\n  block tag bad\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	b.getRender(t, "edge", "")

	sb := b.startStreamBouncer(t, key)
	replay := csReplay{}
	sent := b.csSync(t, sb, replay, "cs", "edge")
	require.Equal(t, []string{"Ip 198.51.100.7"}, values(sent.New))
	require.Empty(t, sent.Deleted)
	d := sent.New[0]
	require.Equal(t, "block tag bad", d.Scenario)
	require.Equal(t, "596h31m23s", d.Duration)

	// The pulls show on the bouncer's page like muninn's own bouncers.
	var list []struct {
		Name     string     `json:"name"`
		LastSeen *time.Time `json:"last_seen"`
		Version  string     `json:"version"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/bouncers", nil, http.StatusOK, &list)
	require.Len(t, list, 1)
	require.Equal(t, "cs", list[0].Name)
	require.NotNil(t, list[0].LastSeen)
	require.Equal(t, csLibAgent, list[0].Version)

	// Issue 11: blocking 198.51.100.6 next to the blocked 198.51.100.7
	// adds Ip 198.51.100.6 and deletes nothing.
	b.changeVersion(t, "edge", func() { b.ingest(t, `{"ip":"198.51.100.6","source":"feed","tags":["bad"]}`+"\n") })
	sent = b.csSync(t, sb, replay, "cs", "edge")
	require.Equal(t, []string{"Ip 198.51.100.6"}, values(sent.New))
	require.Empty(t, sent.Deleted)

	// A tagged /32 elsewhere, for an hour: its duration is the time left,
	// in whole seconds rounded up, as the library parses it.
	b.changeVersion(t, "edge", func() { b.ingest(t, `{"ip":"192.0.2.10","source":"feed","tags":["bad"],"ttl":"1h"}`+"\n") })
	sent = b.csSync(t, sb, replay, "cs", "edge")
	require.Equal(t, []string{"Ip 192.0.2.10"}, values(sent.New))
	require.Empty(t, sent.Deleted)
	left, err := time.ParseDuration(sent.New[0].Duration)
	require.NoError(t, err)
	require.Equal(t, left.Truncate(time.Second), left, sent.New[0].Duration)
	require.LessOrEqual(t, left, time.Hour)
	require.Greater(t, left, time.Hour-time.Minute, "the pull came moments after the ingest")

	// A tagged /24.
	b.changeVersion(t, "edge", func() { b.ingest(t, `{"ip":"203.0.113.0/24","source":"feed","tags":["bad"]}`+"\n") })
	sent = b.csSync(t, sb, replay, "cs", "edge")
	require.Equal(t, []string{"Range 203.0.113.0/24"}, values(sent.New))
	require.Empty(t, sent.Deleted)

	// Suppressing the tag on 198.51.100.7 deletes exactly the decision it
	// was sent with. A pull that lands after the override but before its
	// render may send that decision again first (its prefix changed: the
	// duration is counted afresh); it adds nothing the bouncer lacks.
	held := maps.Clone(replay)
	b.changeVersion(t, "edge", func() {
		b.json(t, b.writer, http.MethodPut, "/api/v1/ips/198.51.100.7/override", map[string]any{"suppress_tags": []string{"bad"}}, http.StatusOK, nil)
	})
	sent = b.csSync(t, sb, replay, "cs", "edge")
	for _, n := range sent.New {
		had, ok := held[n.Scope+" "+n.Value]
		require.True(t, ok && had.ID == n.ID, "only a decision the bouncer holds may come again: %+v", n)
	}
	require.Equal(t, []csDecision{d}, sent.Deleted)
	require.Equal(t, []string{"Ip 192.0.2.10", "Ip 198.51.100.6", "Range 203.0.113.0/24"}, slices.Sorted(mapsKeys(replay)))
}

// TestCrowdSecLiveBouncerLibrary asks for single addresses as go-cs-bouncer's
// LiveBouncer does.
func TestCrowdSecLiveBouncerLibrary(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.7","source":"feed","tags":["bad"]}`+"\n")
	b.putRuleset(t, "ruleset edge\n  block tag bad\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	b.getRender(t, "edge", "")

	lb := &csbouncer.LiveBouncer{APIUrl: b.srv.URL + "/crowdsec/", APIKey: key, UserAgent: csLibAgent}
	require.NoError(t, lb.Init())
	got, err := lb.Get("198.51.100.7")
	require.NoError(t, err)
	require.NotNil(t, got)
	require.Len(t, *got, 1)
	d := csFromModel(t, (*got)[0])
	require.Equal(t, "ban", d.Type)
	require.Equal(t, "muninn", d.Origin)
	require.Equal(t, "Ip", d.Scope)
	require.Equal(t, "198.51.100.7", d.Value)
	require.Equal(t, "block tag bad", d.Scenario)

	got, err = lb.Get("198.51.100.8")
	require.NoError(t, err)
	require.Empty(t, *got)

	wrong := &csbouncer.LiveBouncer{APIUrl: b.srv.URL + "/crowdsec/", APIKey: "mnb_wrong", UserAgent: csLibAgent}
	require.NoError(t, wrong.Init())
	_, err = wrong.Get("198.51.100.7")
	// The library's own message for LAPI's 403 {"message":"access forbidden"}
	// (crowdsec pkg/apiclient auth_key_test.go expects the same).
	require.EqualError(t, err, "API error: access forbidden")
}
