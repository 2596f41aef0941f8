// Package httpserver assembles muninn's HTTP surface: /api/v1 (the strict
// OpenAPI server behind the contract: authentication, roles and request
// validation from openapi.yaml), /crowdsec/v1, /healthz, /readyz and /metrics.
package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/api/feeds"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
)

// Deps is what the HTTP surface needs.
type Deps struct {
	// BaseURL is MUNINN_BASE_URL (exports link to address pages under it);
	// ExportDir is where built export files go ("": under the temp dir).
	BaseURL, ExportDir string
	// MMDBRebuild is the least time between two MMDB export builds (0: one
	// per index snapshot).
	MMDBRebuild    time.Duration
	Store          *store.Store
	Logger         *slog.Logger
	Now            func() time.Time
	Registry       *prometheus.Registry
	MaxIngestBytes int64
	// IngestBatch is how many observations go to the database in one
	// transaction (0: the API's default).
	IngestBatch int
	// IngestVisibleWithin is api.Options.IngestVisibleWithin
	// (MUNINN_INGEST_VISIBLE_WITHIN): 0 answers ingest once visible.
	IngestVisibleWithin time.Duration
	// FlowAlertTags is api.Options.FlowAlertTags (MUNINN_FLOW_ALERT_TAGS).
	FlowAlertTags []string
	// Index is the in-memory index every answer reads from (required; its
	// owner runs it).
	Index *index.Index
	// Render is the render hub behind the ruleset, bouncer and CrowdSec
	// endpoints; New makes one (not running) over Index when nil.
	Render *render.Hub
	// HoneypotTTL is how long a honeypot tag reported by a bouncer lives.
	HoneypotTTL time.Duration
	// HoneypotRate is the honeypot hits per second one bouncer may report.
	HoneypotRate float64
	// Jobs enqueues feed refreshes; nil makes a refresh answer 503.
	Jobs feeds.Inserter
	// Mount adds further routes (the UI) to the root router.
	Mount []func(r chi.Router)
	// Wrap, when set, wraps the /api/v1 handler (tests validate every
	// response against the spec with it).
	Wrap func(http.Handler) http.Handler
	// Heavy bounds the searches and exports running at once (nil: the API's
	// default).
	Heavy *api.Limiter
	// ReadTimeout is how long a request's body may take (ingest: between
	// two reads); WriteTimeout how long an answer may take, long polls
	// aside. Zero means 30 s and 5 min.
	ReadTimeout, WriteTimeout time.Duration
	// TrustedProxies are the reverse proxies whose X-Forwarded-For,
	// X-Forwarded-Proto and X-Request-Id are believed (MUNINN_TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	// SensorOwnAddresses are the sensor hosts' own addresses
	// (MUNINN_SENSOR_OWN_ADDRESSES, api.Options.SensorOwnAddresses).
	SensorOwnAddresses []netip.Prefix
	// Observed, when set, counts the observations the API stores, by kind
	// (worker.Metrics.Observed: one counter per process, whoever stores).
	Observed func(kind string, n int)
	// Version is the server's version (muninn version): muninn_build_info
	// shows it ("": the module's, from the binary's build info) and
	// GET /bouncers judges bouncers' versions against it.
	Version string
	// AlertSealer seals and opens alert channel URLs (nil: channels answer 503).
	AlertSealer *alert.Sealer
}

type (
	coreOps = api.Server
	feedOps = feeds.Server
)

// operations joins the two halves of the generated strict server interface.
type operations struct {
	*coreOps
	*feedOps
}

var _ apigen.StrictServerInterface = operations{}

