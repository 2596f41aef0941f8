package bouncer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// apiServer speaks the bouncer wire format from a queue of answers.
type apiServer struct {
	mu         sync.Mutex
	answers    []func(w http.ResponseWriter, r *http.Request)
	sinces     []string
	heartbeats []bouncer.Heartbeat
	reports    []bouncer.Report
	onRender   func()
	requests   chan string
	// reportStatus answers reports when not 0 (a refusal).
	reportStatus int
}

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Api-Key") != "k" {
		http.Error(w, "bad key", http.StatusUnauthorized)
		return
	}
	defer func() {
		select {
		case s.requests <- r.URL.Path:
		default:
		}
	}()
	switch r.URL.Path {
	case "/api/v1/bouncer/render":
		s.mu.Lock()
		s.sinces = append(s.sinces, r.URL.Query().Get("since"))
		if s.onRender != nil {
			s.onRender()
		}
		var next func(w http.ResponseWriter, r *http.Request)
		if len(s.answers) > 0 {
			next, s.answers = s.answers[0], s.answers[1:]
		}
		s.mu.Unlock()
		if next == nil {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		next(w, r)
	case "/api/v1/bouncer/heartbeat":
		var hb bouncer.Heartbeat
		if err := json.NewDecoder(r.Body).Decode(&hb); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.heartbeats = append(s.heartbeats, hb)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case "/api/v1/bouncer/reports":
		var rep bouncer.Report
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.reports = append(s.reports, rep)
		status := s.reportStatus
		s.mu.Unlock()
		if status != 0 {
			http.Error(w, "refused", status)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	default:
		http.NotFound(w, r)
	}
}

func (s *apiServer) queue(fs ...func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers = append(s.answers, fs...)
}

func respond(resp bouncer.RenderResponse) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	}
}

func fail(status int) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", status) }
}

type testBundle struct {
	srv    *apiServer
	fake   *bouncer.Fake
	syncer *bouncer.Syncer
	dir    string
	sleeps chan time.Duration
	log    *slog.Logger
	api    *bouncer.Client
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{srv: &apiServer{requests: make(chan string, 100)}, fake: bouncer.NewFake(), dir: t.TempDir(), sleeps: make(chan time.Duration, 100)}
	hs := httptest.NewServer(b.srv)
	t.Cleanup(hs.Close)
	b.log = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.api = bouncer.NewClient(hs.URL, "k", hs.Client())
	b.syncer = bouncer.NewSyncer(b.api, b.fake, b.config(), b.log)
	return b
}

func (b *testBundle) config() bouncer.Config {
	return bouncer.Config{
		StateDir: b.dir, Wait: time.Second, HeartbeatEvery: time.Hour, CheckEvery: time.Hour,
		BackoffMin: time.Millisecond, BackoffMax: 8 * time.Millisecond, Hostname: "h1", Version: "test",
		Sleep: func(ctx context.Context, d time.Duration) error {
			b.sleeps <- d
			return ctx.Err()
		},
	}
}

func render(version int64) bouncer.Render {
	return bouncer.Render{
		Ruleset: "traefik", Version: version, Hash: "sha256:x", Hook: "input",
		Scope:   bouncer.Scope{Protocol: "tcp", DPorts: []uint16{80, 443}},
		Default: "allow", Honeypot: bouncer.Honeypot{TCP: []uint16{23}},
		Rules: []bouncer.RenderRule{
			{ID: 1, Action: "block", Text: "block classification malicious", V4: []string{"198.51.100.0/24", "203.0.113.9/32"}, V6: []string{"2001:db8::/48"}},
			{ID: 2, Action: "throttle", Rate: "10/second", V4: []string{"192.0.2.0/25"}},
		},
	}
}

func nextEvent(t *testing.T, f *bouncer.Fake) bouncer.FakeEvent {
	t.Helper()
	select {
	case e := <-f.Events():
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no firewall event")
		return bouncer.FakeEvent{}
	}
}

