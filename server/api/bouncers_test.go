package api_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

func (b *renderBundle) createBouncer(t *testing.T, name string, rulesets ...string) string {
	t.Helper()
	if rulesets == nil {
		rulesets = []string{}
	}
	var out struct {
		Key      string   `json:"key"`
		Rulesets []string `json:"rulesets"`
	}
	b.json(t, b.admin, http.MethodPost, "/api/v1/bouncers", map[string]any{"name": name, "rulesets": rulesets}, http.StatusCreated, &out)
	require.True(t, strings.HasPrefix(out.Key, "mnb_"))
	return out.Key
}

// TestBouncerRoundTrip drives the bouncer endpoints with the bouncer daemon's
// own client, so the wire formats are the ones it expects.
func TestBouncerRoundTrip(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	ctx := context.Background()
	b.putRuleset(t, "ruleset edge\n  hook input\n  scope tcp dport 22\n  honeypot tcp 23\n  block tag honeypot\n", http.StatusCreated)
	key := b.createBouncer(t, "fw1", "edge")
	b.json(t, b.admin, http.MethodPost, "/api/v1/bouncers", map[string]any{"name": "fw1", "rulesets": []string{"edge"}}, http.StatusConflict, nil)
	b.json(t, b.admin, http.MethodPost, "/api/v1/bouncers", map[string]any{"name": "fw2", "rulesets": []string{"nope"}}, http.StatusBadRequest, nil)
	b.json(t, b.writer, http.MethodPost, "/api/v1/bouncers", map[string]any{"name": "fw3", "rulesets": []string{"edge"}}, http.StatusForbidden, nil)

	// Keys and tokens do not cross over.
	var se *bouncer.StatusError
	_, _, err := bouncer.NewClient(b.srv.URL, "mnb_wrong", nil).Render(ctx, nil, 0)
	require.True(t, errors.As(err, &se) && se.Status == http.StatusUnauthorized, "%v", err)
	_, _, err = bouncer.NewClient(b.srv.URL, b.admin, nil).Render(ctx, nil, 0)
	require.True(t, errors.As(err, &se) && se.Status == http.StatusUnauthorized, "%v", err)
	status, _ := b.do(t, key, http.MethodGet, "/api/v1/rulesets", "", nil)
	require.Equal(t, http.StatusUnauthorized, status)

	c := bouncer.NewClient(b.srv.URL, key, nil)
	b.getRender(t, "edge", "") // waits for the first render
	resp, notModified, err := c.Render(ctx, nil, time.Second)
	require.NoError(t, err)
	require.False(t, notModified)
	require.Len(t, resp.Rulesets, 1)
	full := resp.Rulesets[0]
	require.Equal(t, "edge", full.Ruleset)
	require.False(t, full.Delta)
	require.Equal(t, []uint16{22}, full.Scope.DPorts)
	require.Equal(t, []uint16{23}, full.Honeypot.TCP)
	require.Equal(t, int64(1), full.Rules[0].ID)
	require.Empty(t, full.Rules[0].V4)

	since := map[string]int64{"edge": full.Version}
	_, notModified, err = c.Render(ctx, since, 50*time.Millisecond)
	require.NoError(t, err)
	require.True(t, notModified)

	// A honeypot report tags the source; the next render blocks it, as a delta.
	require.NoError(t, c.Report(ctx, bouncer.Report{Honeypot: []bouncer.HoneypotHit{{IP: "192.0.2.50", Ruleset: "edge", Port: 23, Protocol: "tcp", SeenAt: time.Now()}}}))
	resp, notModified, err = c.Render(ctx, since, 20*time.Second)
	require.NoError(t, err)
	require.False(t, notModified)
	d := resp.Rulesets[0]
	require.True(t, d.Delta)
	require.Equal(t, full.Version, d.BaseVersion)
	require.Equal(t, []string{"192.0.2.50/32"}, d.Rules[0].AddV4)

	var v view
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/192.0.2.50", nil, http.StatusOK, &v)
	require.Equal(t, []string{"honeypot"}, v.tagNames())
	require.Equal(t, "bouncer:fw1", v.Tags[0].Source)

	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/api/v1/bouncer/reports", strings.NewReader(`{"honeypot":[{"ip":"nope"}]}`))
	require.NoError(t, err)
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("Content-Type", "application/json")
	bad, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	bad.Body.Close()
	require.Equal(t, http.StatusBadRequest, bad.StatusCode)

	// Heartbeats show up in the bouncer list with the lag.
	require.NoError(t, c.Heartbeat(ctx, bouncer.Heartbeat{Hostname: "fw1.example", Version: "test", Applied: map[string]int64{"edge": d.Version},
		Counters: []bouncer.RuleCounter{{Ruleset: "edge", RuleID: 1, Packets: 3, Bytes: 180}}}))
	var list []struct {
		Name     string           `json:"name"`
		Hostname string           `json:"hostname"`
		Counters []map[string]any `json:"counters"`
		Rulesets []struct {
			Ruleset    string  `json:"ruleset"`
			Applied    int64   `json:"applied"`
			Current    int64   `json:"current"`
			LagSeconds float64 `json:"lag_seconds"`
		} `json:"rulesets"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/bouncers", nil, http.StatusOK, &list)
	require.Len(t, list, 1)
	require.Equal(t, "fw1.example", list[0].Hostname)
	require.Equal(t, d.Version, list[0].Rulesets[0].Applied)
	require.Equal(t, d.Version, list[0].Rulesets[0].Current)
	require.GreaterOrEqual(t, list[0].Rulesets[0].LagSeconds, 0.0, "time since the heartbeat (TestBouncerLag has the exact values)")
	require.Equal(t, []map[string]any{{"ruleset": "edge", "rule_id": float64(1), "packets": float64(3), "bytes": float64(180)}}, list[0].Counters)

	// A ruleset the bouncer no longer enforces is listed as removed.
	resp, _, err = c.Render(ctx, map[string]int64{"edge": d.Version, "gone": 4}, time.Second)
	require.NoError(t, err)
	require.Empty(t, resp.Rulesets)
	require.Equal(t, []string{"gone"}, resp.Removed)
	b.json(t, b.admin, http.MethodPut, "/api/v1/bouncers/fw1", map[string]any{"rulesets": []string{}}, http.StatusOK, nil)
	b.json(t, b.admin, http.MethodPut, "/api/v1/bouncers/fw1", map[string]any{"rulesets": []string{"nope"}}, http.StatusBadRequest, nil)
	b.json(t, b.admin, http.MethodPut, "/api/v1/bouncers/none", map[string]any{"rulesets": []string{}}, http.StatusNotFound, nil)
	resp, _, err = c.Render(ctx, map[string]int64{"edge": d.Version}, time.Second)
	require.NoError(t, err)
	require.Equal(t, []string{"edge"}, resp.Removed)

	b.json(t, b.admin, http.MethodDelete, "/api/v1/bouncers/fw1", nil, http.StatusNoContent, nil)
	b.json(t, b.admin, http.MethodDelete, "/api/v1/bouncers/fw1", nil, http.StatusNotFound, nil)
	err = c.Heartbeat(ctx, bouncer.Heartbeat{})
	require.True(t, errors.As(err, &se) && se.Status == http.StatusUnauthorized, "%v", err)
}

// TestBouncerLag: lag is the time since the bouncer last confirmed the version
// current at the time; new renders do not reset it, so a dead bouncer's lag
// keeps growing, and a heartbeat at the current version brings it to 0.
func TestBouncerLag(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{now: time.Now().UTC().Truncate(time.Second)}
	b := setupRenderClocks(t, clk.Now)
	ctx := context.Background()
	b.putRuleset(t, "ruleset edge\n  hook input\n  scope tcp dport 22\n  block tag scanner\n", http.StatusCreated)
	key := b.createBouncer(t, "fw1", "edge")
	_, first, _ := b.getRender(t, "edge", "")
	type listed struct {
		CreatedAt time.Time `json:"created_at"`
		Rulesets  []struct {
			Applied    int64   `json:"applied"`
			Current    int64   `json:"current"`
			LagSeconds float32 `json:"lag_seconds"`
		} `json:"rulesets"`
	}
	lag := func() (float32, listed) {
		var list []listed
		b.json(t, b.reader, http.MethodGet, "/api/v1/bouncers", nil, http.StatusOK, &list)
		require.Len(t, list, 1)
		require.Len(t, list[0].Rulesets, 1)
		return list[0].Rulesets[0].LagSeconds, list[0]
	}
	// Never confirmed: since the bouncer was created.
	got, l := lag()
	require.Equal(t, float32(max(0, clk.Now().Sub(l.CreatedAt).Seconds())), got)

	c := bouncer.NewClient(b.srv.URL, key, nil)
	heartbeat := func(v int64) {
		require.NoError(t, c.Heartbeat(ctx, bouncer.Heartbeat{Hostname: "fw1", Version: "test", Applied: map[string]int64{"edge": v}}))
	}
	heartbeat(first.Version)
	got, _ = lag()
	require.Equal(t, float32(0), got, "confirmed just now")
	clk.Add(90 * time.Second)
	got, _ = lag()
	require.Equal(t, float32(90), got, "no heartbeat for 90 s")

	// A new render does not reset the lag of a bouncer that stays silent.
	b.putRuleset(t, "ruleset edge\n  hook input\n  scope tcp dport 22\n  block tag scanner\n  block tag other\n", http.StatusOK)
	_, second, _ := b.getRender(t, "edge", "?since="+strconv.FormatInt(first.Version, 10)+"&wait=20s")
	require.Greater(t, second.Version, first.Version)
	clk.Add(10 * time.Second)
	got, l = lag()
	require.Equal(t, float32(100), got)
	require.Equal(t, second.Version, l.Rulesets[0].Current)

	// A heartbeat still at the old version confirms nothing new.
	heartbeat(first.Version)
	got, _ = lag()
	require.Equal(t, float32(100), got)
	// At the current version: confirmed.
	heartbeat(second.Version)
	got, l = lag()
	require.Equal(t, float32(0), got)
	require.Equal(t, second.Version, l.Rulesets[0].Applied)
}
