//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/bouncer/nft"
	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apitest"
	"github.com/muninn/muninn/server/config"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/muninn/muninn/worker"
	"github.com/muninn/muninn/worker/source/feed"
)

// server is a muninn server as `muninn serve` assembles it: httpserver.New over a
// fresh database with River workers (feed refreshes, the jobs summary) and the render hub
// running (default debounce), and an HTTP server on a loopback port of the test's
// own namespace. Its tokens are named as serve's bootstrap names its first one.
type server struct {
	// st is the server's store, for benchmarks that load data behind the API.
	st            *store.Store
	url           string
	admin, writer string
	hs            *http.Server
	served        chan struct{}
	// ix and hub are the server's index and render hub, for tests that need a
	// render of everything written so far (see settleRender).
	ix  *index.Index
	hub *render.Hub
}

func startServer(tb testing.TB, log *slog.Logger) *server {
	tb.Helper()
	return startNode(tb, storetest.Store(tb), log, nil, nil)
}

// startNode assembles a server over st, another process's database when st was
// opened on the URL of one: its own River client (working jobs, metrics in reg
// when reg is not nil), index, render hub and HTTP server. Bootstrap tokens are
// made when tokens is nil; else the node uses those of the node that made them.
func startNode(tb testing.TB, st *store.Store, log *slog.Logger, reg *prometheus.Registry, tokens *server) *server {
	tb.Helper()
	return startNodeWith(tb, st, log, reg, tokens, nil)
}

// startNodeWith is startNode whose workers also run alerting with alerts
// (nil: none); their facts come from the node's index, as in serve.
func startNodeWith(tb testing.TB, st *store.Store, log *slog.Logger, reg *prometheus.Registry, tokens *server, alerts *worker.AlertDeps) *server {
	tb.Helper()
	var holder atomic.Pointer[index.Index]
	if alerts != nil {
		alerts.Facts = alert.FromIndex(&holder, st, time.Now)
		alerts.Sync = func(ctx context.Context) error {
			if ix := holder.Load(); ix != nil {
				return ix.CatchUp(ctx)
			}
			return nil
		}
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	// The workers and the hub are owned here: stopped and waited for at cleanup.
	ctx, cancel := context.WithCancel(context.Background())
	rc := startWorkersWith(tb, st, log, reg, alerts)
	ix := indextest.Start(tb, st, log, nil)
	holder.Store(ix)
	hub := render.NewHub(st, log, time.Now, render.Options{Source: ix.RenderSource()})
	hubDone := make(chan struct{})
	go func() { defer close(hubDone); _ = hub.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-hubDone })
	h, err := httpserver.New(httpserver.Deps{Store: st, Index: ix, Logger: log, Now: time.Now, Registry: reg,
		MaxIngestBytes: 1 << 20, Render: hub, HoneypotTTL: time.Hour, Jobs: rc, Wrap: apitest.ValidateResponses(tb)})
	require.NoError(tb, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	s := &server{st: st, url: "http://" + ln.Addr().String(), hs: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, served: make(chan struct{}), ix: ix, hub: hub}
	go func() {
		defer close(s.served)
		if err := s.hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("e2e: serve: %v", err)
		}
	}()
	tb.Cleanup(s.stop)
	if tokens != nil {
		s.admin, s.writer = tokens.admin, tokens.writer
		return s
	}
	for role, dst := range map[string]*string{api.RoleAdmin: &s.admin, api.RoleWriter: &s.writer} {
		_, secret, err := api.CreateToken(context.Background(), st, role, role, nil, "bootstrap")
		require.NoError(tb, err)
		*dst = secret
	}
	return s
}

// startWorkers runs River workers over st, as serve and worker do, until cleanup;
// their metrics go to reg. Feeds are refreshed only when a test asks: the schedule
// never comes round. The tests' feed servers listen on loopback, which only an
// allow-list opens.
func startWorkers(tb testing.TB, st *store.Store, log *slog.Logger, reg *prometheus.Registry) *river.Client[pgx.Tx] {
	tb.Helper()
	return startWorkersWith(tb, st, log, reg, nil)
}

