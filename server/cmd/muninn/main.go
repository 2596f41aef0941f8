// Command muninn is the server: serve | worker | migrate | token | user.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/backup"
	"github.com/muninn/muninn/server/config"
	"github.com/muninn/muninn/server/flow"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/pgembed"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/ui"
	"github.com/muninn/muninn/worker"
	"github.com/muninn/muninn/worker/source/feed"
	"github.com/muninn/muninn/worker/source/geo"
	"github.com/muninn/muninn/worker/source/rdap"
	"github.com/muninn/muninn/worker/source/rdns"
)

const usage = `muninn — IP intelligence and enforcement

Usage:
  muninn serve                      API, UI and workers (embedded PostgreSQL unless MUNINN_DATABASE_URL is set)
  muninn worker                     River workers only
  muninn migrate [up|down]          apply (or revert the newest) schema migration
  muninn token create NAME --role reader|writer|admin [--expires 720h]
  muninn token list
  muninn token revoke NAME|ID
  muninn user create NAME --role reader|writer|admin   (reads the password from stdin)
  muninn user list | passwd NAME | role NAME ROLE | disable NAME | enable NAME | delete NAME
  muninn backup FILE                a consistent dump of the database (pg_dump custom format)
  muninn restore FILE [--force]     load a dump into an empty database (a fresh data dir)
  muninn flows                      the flow collector alone (NetFlow/IPFIX/sFlow; metrics on MUNINN_LISTEN)
  muninn version

serve and worker take the data dir's lock (muninn.lock) when they own the
embedded PostgreSQL: a second one on the same data dir refuses at once.

Every command takes --help. Admin commands work on the embedded database whether
or not serve is running.

Configuration is read from MUNINN_* variables; see README.md.
`

func main() {
	// Library requests through http.DefaultClient (several alert services
	// send with it) end after the alert send timeout instead of never.
	alert.BoundDefaultClient(alert.DefaultSendTimeout)
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "muninn:", err)
		os.Exit(1)
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// help is each command's --help text.
var help = map[string]string{
	"serve": `muninn serve: the API (/api/v1), the web UI (/ui), /healthz, /readyz, /metrics
and the River workers. Without MUNINN_DATABASE_URL it starts and owns a private
PostgreSQL under MUNINN_DATA_DIR. Migrations are applied at start. On the first
start with no token, MUNINN_ADMIN_TOKEN becomes the admin token, or one is made
and shown once.
`,
	"worker":  "muninn worker: River workers only (feeds, geo, RDAP, reverse DNS, pruning), for scaling out.\n",
	"migrate": "muninn migrate [up|down]: apply every pending migration (River's too), or revert the newest.\n",
	"token": `muninn token create NAME --role reader|writer|admin [--expires 720h]   prints the secret once
muninn token list                                                        id, name, role, created
muninn token revoke NAME|ID                                              deletes the token
`,
	"user":    userUsage,
	"backup":  backupUsage,
	"restore": restoreUsage,
	"version": "muninn version: the build's version and Go version.\n",
	"flows": `muninn flows: the flow collector alone, for a host near the routers. Receives
NetFlow v5/v9/IPFIX and sFlow v5 on MUNINN_FLOW_LISTEN (default
netflow://:2055,sflow://:6343) from the exporters registered through the API,
writes to the same database as serve, and answers /metrics and /healthz on
MUNINN_LISTEN. serve receives flows itself when MUNINN_FLOW_LISTEN is set.
`,
}

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "help" }

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if h, ok := help[args[0]]; ok && slices.ContainsFunc(args[1:], isHelp) {
		fmt.Fprint(stdout, h)
		return nil
	}
	if args[0] == "version" {
		fmt.Fprintf(stdout, "muninn %s (%s)\n%s\n", version, runtime.Version(), bouncerRange(version))
		return nil
	}
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "serve":
		return serve(ctx, cfg, log, stdout, serveOptions{http: true})
	case "worker":
		return serve(ctx, cfg, log, stdout, serveOptions{})
	case "migrate":
		return migrate(ctx, cfg, log, args[1:], stdout)
	case "token":
		return token(ctx, cfg, log, args[1:], stdout)
	case "user":
		return user(ctx, cfg, log, args[1:], os.Stdin, stdout)
	case "backup":
		return backupCmd(ctx, cfg, log, args[1:], stdout)
	case "restore":
		return restoreCmd(ctx, cfg, log, args[1:], stdout)
	case "flows":
		return flowsCmd(ctx, cfg, log)
	}
	return fmt.Errorf("unknown command %q\n\n%s", args[0], usage)
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	// Every line logged in a request's context carries its request_id.
	if cfg.LogFormat == "json" {
		return slog.New(httpserver.LogHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(httpserver.LogHandler(slog.NewTextHandler(w, opts)))
}

// database opens the store: MUNINN_DATABASE_URL, else the embedded cluster
// under the data dir. The data dir's lock decides who owns that cluster: the
// process that takes it starts the cluster (serve and worker also supervise
// it) and stops it on the way out. An admin command (own false) first uses a
// running cluster through its socket; serve and worker refuse with the
// holder's pid when another process holds the lock, touching nothing.
func database(ctx context.Context, cfg config.Config, log *slog.Logger, own bool, command string) (*store.Store, func(), error) {
	url, cleanup, err := databaseURL(ctx, cfg, log, own, command)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, url, cfg.DBMaxConns, log, store.StatementTimeout(cfg.StatementTimeout))
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return st, func() { st.Close(); cleanup() }, nil
}