func TestSyncerFullDeltaNotModified(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()

	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}}))
	changed, err := b.syncer.Poll(ctx, 0)
	require.NoError(t, err)
	require.True(t, changed)
	e := nextEvent(t, b.fake)
	require.Equal(t, "apply", e.Op)
	require.Equal(t, map[string]int64{"traefik": 1}, e.State.Applied())
	rs := e.State.Ruleset("traefik")
	require.Equal(t, 1, rs.Rules[0].V4.NumRanges())
	require.Equal(t, 1, rs.Rules[0].V4.NumAddrs())

	// 304: nothing applied, since carries the version.
	changed, err = b.syncer.Poll(ctx, 0)
	require.NoError(t, err)
	require.False(t, changed)
	require.Equal(t, `{"traefik":1}`, b.srv.sinces[1])

	delta := bouncer.Render{Ruleset: "traefik", Version: 2, Delta: true, BaseVersion: 1, Rules: []bouncer.RenderRule{
		{ID: 1, AddV4: []string{"203.0.113.10/32"}, DelV4: []string{"203.0.113.9/32"}, AddV6: []string{"2001:db8:1::/48"}},
	}}
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{delta}}))
	_, err = b.syncer.Poll(ctx, 0)
	require.NoError(t, err)
	e = nextEvent(t, b.fake)
	require.Equal(t, "delta", e.Op)
	require.Len(t, e.Deltas, 1)
	d := e.Deltas[0].Rules[0]
	require.Equal(t, "203.0.113.10", d.V4.AddHash[0].String())
	require.Equal(t, "203.0.113.9", d.V4.DelHash[0].String())
	// 2001:db8::/48 and 2001:db8:1::/48 are adjacent: the range is replaced by the merged one.
	require.Len(t, d.V6.DelRanges, 1)
	require.Len(t, d.V6.AddRanges, 1)
	require.Equal(t, "2001:db8::-2001:db8:1:ffff:ffff:ffff:ffff:ffff", d.V6.AddRanges[0].String())

	// The state on disk is the applied state.
	saved, err := bouncer.LoadState(b.dir)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"traefik": 2}, saved.Applied())
	require.Equal(t, b.fake.State().Ruleset("traefik").Render(), saved.Ruleset("traefik").Render())

	// A delta on another base asks for a full render: since leaves the ruleset out.
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{{Ruleset: "traefik", Version: 9, Delta: true, BaseVersion: 7}}}))
	_, err = b.syncer.Poll(ctx, 0)
	require.NoError(t, err)
	_, err = b.syncer.Poll(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, b.srv.sinces[len(b.srv.sinces)-1], "empty since: full renders")

	// A removed ruleset goes with a full apply.
	b.srv.queue(respond(bouncer.RenderResponse{Removed: []string{"traefik"}}))
	_, err = b.syncer.Poll(ctx, 0)
	require.NoError(t, err)
	e = nextEvent(t, b.fake)
	require.Equal(t, "apply", e.Op)
	require.Empty(t, e.State.Rulesets)
}

func TestSyncerInvalidRenderKeepsOldRules(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}}))
	_, err := b.syncer.Poll(t.Context(), 0)
	require.NoError(t, err)
	bad := render(2)
	bad.Rules[0].V4 = []string{"2001:db8::/32"}
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{bad}}))
	_, err = b.syncer.Poll(t.Context(), 0)
	require.ErrorContains(t, err, "wrong address family")
	require.Equal(t, int64(1), b.fake.State().Ruleset("traefik").Version)
}

func TestSyncerBackoffOnErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	b.srv.queue(fail(500), fail(502), fail(503), fail(500),
		respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}}))
	done := make(chan error, 1)
	go func() { done <- b.syncer.Run(ctx) }()

	var delays []time.Duration
	for range 4 {
		select {
		case d := <-b.sleeps:
			delays = append(delays, d)
		case <-time.After(5 * time.Second):
			t.Fatal("no backoff")
		}
	}
	e := nextEvent(t, b.fake)
	require.Equal(t, "apply", e.Op)
	cancel()
	require.NoError(t, <-done)
	// Exponential with jitter over the upper half: attempt n waits in [d/2, d], d = 1ms·2^(n-1), capped at 8ms.
	for i, d := range delays {
		hi := min(time.Millisecond<<i, 8*time.Millisecond)
		require.GreaterOrEqual(t, d, hi/2, "attempt %d", i+1)
		require.LessOrEqual(t, d, hi, "attempt %d", i+1)
	}
	require.Equal(t, "apply", e.Op, "rules stay in place after a clean stop: no remove")
	select {
	case e := <-b.fake.Events():
		require.NotEqual(t, "remove", e.Op)
	default:
	}
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	for n := 1; n < 40; n++ {
		d := bouncer.Backoff(n, time.Second, time.Minute)
		require.LessOrEqual(t, d, time.Minute)
		require.GreaterOrEqual(t, d, min(time.Second<<(n-1), time.Minute)/2)
	}
}

