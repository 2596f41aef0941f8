package api_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/store/storetest"
)

func TestBouncerCompatibilityRule(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ server, bouncer, want string }{
		{"1.4.0", "1.4.0", api.CompatOK},
		{"1.4.0", "1.4.7", api.CompatOK},
		{"1.4.0", "1.3.9", api.CompatOK},       // one minor older
		{"1.4.0", "1.5.0", api.CompatOK},       // one minor newer
		{"v1.4.2", "1.5.0-rc.1", api.CompatOK}, // a leading v and a suffix are ignored
		{"1.4.0", "1.2.9", api.CompatUnsupported},
		{"1.4.0", "1.6.0", api.CompatUnsupported},
		{"1.4.0", "2.4.0", api.CompatUnsupported},
		{"2.0.0", "1.9.0", api.CompatUnsupported}, // majors never mix
		{"1.4.0", "dev", api.CompatUnknown},
		{"dev", "1.4.0", api.CompatUnknown},
		{"1.4.0", "", api.CompatUnknown}, // no heartbeat yet
		{"1.4.0", "1.4", api.CompatUnknown},
		{"1.4.0", "1.04.0", api.CompatUnknown},
		{"1.4.0", "1.x.0", api.CompatUnknown},
	} {
		require.Equal(t, c.want, api.BouncerCompatibility(c.server, c.bouncer), "server %q bouncer %q", c.server, c.bouncer)
	}
}

// lockedBuffer collects log output from the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBouncerVersionSkew: a server of version 1.4.0 serves bouncers one minor
// older (1.3.2) and one minor newer (1.5.0) through the bouncer's own client
// (render, heartbeat, report), and GET /bouncers says ok for them; bouncers two
// minors or a major apart still work but are reported unsupported and logged
// once, when their version first arrives; a development build is unknown.
func TestBouncerVersionSkew(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	b := setupRenderWith(t, storetest.Store(t), func(d *httpserver.Deps) {
		d.Version = "1.4.0"
		d.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	ctx := context.Background()
	b.putRuleset(t, "ruleset edge\n  hook input\n  scope tcp dport 22\n  honeypot tcp 23\n  block tag honeypot\n", http.StatusCreated)
	b.getRender(t, "edge", "") // waits for the first render
	want := map[string]string{"1.3.2": "ok", "1.5.0": "ok", "1.4.1": "ok", "1.2.0": "unsupported", "2.0.0": "unsupported", "dev": "unknown"}
	names := map[string]string{}
	for v := range want {
		name := "fw-" + strings.ReplaceAll(v, ".", "-")
		names[name] = v
		c := bouncer.NewClient(b.srv.URL, b.createBouncer(t, name, "edge"), nil).WithUserAgent("muninn-bouncer/" + v)
		resp, notModified, err := c.Render(ctx, nil, time.Second)
		require.NoError(t, err, v)
		require.False(t, notModified)
		require.Len(t, resp.Rulesets, 1)
		applied := map[string]int64{"edge": resp.Rulesets[0].Version}
		for range 2 { // the second heartbeat of the same version logs nothing new
			require.NoError(t, c.Heartbeat(ctx, bouncer.Heartbeat{Hostname: name, Version: v, Applied: applied}), v)
		}
		require.NoError(t, c.Report(ctx, bouncer.Report{Honeypot: []bouncer.HoneypotHit{
			{IP: "198.51.100.9", Ruleset: "edge", Port: 23, Protocol: "tcp", SeenAt: time.Now().UTC()}}}), v)
	}
	// A bouncer that never reported has no version: unknown.
	b.createBouncer(t, "fw-new", "edge")
	names["fw-new"] = ""
	want[""] = "unknown"

	var list []struct {
		Name          string `json:"name"`
		Version       string `json:"version"`
		Compatibility string `json:"compatibility"`
	}
	b.json(t, b.admin, http.MethodGet, "/api/v1/bouncers", nil, http.StatusOK, &list)
	require.Len(t, list, len(names))
	for _, l := range list {
		require.Equal(t, names[l.Name], l.Version, l.Name)
		require.Equal(t, want[l.Version], l.Compatibility, "%s (%s)", l.Name, l.Version)
	}
	out := logs.String()
	for _, v := range []string{"1.2.0", "2.0.0"} {
		require.Equal(t, 1, strings.Count(out, "bouncer_version="+v+" "), "one warning for %s:\n%s", v, out)
	}
	require.Contains(t, out, `msg="A bouncer runs a version this server does not support: a bouncer and its server must be the same major version at most one minor apart; upgrade the older one." bouncer=fw-1-2-0 bouncer_version=1.2.0 server_version=1.4.0`)
	for _, v := range []string{"1.3.2", "1.5.0", "1.4.1", "dev"} {
		require.NotContains(t, out, "bouncer_version="+v+" ")
	}
}

// FuzzBouncerCompatibility: the version parser never panics, the rule is
// symmetric, and a version is never unsupported with itself.
func FuzzBouncerCompatibility(f *testing.F) {
	for _, s := range []string{"1.4.0", "v1.5.0-rc.1", "dev", "", "1.04.0", "2.0.0+build", "1.-1.0", "01.1.1"} {
		f.Add(s, "1.4.0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab := api.BouncerCompatibility(a, b)
		require.Equal(t, ab, api.BouncerCompatibility(b, a))
		require.Contains(t, []string{api.CompatOK, api.CompatUnsupported, api.CompatUnknown}, ab)
		require.NotEqual(t, api.CompatUnsupported, api.BouncerCompatibility(a, a))
	})
}