// startWorkersWith is startWorkers that also runs alerting with alerts (nil:
// none).
func startWorkersWith(tb testing.TB, st *store.Store, log *slog.Logger, reg *prometheus.Registry, alerts *worker.AlertDeps) *river.Client[pgx.Tx] {
	tb.Helper()
	poll := time.Duration(0)
	if alerts != nil {
		poll = 50 * time.Millisecond
	}
	// The retentions are serve's defaults: left zero, the prune job (run at
	// start) would once have deleted every sighting and sensor event.
	cfg, err := config.FromEnv(func(string) string { return "" })
	require.NoError(tb, err)
	rc, err := worker.NewClient(worker.Deps{Store: st, Logger: log, Now: time.Now, FeedSchedulePeriod: 24 * time.Hour,
		SightingRetention: cfg.SightingRetention, ExpiredRetention: cfg.ExpiredRetention,
		Metrics: worker.NewMetrics(reg, st), Alerts: alerts, FetchPollInterval: poll,
		Fetcher: feed.NewFetcher(feed.FetchPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})}, true)
	require.NoError(tb, err)
	require.NoError(tb, rc.Start(context.Background()))
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := rc.Stop(sctx); err != nil {
			tb.Errorf("e2e: stop workers: %v", err)
		}
	})
	return rc
}

// stop closes the listener and every connection, long polls included, and waits for
// Serve to return; stopping twice is harmless.
func (s *server) stop() {
	_ = s.hs.Close()
	<-s.served
}

// call sends a request with a bearer token and returns the status and body.
func (s *server) call(tb testing.TB, token, method, path, contentType string, body []byte) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	require.NoError(tb, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp.StatusCode, out
}

func (s *server) mustCall(tb testing.TB, token, method, path, contentType string, body []byte, want int) []byte {
	tb.Helper()
	status, out := s.call(tb, token, method, path, contentType, body)
	require.Equal(tb, want, status, "%s %s: %s", method, path, out)
	return out
}

func jsonBody(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	require.NoError(tb, err)
	return b
}

// putRuleset stores a ruleset from its text form; the name is its second word.
func (s *server) putRuleset(tb testing.TB, text string) {
	tb.Helper()
	name := strings.Fields(text)[1]
	s.mustCall(tb, s.admin, http.MethodPut, "/api/v1/rulesets/"+name, "text/plain", []byte(text), http.StatusCreated)
}

// createBouncer registers a bouncer bound to rulesets and returns its key.
func (s *server) createBouncer(tb testing.TB, name string, rulesets ...string) string {
	tb.Helper()
	var out struct {
		Key string `json:"key"`
	}
	raw := s.mustCall(tb, s.admin, http.MethodPost, "/api/v1/bouncers", "application/json",
		jsonBody(tb, map[string]any{"name": name, "rulesets": rulesets}), http.StatusCreated)
	require.NoError(tb, json.Unmarshal(raw, &out))
	return out.Key
}

// tag puts a manual tag on one address with PUT /ips/{ip}/override.
func (s *server) tag(tb testing.TB, ip, tag string) {
	tb.Helper()
	s.mustCall(tb, s.writer, http.MethodPut, "/api/v1/ips/"+ip+"/override", "application/json",
		jsonBody(tb, map[string]any{"add_tags": []string{tag}}), http.StatusOK)
}

// ingest stores one observation tagging prefix (an address or a CIDR).
func (s *server) ingest(tb testing.TB, prefix, tag string) {
	tb.Helper()
	line := jsonBody(tb, map[string]any{"ip": prefix, "source": "e2e", "tags": []string{tag}})
	s.mustCall(tb, s.writer, http.MethodPost, "/api/v1/ingest", "application/x-ndjson", append(line, '\n'), http.StatusOK)
}