func TestSyncerRestoresBeforeAPIContact(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rs, err := bouncer.NewRulesetState(render(5))
	require.NoError(t, err)
	require.NoError(t, bouncer.SaveState(b.dir, (&bouncer.State{}).With(rs)))

	var stateAtFirstCall *bouncer.State
	var once sync.Once
	b.srv.onRender = func() { once.Do(func() { stateAtFirstCall = b.fake.State() }) }
	b.srv.queue(fail(503))

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.syncer.Run(ctx) }()
	e := nextEvent(t, b.fake)
	require.Equal(t, "apply", e.Op)
	require.Equal(t, map[string]int64{"traefik": 5}, e.State.Applied())
	select {
	case <-b.sleeps: // the API failed, the syncer backs off and keeps enforcing
	case <-time.After(5 * time.Second):
		t.Fatal("no backoff")
	}
	cancel()
	require.NoError(t, <-done)
	require.NotNil(t, stateAtFirstCall, "the saved rules were in force before the first API call")
	require.Equal(t, int64(5), stateAtFirstCall.Ruleset("traefik").Version)
	// A poll the cancel cut short may still be in the handler: read under its lock.
	b.srv.mu.Lock()
	first := b.srv.sinces[0]
	b.srv.mu.Unlock()
	require.Equal(t, `{"traefik":5}`, first)
}

func TestSyncerDriftHeartbeatHoneypot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(3)}}))
	_, err := b.syncer.Poll(ctx, 0)
	require.NoError(t, err)
	nextEvent(t, b.fake)

	require.NoError(t, b.syncer.CheckDrift(ctx))
	b.fake.SetDrift()
	require.NoError(t, b.syncer.CheckDrift(ctx))
	e := nextEvent(t, b.fake)
	require.Equal(t, "apply", e.Op)
	require.Equal(t, int64(3), e.State.Ruleset("traefik").Version)

	require.NoError(t, b.syncer.Heartbeat(ctx))
	require.Len(t, b.srv.heartbeats, 1)
	hb := b.srv.heartbeats[0]
	require.Equal(t, "h1", hb.Hostname)
	require.Equal(t, map[string]int64{"traefik": 3}, hb.Applied)
	require.Len(t, hb.Counters, 3)

	hit := bouncer.HoneypotHit{IP: "198.51.100.7", Ruleset: "traefik", Port: 23, Protocol: "tcp", SeenAt: time.Now().UTC().Truncate(time.Second)}
	b.fake.AddHoneypotHit(hit)
	require.NoError(t, b.syncer.ReportHoneypot(ctx))
	require.NoError(t, b.syncer.ReportHoneypot(ctx), "already reported: nothing sent")
	require.Len(t, b.srv.reports, 1)
	require.Equal(t, []bouncer.HoneypotHit{hit}, b.srv.reports[0].Honeypot)
}

func TestSyncerApplyFailureKeepsState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetFailure(errors.New("netlink: boom"))
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}}))
	_, err := b.syncer.Poll(t.Context(), 0)
	require.ErrorContains(t, err, "boom")
	require.Empty(t, b.syncer.State().Rulesets)
	require.Empty(t, b.srv.sinces[0])
}

func TestClientStatusError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.queue(fail(http.StatusTeapot))
	_, _, err := b.api.Render(t.Context(), nil, 0)
	var se *bouncer.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusTeapot, se.Status)
}

func TestSyncerReportsOnlyWatchedHitsAndDropsRefusedOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}}))
	_, err := b.syncer.Poll(ctx, 0)
	require.NoError(t, err)
	at := time.Now().UTC().Truncate(time.Second)
	good := bouncer.HoneypotHit{IP: "198.51.100.7", Ruleset: "traefik", Port: 23, Protocol: "tcp", SeenAt: at}
	// Kept by the kernel from an older version or another ruleset: not sent.
	b.fake.AddHoneypotHit(bouncer.HoneypotHit{IP: "198.51.100.8", Ruleset: "traefik", Port: 2323, Protocol: "tcp", SeenAt: at})
	b.fake.AddHoneypotHit(bouncer.HoneypotHit{IP: "198.51.100.9", Ruleset: "traefik", Port: 23, Protocol: "udp", SeenAt: at})
	b.fake.AddHoneypotHit(bouncer.HoneypotHit{IP: "198.51.100.10", Ruleset: "gone", Port: 23, Protocol: "tcp", SeenAt: at})
	b.fake.AddHoneypotHit(good)

	// Unavailable: kept and sent again.
	b.srv.mu.Lock()
	b.srv.reportStatus = http.StatusServiceUnavailable
	b.srv.mu.Unlock()
	require.ErrorContains(t, b.syncer.ReportHoneypot(ctx), "status 503")
	// Refused for good: dropped, not sent again.
	b.srv.mu.Lock()
	b.srv.reportStatus = http.StatusUnprocessableEntity
	b.srv.mu.Unlock()
	require.NoError(t, b.syncer.ReportHoneypot(ctx))
	require.NoError(t, b.syncer.ReportHoneypot(ctx))
	b.srv.mu.Lock()
	defer b.srv.mu.Unlock()
	require.Len(t, b.srv.reports, 2)
	for _, r := range b.srv.reports {
		require.Equal(t, []bouncer.HoneypotHit{good}, r.Honeypot)
	}
}