// New returns the root handler.
func New(d Deps) (http.Handler, error) {
	spec, err := apigen.GetSwagger()
	if err != nil {
		return nil, fmt.Errorf("httpserver: load spec: %w", err)
	}
	auth := api.NewAuthenticator(d.Store, d.Now)
	if d.Render == nil {
		d.Render = render.NewHub(d.Store, d.Logger, d.Now, render.Options{Source: d.Index.RenderSource()})
	}
	srv := api.New(d.Store, auth, d.Logger, d.Now, api.Options{Index: d.Index, MaxIngestBytes: d.MaxIngestBytes, IngestBatch: d.IngestBatch, IngestVisibleWithin: d.IngestVisibleWithin, Heavy: d.Heavy, Render: d.Render, HoneypotTTL: d.HoneypotTTL, HoneypotRate: d.HoneypotRate, Observed: d.Observed, Version: d.Version, BaseURL: d.BaseURL, ExportDir: d.ExportDir, MMDBRebuild: d.MMDBRebuild, AlertSealer: d.AlertSealer, SensorOwnAddresses: d.SensorOwnAddresses, FlowAlertTags: d.FlowAlertTags})
	m := newMetrics(d.Registry)
	d.Registry.MustRegister(newUsageCollector(d.Store, d.Logger), newStateCollector(d.Store, d.Render, d.Logger, d.Now, d.Version))

	r := chi.NewRouter()
	r.Use(deadlines(d.ReadTimeout, d.WriteTimeout), requestID(d.TrustedProxies), m.middleware, accessLog(d.Logger, d.TrustedProxies), recoverer(d.Logger))
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Get("/readyz", readyz(d.Store, d.Logger))
	// A collector that fails (the database stalls) reports that in its own
	// metrics; the rest are served whatever happens to one of them.
	r.Handle("/metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError,
		ErrorLog: slogPrinter{d.Logger}}))
	r.Route("/crowdsec/v1", srv.CrowdSecRoutes)

	strict := apigen.NewStrictHandlerWithOptions(operations{srv, feeds.New(d.Store, d.Jobs, d.Logger, d.Index)}, nil, apigen.StrictHTTPServerOptions{
		RequestErrorHandlerFunc: func(w http.ResponseWriter, _ *http.Request, err error) {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				api.WriteProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", mb.Limit))
				return
			}
			api.WriteProblem(w, http.StatusBadRequest, err.Error())
		},
		ResponseErrorHandlerFunc: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			d.Logger.ErrorContext(r.Context(), "Request failed.", "path", r.URL.Path, "error", err)
			api.WriteProblem(w, http.StatusInternalServerError, "internal error; the server log has the details")
		},
	})
	// Every /api/v1 operation is generated onto ar; the contract middleware
	// finds the operation ar matched and enforces its role and schema first.
	ar := chi.NewRouter()
	contract, err := api.NewContract(spec, ar, srv, auth)
	if err != nil {
		return nil, fmt.Errorf("httpserver: %w", err)
	}
	ar.Use(contract.Middleware)
	apigen.HandlerWithOptions(strict, apigen.ChiServerOptions{BaseRouter: ar,
		ErrorHandlerFunc: func(w http.ResponseWriter, _ *http.Request, err error) {
			api.WriteProblem(w, http.StatusBadRequest, err.Error())
		}})
	var apiHandler http.Handler = ar
	if d.Wrap != nil {
		apiHandler = d.Wrap(ar)
	}
	r.Mount("/api/v1", apiHandler)
	for _, f := range d.Mount {
		f(r)
	}
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		api.WriteProblem(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		api.WriteProblem(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path)
	})
	return r, nil
}

// readyz answers without a login, so it says what is not ready and never
// why in the database's words (they name users, databases and socket paths):
// the log has those.
func readyz(st *store.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		status := map[string]string{"database": "ok", "schema": "ok"}
		code := http.StatusOK
		if err := st.Ping(ctx); err != nil {
			log.WarnContext(ctx, "Not ready: the database does not answer.", "error", err)
			status["database"], code = "unreachable", http.StatusServiceUnavailable
			status["schema"] = "unknown"
		} else if pending, err := st.PendingMigrations(ctx); err != nil {
			log.WarnContext(ctx, "Not ready: cannot read the schema version.", "error", err)
			status["schema"], code = "unknown", http.StatusServiceUnavailable
		} else if len(pending) > 0 {
			status["schema"], code = fmt.Sprintf("%d migrations are not applied: run muninn migrate", len(pending)), http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(status)
	}
}

func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.ErrorContext(r.Context(), "A handler panicked.", "path", r.URL.Path, "panic", fmt.Sprint(v))
					api.WriteProblem(w, http.StatusInternalServerError, "internal error")
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// slogPrinter lets promhttp log through slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Warn("A metrics collector failed; the other metrics were served.", "error", fmt.Sprint(v...))
}

// deadlines sets each request's I/O deadlines: the whole body within read
// (a slow-body client holds a connection no longer; ingest's streamed body
// instead gets read more after every read that brought bytes), the answer
// within write, except a long poll (a wait parameter), which ends itself.
func deadlines(read, write time.Duration) func(http.Handler) http.Handler {
	if read <= 0 {
		read = 30 * time.Second
	}
	if write <= 0 {
		write = 5 * time.Minute
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			// Errors mean the connection does not support deadlines
			// (a test recorder): nothing to bound then.
			if !r.URL.Query().Has("wait") {
				_ = rc.SetWriteDeadline(time.Now().Add(write))
			}
			// Only a body is bounded by the read deadline, and the deadline
			// ends with it: once the body is read, net/http reads on to see
			// the client hang up, and a deadline passing there cancels the
			// request's context. A long poll (wait=30s, the bouncer's) or a
			// long export then ended at the read timeout as if the client
			// had gone: an empty 200, and every later request on that
			// connection failed at once (muninn-fanout, 10,000 bouncers).
			if r.Body != nil && r.Body != http.NoBody {
				_ = rc.SetReadDeadline(time.Now().Add(read))
				flowing := r.Method == http.MethodPost && r.URL.Path == "/api/v1/ingest"
				r.Body = &boundedBody{ReadCloser: r.Body, rc: rc, read: read, write: write, flowing: flowing}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// boundedBody lifts the read deadline when the body ends; a flowing one
// (ingest's stream) extends it while bytes keep coming.
type boundedBody struct {
	io.ReadCloser
	rc          *http.ResponseController
	read, write time.Duration
	flowing     bool
}

func (b *boundedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 && b.flowing {
		now := time.Now()
		_ = b.rc.SetReadDeadline(now.Add(b.read))
		// The answer comes after the last byte: its time starts then.
		_ = b.rc.SetWriteDeadline(now.Add(b.write))
	}
	if errors.Is(err, io.EOF) {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
