// Package httpserver assembles muninn's HTTP surface: /api/v1 (the strict
// OpenAPI server behind authentication, role checks and request validation),
// /healthz, /readyz and /metrics.
package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	nethttpmiddleware "github.com/oapi-codegen/nethttp-middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/muninn/muninn/openapi"
	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
)

// Deps is what the HTTP surface needs.
type Deps struct {
	Store          *store.Store
	Logger         *slog.Logger
	Now            func() time.Time
	Registry       *prometheus.Registry
	MaxIngestBytes int64
	// Render is the render hub behind the ruleset, bouncer and CrowdSec
	// endpoints; New makes one (not running) when nil.
	Render *render.Hub
	// HoneypotTTL is how long a honeypot tag reported by a bouncer lives.
	HoneypotTTL time.Duration
	// Mount adds further routes (the UI, render endpoints) to the root router.
	Mount []func(r chi.Router)
	// APIRoutes adds routes under /api/v1 behind authentication.
	APIRoutes []func(r chi.Router)
}

// New returns the root handler.
func New(d Deps) (http.Handler, error) {
	spec, err := apigen.GetSwagger()
	if err != nil {
		return nil, fmt.Errorf("httpserver: load spec: %w", err)
	}
	spec.Servers = nil // matched by prefix below
	auth := api.NewAuthenticator(d.Store, d.Now)
	if d.Render == nil {
		d.Render = render.NewHub(d.Store, d.Logger, d.Now, render.Options{})
	}
	srv := api.New(d.Store, auth, d.Logger, d.Now, api.Options{MaxIngestBytes: d.MaxIngestBytes, Render: d.Render, HoneypotTTL: d.HoneypotTTL})
	m := newMetrics(d.Registry)

	r := chi.NewRouter()
	r.Use(middleware.RequestID, m.middleware, logRequests(d.Logger), recoverer(d.Logger))
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Get("/readyz", readyz(d.Store))
	r.Handle("/metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{}))
	// The contracts are public, like the API's own documentation.
	for _, name := range []string{"openapi.yaml", "feeds.yaml", "bouncer.yaml"} {
		body, err := openapi.Files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("httpserver: read %s: %w", name, err)
		}
		r.Get("/api/v1/"+name, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/yaml")
			_, _ = w.Write(body)
		})
	}
	strict := apigen.NewStrictHandlerWithOptions(srv, nil, apigen.StrictHTTPServerOptions{
		RequestErrorHandlerFunc: func(w http.ResponseWriter, _ *http.Request, err error) {
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
	validator := nethttpmiddleware.OapiRequestValidatorWithOptions(spec, &nethttpmiddleware.Options{
		Options: openapi3filter.Options{
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
		},
		Prefix:                "/api/v1",
		SilenceServersWarning: true,
		// Ingest bodies are streams of up to 100 MB; the validator would read them
		// whole, so ingest validates each line itself.
		Skipper:              isIngest,
		ErrorHandlerWithOpts: api.ValidationError,
	})
	roleGate, err := api.RoleGate(spec, "/api/v1")
	if err != nil {
		return nil, err
	}
	// Bouncer keys (X-Api-Key) reach only these routes; bearer tokens none of them.
	r.Route("/api/v1/bouncer", srv.BouncerRoutes)
	r.Route("/crowdsec/v1", srv.CrowdSecRoutes)
	r.Route("/api/v1", func(ar chi.Router) {
		ar.Use(auth.Middleware)
		srv.RenderRoutes(ar)
		for _, f := range d.APIRoutes {
			f(ar)
		}
		ar.Group(func(g chi.Router) {
			// Roles are checked first; the body limit comes before the validator,
			// which reads bodies.
			g.Use(roleGate, api.NormalizeIngestContentType(d.MaxIngestBytes), api.MaxBody(1<<20, isIngest), validator)
			apigen.HandlerWithOptions(strict, apigen.ChiServerOptions{BaseRouter: g,
				ErrorHandlerFunc: func(w http.ResponseWriter, _ *http.Request, err error) {
					api.WriteProblem(w, http.StatusBadRequest, err.Error())
				}})
		})
	})
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

func readyz(st *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		status := map[string]string{"database": "ok", "schema": "ok"}
		code := http.StatusOK
		if err := st.Ping(ctx); err != nil {
			status["database"], code = err.Error(), http.StatusServiceUnavailable
		} else if pending, err := st.PendingMigrations(ctx); err != nil {
			status["schema"], code = err.Error(), http.StatusServiceUnavailable
		} else if len(pending) > 0 {
			status["schema"], code = fmt.Sprintf("migrations %v are not applied: run muninn migrate", pending), http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(status)
	}
}

func logRequests(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			start := time.Now()
			next.ServeHTTP(ww, r)
			log.DebugContext(r.Context(), "Served a request.", "method", r.Method, "path", r.URL.Path,
				"status", ww.Status(), "bytes", ww.BytesWritten(), "duration_ms", time.Since(start).Milliseconds())
		})
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

func isIngest(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/api/v1/ingest"
}