// databaseURL is database without the store: the URL to reach the database
// and the cleanup that stops a cluster it started and releases the lock
// (backup and restore hand the URL to pg_dump and pg_restore).
func databaseURL(ctx context.Context, cfg config.Config, log *slog.Logger, own bool, command string) (string, func(), error) {
	url := cfg.DatabaseURL
	cleanup := func() {}
	running, answers := "", false
	if url == "" && !own {
		running, answers = pgembed.RunningURL(cfg.DataDir)
	}
	if answers {
		url = running
	} else if url == "" {
		lock, err := pgembed.LockDataDir(cfg.DataDir, "muninn "+command)
		var locked *pgembed.LockedError
		switch {
		case errors.As(err, &locked) && !own:
			return "", nil, fmt.Errorf("%w (its PostgreSQL does not answer yet: try again in a moment)", err)
		case err != nil:
			return "", nil, err
		default:
			log.Info("No MUNINN_DATABASE_URL: starting the embedded PostgreSQL.", "data_dir", cfg.DataDir)
			cl, err := pgembed.Start(ctx, pgembed.Options{Dir: cfg.DataDir, Logger: log})
			if err != nil {
				_ = lock.Release()
				return "", nil, err
			}
			url = cl.URL()
			stopSupervisor := func() {}
			if own {
				sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
				done := make(chan struct{})
				go func() { defer close(done); cl.Supervise(sctx, time.Second) }()
				stopSupervisor = func() { cancel(); <-done }
			}
			cleanup = func() {
				stopSupervisor()
				sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := cl.Stop(sctx); err != nil {
					log.Error("Could not stop the embedded PostgreSQL.", "error", err)
				}
				if err := lock.Release(); err != nil {
					log.Error("Could not release the data dir lock.", "error", err)
				}
			}
		}
	}
	return url, cleanup, nil
}

// serveOptions says what serve runs besides the workers.
type serveOptions struct {
	// http runs the API, the UI and the render hub (serve); false runs the
	// workers only (worker).
	http bool
	// started, when set, is told the bound address and the hub once the
	// server answers (tests).
	started func(addr net.Addr, hub *render.Hub)
}

// Shutdown budget: the whole way out stays under two seconds whatever is
// connected. Long polls answer at once (the hub drains); other requests get
// httpDrain to finish before their connections are closed; running jobs get
// jobsStop to finish, then jobsCancel after their contexts are cancelled
// (River retries them later).
const (
	httpDrain  = time.Second
	jobsStop   = 300 * time.Millisecond
	jobsCancel = 300 * time.Millisecond
)