// diskFull is a state writer that fails like a full disk until room is made.
type diskFull struct {
	mu     sync.Mutex
	full   bool
	writes int
	saved  chan struct{}
}

func (d *diskFull) save(dir string, st *bouncer.State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.full {
		return fmt.Errorf("state: save: write %s: %w", dir, syscall.ENOSPC)
	}
	d.writes++
	if err := bouncer.SaveState(dir, st); err != nil {
		return err
	}
	if d.saved != nil {
		select {
		case d.saved <- struct{}{}:
		default:
		}
	}
	return nil
}

func (d *diskFull) set(full bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.full = full
}

func onDisk(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	st, err := bouncer.LoadState(dir)
	require.NoError(t, err)
	return st.Applied()
}

// TestSyncerRetriesAFailedSave: after a failed save (a full disk) the
// bouncer saves again once there is room, until the file on disk is the
// applied version (issue 12).
func TestSyncerRetriesAFailedSave(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	disk := &diskFull{}
	cfg := b.config()
	cfg.Save = disk.save
	s := bouncer.NewSyncer(b.api, b.fake, cfg, b.log)

	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}}))
	_, err := s.Poll(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"traefik": 1}, onDisk(t, b.dir))

	disk.set(true)
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(2)}}))
	_, err = s.Poll(ctx, 0)
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Equal(t, map[string]int64{"traefik": 2}, s.State().Applied(), "enforced though not saved")
	require.Equal(t, map[string]int64{"traefik": 1}, onDisk(t, b.dir))
	require.ErrorIs(t, s.SaveIfBehind(), syscall.ENOSPC)
	require.Equal(t, map[string]int64{"traefik": 1}, onDisk(t, b.dir))

	// Nothing new comes from the server; the room comes back.
	disk.set(false)
	require.NoError(t, s.SaveIfBehind())
	require.Equal(t, map[string]int64{"traefik": 2}, onDisk(t, b.dir))
	require.NoError(t, s.SaveIfBehind())
	require.Equal(t, 2, disk.writes, "a file that is the applied version is not written again")

	// A restart with the server unreachable restores the applied version.
	restarted := bouncer.NewSyncer(b.api, bouncer.NewFake(), b.config(), b.log)
	require.NoError(t, restarted.Restore(ctx))
	require.Equal(t, map[string]int64{"traefik": 2}, restarted.State().Applied())
}

// TestSyncerRunRetriesAFailedSave: the periodic check of Run does the retry.
func TestSyncerRunRetriesAFailedSave(t *testing.T) {
	t.Parallel()
	b := setup(t)
	disk := &diskFull{full: true, saved: make(chan struct{}, 1)}
	cfg := b.config()
	cfg.Save, cfg.CheckEvery = disk.save, time.Millisecond
	s := bouncer.NewSyncer(b.api, b.fake, cfg, b.log)
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}}))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	require.Equal(t, "apply", nextEvent(t, b.fake).Op)
	require.Empty(t, onDisk(t, b.dir), "the save failed")
	disk.set(false)
	select {
	case <-disk.saved:
	case <-time.After(10 * time.Second):
		t.Fatal("the failed save was never retried")
	}
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, map[string]int64{"traefik": 1}, onDisk(t, b.dir))
}

// TestSyncerRunAppliesWhileSaving: under Run the state file is written after
// the apply, off the poll's path: a new render reaches the firewall while the
// previous one's file is still being written (a large state takes a while),
// and the file ends at the newest version.
func TestSyncerRunAppliesWhileSaving(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started, release := make(chan struct{}, 4), make(chan struct{})
	cfg := b.config()
	cfg.Save = func(dir string, st *bouncer.State) error {
		started <- struct{}{}
		<-release
		return bouncer.SaveState(dir, st)
	}
	s := bouncer.NewSyncer(b.api, b.fake, cfg, b.log)
	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}}))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	require.Equal(t, "apply", nextEvent(t, b.fake).Op)
	<-started // the save of version 1 is blocked

	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(2)}}))
	require.Equal(t, "apply", nextEvent(t, b.fake).Op, "version 2 is applied while version 1's file is being written")
	require.Equal(t, map[string]int64{"traefik": 2}, s.State().Applied())
	close(release)
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, map[string]int64{"traefik": 2}, onDisk(t, b.dir), "the file ends at the applied version")
}
