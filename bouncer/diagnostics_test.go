package bouncer_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// logBuf records log lines (safe while the syncer's goroutines log).
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// withLog replaces b's syncer with one logging to the returned buffer.
func withLog(b *testBundle, cfg bouncer.Config) *logBuf {
	lb := &logBuf{}
	b.syncer = bouncer.NewSyncer(b.api, b.fake, cfg, slog.New(slog.NewTextHandler(lb, nil)))
	return lb
}

// TestClientTimeouts: a server that accepts the request and never answers (a
// half-open connection looks the same) fails every call at its bound: the
// long poll at wait + margin, heartbeat and report at the call timeout.
func TestClientTimeouts(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(release) }) // first: a POST's handler never sees the client go
	c := bouncer.NewClient(hs.URL, "k", hs.Client()).WithTimeouts(20*time.Millisecond, 30*time.Millisecond)
	ctx := t.Context()

	_, _, err := c.Render(ctx, nil, 10*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "api: render: ")
	err = c.Heartbeat(ctx, bouncer.Heartbeat{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "api: heartbeat: ")
	err = c.Report(ctx, bouncer.Report{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "api: report: ")
	require.Equal(t, 30*time.Second, bouncer.CallTimeout)
	require.Equal(t, 30*time.Second, bouncer.LongPollMargin)
}

// TestOnceHeartbeats: --once applies and then tells the server what it applied.
func TestOnceHeartbeats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(3)}}))
	require.NoError(t, b.syncer.Once(t.Context()))
	require.Equal(t, "apply", nextEvent(t, b.fake).Op)
	b.srv.mu.Lock()
	defer b.srv.mu.Unlock()
	require.Len(t, b.srv.heartbeats, 1)
	hb := b.srv.heartbeats[0]
	require.Equal(t, map[string]int64{"traefik": 3}, hb.Applied)
	require.Equal(t, "h1", hb.Hostname)
	require.Equal(t, "test", hb.Version)
	require.Empty(t, hb.LastError)
	require.FileExists(t, filepath.Join(b.dir, bouncer.StateFileName))
}

// TestOnceReportsFailure: a --once whose poll fails still heartbeats with the error.
func TestOnceReportsFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.queue(fail(http.StatusBadGateway))
	require.ErrorContains(t, b.syncer.Once(t.Context()), "syncer: once: syncer: poll: api: render: status 502: boom")
	b.srv.mu.Lock()
	defer b.srv.mu.Unlock()
	require.Len(t, b.srv.heartbeats, 1)
	require.Equal(t, "syncer: poll: api: render: status 502: boom", b.srv.heartbeats[0].LastError)
}

// TestDryRunHasNoSideEffects: a dry run over a saved state and a newer render
// writes nothing to the state dir, sends no heartbeat, and says so in the log.
func TestDryRunHasNoSideEffects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	st, err := bouncer.NewRulesetState(render(1))
	require.NoError(t, err)
	require.NoError(t, bouncer.SaveState(b.dir, (&bouncer.State{}).With(st)))
	before, err := os.ReadFile(filepath.Join(b.dir, bouncer.StateFileName))
	require.NoError(t, err)

	cfg := b.config()
	cfg.DryRun = true
	logs := withLog(b, cfg)
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(2)}}))
	require.NoError(t, b.syncer.Once(t.Context()))
	require.Equal(t, "apply", nextEvent(t, b.fake).Op, "the restore, printed")
	require.Equal(t, "apply", nextEvent(t, b.fake).Op, "the new render, printed")

	after, err := os.ReadFile(filepath.Join(b.dir, bouncer.StateFileName))
	require.NoError(t, err)
	require.Equal(t, before, after, "the state file is untouched")
	entries, err := os.ReadDir(b.dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no other file in the state dir")
	b.srv.mu.Lock()
	require.Empty(t, b.srv.heartbeats, "no heartbeat")
	b.srv.mu.Unlock()
	require.Contains(t, logs.String(), `msg="Dry run: printed the renders; nothing was applied and the state dir is untouched." full=true deltas=0 versions=map[traefik:2]`)
	require.NotContains(t, logs.String(), "Applied renders.")
}

// TestSyncRecoveryIsLogged: after failed polls, the first good one says so.
func TestSyncRecoveryIsLogged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	logs := withLog(b, b.config())
	ctx, cancel := context.WithCancel(t.Context())
	b.srv.queue(fail(500), fail(503), respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}}))
	done := make(chan error, 1)
	go func() { done <- b.syncer.Run(ctx) }()
	require.Equal(t, "apply", nextEvent(t, b.fake).Op)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "Sync recovered") }, time.Minute, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.Contains(t, logs.String(), `msg="Sync recovered; the server answers again." failed_attempts=2 failing_for=`)
	require.Equal(t, 1, strings.Count(logs.String(), "Sync recovered"), "once per recovery, not per poll")
}