func serve(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer, opts serveOptions) error {
	withHTTP := opts.http
	command := "worker"
	if withHTTP {
		command = "serve"
	}
	var flows *flowSetup
	if withHTTP && cfg.FlowListen != "" {
		var err error
		if flows, err = flowConfig(cfg, cfg.FlowListen); err != nil {
			return err
		}
	}
	st, closeDB, err := database(ctx, cfg, log, true, command)
	if err != nil {
		return err
	}
	defer closeDB()
	if applied, err := st.Migrate(ctx); err != nil {
		return err
	} else if len(applied) > 0 {
		log.Info("Applied schema migrations.", "versions", applied)
	}
	// Every process merges the observation log (what a process that died
	// after acknowledging left behind included), one at a time across them.
	mergeCtx, stopMerge := context.WithCancel(ctx)
	mergeDone := make(chan struct{})
	go func() { defer close(mergeDone); st.RunMerger(mergeCtx, time.Second) }()
	defer func() { stopMerge(); <-mergeDone }()
	now := time.Now
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	wd, err := workerDeps(cfg, log)
	if err != nil {
		return err
	}
	wd.Store, wd.Logger, wd.Now, wd.Metrics = st, log, now, worker.NewMetrics(reg, st)
	wd.SightingRetention, wd.ExpiredRetention = cfg.SightingRetention, cfg.ExpiredRetention
	sealer, err := alertSealer(cfg)
	if err != nil {
		return err
	}
	// Alert messages and filters read the facts from this process's index
	// once it has loaded (caught up before each batch); a worker-only
	// process reads them from the store through the same resolver.
	var alertIndex atomic.Pointer[index.Index]
	alertSync := func(ctx context.Context) error {
		if ix := alertIndex.Load(); ix != nil {
			select {
			case <-ix.Ready():
				return ix.CatchUp(ctx)
			default:
			}
		}
		return nil
	}
	wd.Alerts = &worker.AlertDeps{Sealer: sealer, Facts: alert.FromIndex(&alertIndex, st, now), Sync: alertSync, BaseURL: cfg.BaseURL,
		SilentAfter: cfg.BouncerSilentAfter, LagAfter: cfg.BouncerLagAfter, EventRetention: cfg.EventRetention}
	rc, err := worker.NewClient(wd, cfg.Workers || !withHTTP)
	if err != nil {
		return err
	}
	if cfg.Workers || !withHTTP {
		if err := rc.Start(ctx); err != nil {
			return fmt.Errorf("start workers: %w", err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), jobsStop)
			defer cancel()
			if err := rc.Stop(sctx); err != nil {
				log.Warn("Workers did not stop in time; cancelling their jobs (they are retried later).", "error", err)
				cctx, ccancel := context.WithTimeout(context.Background(), jobsCancel)
				defer ccancel()
				if err := rc.StopAndCancel(cctx); err != nil {
					log.Warn("Cancelled jobs did not return in time.", "error", err)
				}
			}
		}()
	}
	if !withHTTP {
		log.Info("Workers are running.")
		<-ctx.Done()
		return nil
	}
	tokenHint, err := bootstrapToken(ctx, st, cfg)
	if err != nil {
		return err
	}
	// The in-memory index every answer reads from: its goroutine is owned here,
	// cancelled and waited for after the HTTP server and the hub have stopped.
	ix := index.New(st, log, now)
	alertIndex.Store(ix)
	ixCtx, stopIndex := context.WithCancel(ctx)
	ixDone := make(chan struct{})
	go func() {
		defer close(ixDone)
		if err := ix.Run(ixCtx); err != nil {
			log.Error("The index stopped.", "error", err)
		}
	}()
	defer func() { stopIndex(); <-ixDone }()
	loadStart := time.Now()
	select {
	case <-ix.Ready():
		log.Info("Loaded the index.", "prefixes", ix.Snapshot().Len(), "geo_networks", ix.Snapshot().GeoLen(),
			"duration_ms", time.Since(loadStart).Milliseconds())
	case <-ctx.Done():
		return nil
	}
	// Tags and classifications the alert rules ask for, as this index sees
	// them appear (one event per transition across processes).
	marksCtx, stopMarks := context.WithCancel(ctx)
	marksDone := make(chan struct{})
	go func() { defer close(marksDone); alert.WatchMarks(marksCtx, ix, st, log) }()
	defer func() { stopMarks(); <-marksDone }()
	if flows != nil {
		stopFlows, err := startFlows(ctx, cfg, *flows, st, ix, log, reg)
		if err != nil {
			return err
		}
		defer stopFlows()
	}
	hub := render.NewHub(st, log, now, render.Options{Source: ix.RenderSource(), MaxElements: cfg.RenderAlertElements})
	webUI, err := ui.New(ui.Deps{Store: st, Index: ix, Logger: log, Now: now, BaseURL: cfg.BaseURL, Version: version,
		TrustedProxies: cfg.TrustedProxies, LoginHashConcurrency: cfg.LoginHashConcurrency, AlertSealer: sealer,
		FlowAlertTags: cfg.FlowAlertTags})
	if err != nil {
		return err
	}
	h, err := httpserver.New(httpserver.Deps{Store: st, Index: ix, Logger: log, Now: now, Registry: reg, MaxIngestBytes: cfg.MaxIngestBytes, IngestVisibleWithin: cfg.IngestVisibleWithin,
		FlowAlertTags: cfg.FlowAlertTags, Heavy: api.NewLimiter(cfg.SearchConcurrency, cfg.SearchQueueWait),
		Render: hub, HoneypotTTL: cfg.HoneypotTTL, HoneypotRate: cfg.HoneypotRate, Jobs: rc, TrustedProxies: cfg.TrustedProxies, SensorOwnAddresses: cfg.SensorOwnAddresses,
		Observed: wd.Metrics.Observed, Version: version, BaseURL: cfg.BaseURL, ExportDir: filepath.Join(cfg.DataDir, "exports"), MMDBRebuild: cfg.MMDBRebuild, AlertSealer: sealer,
		Mount: []func(chi.Router){webUI.Mount}})
	if err != nil {
		return err
	}
	// The hub's goroutine is owned here: cancelled and waited for on the way out,
	// after the HTTP server has drained (deferred calls run last-in first-out).
	hubCtx, stopHub := context.WithCancel(ctx)
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		_ = hub.Run(hubCtx)
	}()
	defer func() { stopHub(); <-hubDone }()
	// The UI's dashboard refresher is owned the same way.
	uiCtx, stopUI := context.WithCancel(ctx)
	uiDone := make(chan struct{})
	go func() {
		defer close(uiDone)
		_ = webUI.Run(uiCtx)
	}()
	defer func() { stopUI(); <-uiDone }()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if cfg.TLSCert != "" {
		certs, err := httpserver.NewCertReloader(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			return err
		}
		srv.TLSConfig = certs.TLSConfig()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	errc := make(chan error, 1)
	go func() {
		ln := httpserver.LimitListener(ln, cfg.MaxConnsPerClient)
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig.GetCertificate
			return
		}
		errc <- srv.Serve(ln)
	}()
	fmt.Fprintf(stdout, "\nmuninn is running.\n  API:      %s/api/v1   (contract: %s/api/v1/openapi.yaml)\n  UI:       %s/ui/   (users: muninn user create NAME --role admin)\n  Health:   %s/readyz\n%s  Stop:     Ctrl-C\n\n",
		cfg.BaseURL, cfg.BaseURL, cfg.BaseURL, cfg.BaseURL, tokenHint)
	if opts.started != nil {
		opts.started(ln.Addr(), hub)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	start := time.Now()
	log.Info("Shutting down.", "parked_long_polls", hub.Parked())
	// Parked long polls answer "nothing new" at once, so bouncers poll again
	// (elsewhere, or here after the restart) instead of holding the process.
	hub.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), httpDrain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("Requests still running at the shutdown deadline; closing their connections.", "error", err)
		_ = srv.Close()
	}
	log.Info("The HTTP server has stopped.", "duration_ms", time.Since(start).Milliseconds())
	return nil
}