// ipTags returns the tag facts of one address: tag name -> sources.
func (s *server) ipTags(tb testing.TB, ip string) map[string][]string {
	tb.Helper()
	status, raw := s.call(tb, s.writer, http.MethodGet, "/api/v1/ips/"+ip, "", nil)
	out := map[string][]string{}
	if status == http.StatusNotFound {
		return out
	}
	require.Equal(tb, http.StatusOK, status, "%s", raw)
	var v struct {
		Tags []struct {
			Name   string `json:"name"`
			Source string `json:"source"`
		} `json:"tags"`
	}
	require.NoError(tb, json.Unmarshal(raw, &v))
	for _, t := range v.Tags {
		out[t.Name] = append(out[t.Name], t.Source)
	}
	return out
}

// runningBouncer is a bouncer daemon run in-process: its syncer talks to the server
// over loopback in the test's namespace while its nftables Firewall works inside the
// host's namespace (a netlink socket opened there), which is all the daemon's main
// does besides parsing flags.
type runningBouncer struct {
	h      *host
	syncer *bouncer.Syncer
	cancel context.CancelFunc
	done   chan struct{}
}

// bouncerConfig is the daemon's configuration for the tests: the default long-poll
// wait; drift checks and honeypot reports every 200 ms instead of 5 s so the tests
// wait less; short backoffs so a returning server is noticed quickly.
func bouncerConfig(dir string) bouncer.Config {
	return bouncer.Config{StateDir: dir, Wait: 30 * time.Second, CheckEvery: 200 * time.Millisecond, HeartbeatEvery: time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond, Hostname: "e2e", Version: "e2e"}
}

// startBouncer runs a syncer for h with api and state directory dir until kill or
// cleanup. Like SIGKILL, stopping it removes nothing from the kernel.
func startBouncer(tb testing.TB, h *host, api bouncer.API, dir string, log *slog.Logger) *runningBouncer {
	tb.Helper()
	fw := nft.New(nft.Options{NetNSFd: h.FD, Priority: nft.DefaultPriority, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	b := &runningBouncer{h: h, syncer: bouncer.NewSyncer(api, fw, bouncerConfig(dir), log.With("host", h.v4)), cancel: cancel, done: make(chan struct{})}
	go func() { defer close(b.done); _ = b.syncer.Run(ctx) }()
	tb.Cleanup(b.kill)
	return b
}

// kill stops the syncer without removing its table and waits for it; killing twice
// is harmless.
func (b *runningBouncer) kill() {
	b.cancel()
	<-b.done
}

// waitApplied waits until the bouncer has applied a render of ruleset.
func (b *runningBouncer) waitApplied(tb testing.TB, ruleset string) {
	tb.Helper()
	eventually(tb, 10*time.Second, func() bool { return b.syncer.State().Applied()[ruleset] > 0 },
		"bouncer on %s never applied ruleset %s", b.h.v4, ruleset)
}

// hashSetHas reads the hash set of rule id of ruleset from h's kernel over netlink and
// reports whether it holds addr. Hash sets hold single addresses and are small here.
func hashSetHas(tb testing.TB, h *host, ruleset string, id int64, addr netip.Addr) bool {
	tb.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(h.FD))
	require.NoError(tb, err)
	t := &nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet}
	set, err := c.GetSetByName(t, bouncer.AddrSetName(ruleset, id, addr.Is6(), false))
	if err != nil {
		return false // no table or set (yet)
	}
	elems, err := c.GetSetElements(set)
	require.NoError(tb, err)
	for _, e := range elems {
		if a, ok := netip.AddrFromSlice(e.Key); ok && a == addr {
			return true
		}
	}
	return false
}

func testLogger(tb testing.TB) *slog.Logger {
	// MUNINN_TEST_LOG=debug (or info) shows more, e.g. to follow a benchmark.
	level := slog.LevelWarn
	if v := os.Getenv("MUNINN_TEST_LOG"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: level}))
}