// alertSealer seals alert channel URLs with MUNINN_ALERT_KEY, else with the
// key file in the data directory (created on first start).
func alertSealer(cfg config.Config) (*alert.Sealer, error) {
	var key []byte
	var err error
	if cfg.AlertKey != "" {
		key, err = alert.ParseKey(cfg.AlertKey)
	} else {
		key, err = alert.LoadKeyFile(cfg.AlertKeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("MUNINN_ALERT_KEY: %w", err)
	}
	return alert.NewSealer(key)
}

// flowSetup is the flow collector's checked settings: its listeners and,
// when MUNINN_FLOW_CLICKHOUSE_URL is set, its ClickHouse sink's.
type flowSetup struct {
	listeners  []flow.Listener
	clickHouse *flow.ClickHouseConfig
}

// flowConfig reads the flow collector's settings from cfg (listen is
// MUNINN_FLOW_LISTEN or its default); commands call it before they open
// the database, so a mistake is reported first.
func flowConfig(cfg config.Config, listen string) (*flowSetup, error) {
	ls, err := flow.ParseListeners(listen)
	if err != nil {
		return nil, fmt.Errorf("config: MUNINN_FLOW_LISTEN: %w", err)
	}
	fs := &flowSetup{listeners: ls}
	if cfg.FlowClickHouseURL == "" {
		return fs, nil
	}
	fs.clickHouse = &flow.ClickHouseConfig{URL: cfg.FlowClickHouseURL, Table: cfg.FlowClickHouseTable, BatchRows: cfg.FlowClickHouseBatch}
	if err := fs.clickHouse.Check(); err != nil {
		return nil, fmt.Errorf("config: MUNINN_FLOW_CLICKHOUSE_*: %w", err)
	}
	return fs, nil
}

// startFlows starts the flow collector with fs (flowConfig); its goroutine
// is owned by the returned stop, which cancels it and waits for its last
// flush.
func startFlows(ctx context.Context, cfg config.Config, fs flowSetup, st *store.Store, ix *index.Index, log *slog.Logger, reg prometheus.Registerer) (func(), error) {
	var sink *flow.ClickHouseSink
	if fs.clickHouse != nil {
		var err error
		if sink, err = flow.NewClickHouseSink(*fs.clickHouse, log, reg); err != nil {
			return nil, fmt.Errorf("config: MUNINN_FLOW_CLICKHOUSE_*: %w", err)
		}
	}
	// The sink's connections outlive the collector, which sends its last
	// rows when it stops.
	closeSink := func() {
		if sink != nil {
			if err := sink.Close(); err != nil {
				log.Warn("Could not close the ClickHouse connections.", "error", err)
			}
		}
	}
	c, err := flow.New(st, ix, log, time.Now, reg, flow.Config{Listen: fs.listeners, FlushEvery: cfg.FlowFlush,
		Retention5m: cfg.FlowRetention5m, Retention1h: cfg.FlowRetention1h, AlertTags: cfg.FlowAlertTags, LeaseFile: cfg.FlowLeaseFile,
		ClickHouse: sink})
	if err != nil {
		closeSink()
		return nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(fctx) }()
	select {
	case <-c.Bound():
	case err := <-done:
		cancel()
		closeSink()
		return nil, err
	}
	return func() {
		cancel()
		if err := <-done; err != nil {
			log.Warn("The flow collector's last write failed.", "error", err)
		}
		closeSink()
	}, nil
}

// flowsCmd runs the flow collector alone (a separate host near the
// routers): the index it reads countries and classifications from, the
// collector, and /metrics and /healthz on MUNINN_LISTEN.
func flowsCmd(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	listen := cmp.Or(cfg.FlowListen, "netflow://:2055,sflow://:6343")
	flows, err := flowConfig(cfg, listen)
	if err != nil {
		return err
	}
	st, closeDB, err := database(ctx, cfg, log, true, "flows")
	if err != nil {
		return err
	}
	defer closeDB()
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ix := index.New(st, log, time.Now)
	ixCtx, stopIndex := context.WithCancel(ctx)
	ixDone := make(chan struct{})
	go func() {
		defer close(ixDone)
		if err := ix.Run(ixCtx); err != nil {
			log.Error("The index stopped.", "error", err)
		}
	}()
	defer func() { stopIndex(); <-ixDone }()
	select {
	case <-ix.Ready():
	case <-ctx.Done():
		return nil
	}
	stopFlows, err := startFlows(ctx, cfg, *flows, st, ix, log, reg)
	if err != nil {
		return err
	}
	defer stopFlows()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{Addr: cfg.Listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("Collecting flows.", "listen", listen, "metrics", cfg.Listen)
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), httpDrain)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// workerDeps builds the outside sources the workers use from cfg: a watcher
// on GeoDir (the geo sync job warns about missing data), the RDAP client and
// the PTR resolver.
func workerDeps(cfg config.Config, log *slog.Logger) (worker.Deps, error) {
	d := worker.Deps{MaxWorkers: cfg.QueueConcurrency, EnrichWorkers: cfg.EnrichConcurrency, EnrichSpecial: cfg.EnrichSpecial,
		Fetcher: feed.NewFetcher(feed.FetchPolicy{Allow: cfg.FeedAllowNetworks, FileDir: cfg.FeedFileDir})}
	// The directory is watched even when it is empty or missing, so `make
	// geodata` (or a GeoLite2 download) takes effect without a restart.
	w, err := geo.NewDirWatcher(cfg.GeoDir)
	if err != nil {
		log.Warn("Could not load the geo databases; retrying every minute.", "geo_dir", cfg.GeoDir, "error", err)
	}
	d.Geo = w
	if cfg.RDAP {
		rcfg := rdap.Config{Rate: cfg.RDAPRate, Whois: cfg.RDAPWhois}
		if cfg.RDAPBaseURL != "" {
			u, err := url.Parse(cfg.RDAPBaseURL)
			if err != nil {
				return d, fmt.Errorf("MUNINN_RDAP_BASE_URL: %w", err)
			}
			rcfg.BaseURL = u
		}
		c, err := rdap.New(rcfg)
		if err != nil {
			return d, err
		}
		d.RDAP = c
	}
	if cfg.RDNS {
		d.RDNS = rdns.New(rdns.Config{Server: cfg.Resolver})
	}
	return d, nil
}

// bootstrapToken creates the first admin token when there is none, so a new
// operator can use the API at once: MUNINN_ADMIN_TOKEN when set, else a fresh
// secret that is shown once in the banner and kept in a 0600 file in the data dir
// (never in the log).
func bootstrapToken(ctx context.Context, st *store.Store, cfg config.Config) (string, error) {
	n, err := st.CountTokens(ctx, "")
	if err != nil {
		return "", err
	}
	path := filepath.Join(cfg.DataDir, "admin-token")
	if n > 0 {
		if _, err := os.Stat(path); err == nil {
			return fmt.Sprintf("  Token:    export MUNINN_TOKEN=$(cat %s)\n", path), nil
		}
		return "", nil
	}
	if cfg.AdminToken != "" {
		if _, err := st.CreateToken(ctx, "admin", api.RoleAdmin, nil, store.HashSecret(cfg.AdminToken), "bootstrap"); err != nil {
			return "", err
		}
		return "  Token:    the admin token is MUNINN_ADMIN_TOKEN's value\n", nil
	}
	_, secret, err := api.CreateToken(ctx, st, "admin", api.RoleAdmin, nil, "bootstrap")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	return fmt.Sprintf("  Token:    %s   (first admin token, shown once; also in %s)\n            export MUNINN_TOKEN=$(cat %s)\n", secret, path, path), nil
}

func migrate(ctx context.Context, cfg config.Config, log *slog.Logger, args []string, stdout io.Writer) error {
	dir := "up"
	if len(args) > 0 {
		dir = args[0]
	}
	st, closeDB, err := database(ctx, cfg, log, false, "migrate")
	if err != nil {
		return err
	}
	defer closeDB()
	switch dir {
	case "up":
		applied, err := st.Migrate(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "applied %d migrations %v\n", len(applied), applied)
	case "down":
		v, err := st.MigrateDown(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "reverted migration %d\n", v)
	default:
		return fmt.Errorf("migrate: %q is not up or down", dir)
	}
	return nil
}

func token(ctx context.Context, cfg config.Config, log *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("token: say create, list or revoke")
	}
	st, closeDB, err := database(ctx, cfg, log, false, "token")
	if err != nil {
		return err
	}
	defer closeDB()
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	switch args[0] {
	case "list":
		ts, err := st.Tokens(ctx)
		if err != nil {
			return err
		}
		for _, t := range ts {
			fmt.Fprintf(stdout, "%d\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.CreatedAt.Format(time.RFC3339))
		}
		return nil
	case "create":
		fs := flag.NewFlagSet("token create", flag.ContinueOnError)
		role := fs.String("role", "", "reader, writer or admin")
		expires := fs.Duration("expires", 0, "lifetime, e.g. 720h (default: never)")
		if len(args) < 2 || strings.HasPrefix(args[1], "-") {
			return errors.New("token create: usage: muninn token create NAME --role reader|writer|admin [--expires 720h]")
		}
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		if api.RoleRank(*role) == 0 {
			return fmt.Errorf("token create: --role must be reader, writer or admin, not %q", *role)
		}
		var exp *time.Time
		if *expires > 0 {
			t := time.Now().Add(*expires)
			exp = &t
		}
		_, secret, err := api.CreateToken(ctx, st, args[1], *role, exp, "cli")
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("token create: a token named %q exists already", args[1])
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, secret)
		return nil
	case "revoke":
		if len(args) != 2 {
			return errors.New("token revoke: usage: muninn token revoke NAME|ID")
		}
		ts, err := st.Tokens(ctx)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.Name == args[1] || strconv.FormatInt(t.ID, 10) == args[1] {
				if err := st.DeleteToken(ctx, t.ID, "cli"); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "revoked token %d (%s)\n", t.ID, t.Name)
				return nil
			}
		}
		return fmt.Errorf("token revoke: no token named or numbered %q", args[1])
	}
	return fmt.Errorf("token: unknown subcommand %q", args[0])
}

// userUsage is the user command's synopsis.
const userUsage = `muninn user create NAME --role reader|writer|admin   a web UI user; the password is one line on stdin
muninn user list                                    name, role, status (active or disabled since), created, last login
muninn user passwd NAME                             a new password from stdin; ends the user's sessions
muninn user role NAME reader|writer|admin           applies to live sessions at once
muninn user disable NAME | enable NAME              disable ends the user's sessions and refuses logins
muninn user delete NAME                             deletes the user and their sessions; the name can be used again
`

// user manages web UI users. Passwords are read from stdin (one line), never
// from an argument, so they stay out of shell history and process listings.
func user(ctx context.Context, cfg config.Config, log *slog.Logger, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("user: usage:\n" + userUsage)
	}
	sub := args[0]
	needName := func(n int) (string, error) {
		if len(args) != n || strings.HasPrefix(args[1], "-") {
			return "", fmt.Errorf("user %s: usage:\n%s", sub, userUsage)
		}
		return args[1], nil
	}
	var name, role, password string
	var err error
	switch sub {
	case "list":
		if len(args) != 1 {
			return fmt.Errorf("user list: usage:\n%s", userUsage)
		}
	case "create":
		if len(args) < 2 || strings.HasPrefix(args[1], "-") {
			return fmt.Errorf("user create: usage:\n%s", userUsage)
		}
		name = args[1]
		fs := flag.NewFlagSet("user create", flag.ContinueOnError)
		r := fs.String("role", "", "reader, writer or admin")
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		role = *r
	case "role":
		if name, err = needName(3); err != nil {
			return err
		}
		role = args[2]
	case "passwd", "disable", "enable", "delete":
		if name, err = needName(2); err != nil {
			return err
		}
	default:
		return fmt.Errorf("user: unknown subcommand %q; usage:\n%s", sub, userUsage)
	}
	if (sub == "create" || sub == "role") && api.RoleRank(role) == 0 {
		return fmt.Errorf("user %s: the role must be reader, writer or admin, not %q", sub, role)
	}
	if sub == "create" && !ui.ValidUsername(name) {
		return fmt.Errorf("user create: %q is not a username: 1–64 letters, digits or ._@- starting with a letter or digit", name)
	}
	var hash string
	if sub == "create" || sub == "passwd" {
		if password, err = readPassword(stdin, stdout, name); err != nil {
			return fmt.Errorf("user %s: %w", sub, err)
		}
		if hash, err = ui.HashPassword(password); err != nil {
			return err
		}
	}
	st, closeDB, err := database(ctx, cfg, log, false, "user")
	if err != nil {
		return err
	}
	defer closeDB()
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	now := time.Now()
	notFound := func(err error) error {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("user %s: no user named %q", sub, name)
		}
		return err
	}
	switch sub {
	case "list":
		us, err := st.Users(ctx)
		if err != nil {
			return err
		}
		for _, u := range us {
			status, last := "active", "never"
			if u.DisabledAt != nil {
				status = "disabled since " + u.DisabledAt.UTC().Format(time.RFC3339)
			}
			if u.LastLoginAt != nil {
				last = u.LastLoginAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\tcreated %s\tlast login %s\n", u.Name, u.Role, status, u.CreatedAt.UTC().Format(time.RFC3339), last)
		}
		return nil
	case "create":
		u, err := st.CreateUser(ctx, name, role, hash, "cli")
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("user create: a user named %q exists already", name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created user %s (%s); log in at %s/ui/\n", u.Name, u.Role, cfg.BaseURL)
	case "passwd":
		if _, err := st.UpdateUser(ctx, name, store.UserChange{PasswordHash: &hash}, now, "cli"); err != nil {
			return notFound(err)
		}
		fmt.Fprintf(stdout, "changed the password of %s; their sessions have ended\n", name)
	case "role":
		if _, err := st.UpdateUser(ctx, name, store.UserChange{Role: &role}, now, "cli"); err != nil {
			return notFound(err)
		}
		fmt.Fprintf(stdout, "%s is now %s\n", name, role)
	case "disable", "enable":
		disabled := sub == "disable"
		if _, err := st.UpdateUser(ctx, name, store.UserChange{Disabled: &disabled}, now, "cli"); err != nil {
			return notFound(err)
		}
		if disabled {
			fmt.Fprintf(stdout, "disabled %s; their sessions have ended\n", name)
		} else {
			fmt.Fprintf(stdout, "enabled %s\n", name)
		}
	case "delete":
		if err := st.DeleteUser(ctx, name, "cli"); err != nil {
			return notFound(err)
		}
		fmt.Fprintf(stdout, "deleted %s and their sessions\n", name)
	}
	return nil
}

// readPassword reads one line from stdin (prompting on a terminal): at least 8
// characters.
func readPassword(stdin io.Reader, stdout io.Writer, name string) (string, error) {
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(stdout, "Password for %s: ", name)
		}
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if len(password) < 8 {
		return "", errors.New("the password on stdin must be at least 8 characters")
	}
	return password, nil
}

// backupUsage and restoreUsage are the backup and restore commands' help.
const (
	backupUsage = `muninn backup FILE: write a consistent dump of muninn's database to FILE
(PostgreSQL custom format, mode 0600; pg_dump of the server's major version).
It works while serve runs (one snapshot of every table) and on the embedded
cluster whether or not serve runs, or on MUNINN_DATABASE_URL.
`
	restoreUsage = `muninn restore FILE [--force]: load a dump made by muninn backup into the
database (MUNINN_DATABASE_URL, else the embedded cluster under MUNINN_DATA_DIR,
created when the data dir is new) in one transaction. The database must be
empty: a fresh data dir or a new database. --force drops everything in it
first. Stop every muninn on that database first. Start serve afterwards: it
applies any newer migrations.
`
)

func backupCmd(ctx context.Context, cfg config.Config, log *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return errors.New("backup: usage: muninn backup FILE")
	}
	url, cleanup, err := databaseURL(ctx, cfg, log, false, "backup")
	if err != nil {
		return err
	}
	defer cleanup()
	info, err := backup.Dump(ctx, url, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes, PostgreSQL %d, %s)\n", info.Path, info.Bytes, info.ServerMajor, info.Tool)
	return nil
}

func restoreCmd(ctx context.Context, cfg config.Config, log *slog.Logger, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	force := fs.Bool("force", false, "drop everything in the target database first")
	var file string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			if file != "" {
				return errors.New("restore: usage: muninn restore FILE [--force]")
			}
			file = a
		}
	}
	if err := fs.Parse(slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == file })); err != nil {
		return err
	}
	if file == "" {
		return errors.New("restore: usage: muninn restore FILE [--force]")
	}
	if cfg.DatabaseURL == "" {
		if _, running := pgembed.RunningURL(cfg.DataDir); running {
			return fmt.Errorf("restore: a muninn is running on the data dir %s: stop it first; nothing was changed", cfg.DataDir)
		}
	}
	url, cleanup, err := databaseURL(ctx, cfg, log, true, "restore")
	if err != nil {
		return err
	}
	defer cleanup()
	if err := backup.Restore(ctx, url, file, *force); err != nil {
		if errors.Is(err, backup.ErrNotEmpty) {
			return fmt.Errorf("%w; nothing was changed", err)
		}
		return err
	}
	fmt.Fprintf(stdout, "restored %s; start muninn serve (it applies newer migrations at start)\n", file)
	return nil
}

// bouncerRange says which muninn-bouncer versions a server of version v
// supports (api.BouncerCompatibility): the same major, at most one minor
// apart.
func bouncerRange(v string) string {
	var major, minor, patch int
	if n, err := fmt.Sscanf(strings.TrimPrefix(v, "v"), "%d.%d.%d", &major, &minor, &patch); err != nil || n != 3 ||
		api.BouncerCompatibility(v, v) != api.CompatOK {
		return "bouncers: a development build; any bouncer may work, none is promised to"
	}
	return fmt.Sprintf("bouncers: %d.%d.x to %d.%d.x", major, max(0, minor-1), major, minor+1)
}
