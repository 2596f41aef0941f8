// Package api implements the strict OpenAPI server of /api/v1: one file per
// OpenAPI tag. Handlers return typed responses for outcomes callers expect
// (problem+json naming the field and the reason) and error only for faults.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/muninn/muninn/openapi"
	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
)

// Options are the API's tunables.
type Options struct {
	// Index is the in-memory index lookups, search, exports and explain read
	// from.
	Index *index.Index
	// FlowAlertTags are the tags that make an outside address a bad contact
	// in the flow profiles (MUNINN_FLOW_ALERT_TAGS; see flow.Contact).
	FlowAlertTags []string
	// MaxIngestBytes bounds one ingest body.
	MaxIngestBytes int64
	// IngestBatch is how many observations go to the database at once.
	IngestBatch int
	// IngestVisibleWithin, when positive, lets POST /ingest answer as soon as
	// its observations are durable (appended to the observation log) while
	// the merger's lag (store.MergeLag) is under it; a background merge then
	// makes them visible. Once the lag reaches it, answers wait for the
	// merge again (backpressure), so an acknowledged observation becomes
	// visible within about this bound plus one merge. 0 (the default):
	// every answer waits until its observations are visible.
	IngestVisibleWithin time.Duration
	// Render is the render hub behind the ruleset, bouncer and CrowdSec endpoints.
	Render *render.Hub
	// HoneypotTTL is how long a honeypot tag reported by a bouncer lives.
	HoneypotTTL time.Duration
	// HoneypotRate is how many honeypot hits per second one bouncer may
	// report (bursts up to one full report, 10,000 hits); 100 when 0.
	HoneypotRate float64
	// Heavy bounds the heavy operations running at once (default 4 at
	// once, 5 s of waiting).
	Heavy *Limiter
	// Version is the server's own version (muninn version), against which
	// bouncers' versions are judged (BouncerCompatibility); "" is a
	// development build.
	Version string
	// Observed, when set, is told how many observations of a kind
	// ("ingest", "bouncer") were stored (muninn_observations_ingested_total).
	Observed func(kind string, n int)
	// BaseURL is how people reach the server (MUNINN_BASE_URL): exports link
	// to address pages under it; "" leaves links out.
	BaseURL string
	// ExportDir is where built export files (the MMDB) are written; "" means
	// a directory under the system's temp dir.
	ExportDir string
	// MMDBRebuild is the least time between two builds of the MMDB export:
	// a request for a newer index snapshot within it gets the last build
	// (its file and ETag). 0 builds once per snapshot.
	MMDBRebuild time.Duration
	// AlertSealer seals and opens alert channel URLs; nil: channels cannot
	// be stored or tested (503). AlertSendTimeout bounds a test message
	// (default 10 s).
	AlertSealer      *alert.Sealer
	AlertSendTimeout time.Duration
	// SensorOwnAddresses are the sensor hosts' own addresses
	// (MUNINN_SENSOR_OWN_ADDRESSES): POST /events counts events from them
	// but marks them private (store.SensorEvent.Private), like the
	// address the request came from and sensor.Private addresses.
	SensorOwnAddresses []netip.Prefix
}

// Server implements apigen.StrictServerInterface but for the feeds and jobs
// operations (server/api/feeds); httpserver joins the two.
type Server struct {
	store *store.Store
	log   *slog.Logger
	now   func() time.Time
	opts  Options
	auth  *Authenticator
	lists listCache
	// texts caches formatted deny, allow and list answers.
	texts textCache
	// mmdb is the last MMDB export built.
	mmdb mmdbCache
	// honeypotLimit rate-limits honeypot reports per bouncer.
	honeypotLimit *rateLimits
	// cs caches the CrowdSec API's full decision lists.
	cs crowdSecCache
}

// New returns the API server.
func New(st *store.Store, auth *Authenticator, log *slog.Logger, now func() time.Time, opts Options) *Server {
	if opts.MaxIngestBytes <= 0 {
		opts.MaxIngestBytes = 100 << 20
	}
	if opts.IngestBatch <= 0 {
		opts.IngestBatch = 20000
	}
	if opts.Heavy == nil {
		opts.Heavy = NewLimiter(4, 5*time.Second)
	}
	if opts.HoneypotTTL <= 0 {
		opts.HoneypotTTL = 24 * time.Hour
	}
	if opts.AlertSendTimeout <= 0 {
		opts.AlertSendTimeout = 10 * time.Second
	}
	if opts.HoneypotRate <= 0 {
		opts.HoneypotRate = 100
	}
	return &Server{store: st, log: log, now: now, opts: opts, auth: auth,
		honeypotLimit: newRateLimits(opts.HoneypotRate, maxReportHits)}
}

// problem builds a problem+json body.
// Problem is the one constructor of the problem+json body (RFC 9457) every
// handler answers an error with: type about:blank, the status's title, the
// detail when not empty and the field errors when any.
func Problem(status int, detail string, fields ...apigen.FieldError) apigen.Problem {
	return problem(status, detail, fields...)
}

func problem(status int, detail string, fields ...apigen.FieldError) apigen.Problem {
	p := apigen.Problem{Title: http.StatusText(status), Status: status, Type: ptr("about:blank")}
	if detail != "" {
		p.Detail = &detail
	}
	if len(fields) > 0 {
		p.Errors = &fields
	}
	return p
}

func fieldErr(field, reason string) apigen.FieldError {
	return apigen.FieldError{Field: field, Reason: reason}
}

// WriteProblem writes a problem+json answer; the HTTP layer uses it for errors
// raised before a handler runs.
func WriteProblem(w http.ResponseWriter, status int, detail string, fields ...apigen.FieldError) {
	writeProblemBody(w, status, problem(status, detail, fields...))
}

// writeProblemBody writes a problem+json answer of any problem shape.
func writeProblemBody(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// maxReportHits is the most hits one report holds (the contract's maxItems).
const maxReportHits = 10000

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// ParseAddr parses an address the way the API accepts it: IPv4-mapped IPv6 is
// unmapped, zones are refused.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q has a zone; zones are not allowed", s)
	}
	return a.Unmap(), nil
}

// ParsePrefix parses an address or CIDR into its canonical prefix: host bits
// zeroed, IPv4-mapped IPv6 unmapped (::ffff:192.0.2.0/120 becomes 192.0.2.0/24),
// a bare address as /32 or /128.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q has a zone; zones are not allowed", s)
	}
	return CanonicalPrefix(p)
}

// CanonicalPrefix zeroes host bits and unmaps IPv4-mapped IPv6 prefixes.
func CanonicalPrefix(p netip.Prefix) (netip.Prefix, error) {
	a := p.Addr()
	if a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%s mixes IPv4-mapped and plain IPv6 space", p)
		}
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked(), nil
	}
	return p.Masked(), nil
}

// actorOf names the caller for sources and the audit log.
func actorOf(ctx context.Context) string {
	if p, ok := PrincipalFrom(ctx); ok {
		return p.Name
	}
	return "anonymous"
}

// catchUp brings the index up to every committed write: a handler that
// wrote something views depend on calls it before answering, so its answer
// and the caller's next read agree (read-your-writes).
func (s *Server) catchUp(ctx context.Context) error {
	if err := s.opts.Index.CatchUp(ctx); err != nil {
		return fmt.Errorf("api: catch up the index: %w", err)
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// GetOpenAPI implements GET /openapi.yaml: the contract the server was
// generated from.
func (s *Server) GetOpenAPI(context.Context, apigen.GetOpenAPIRequestObject) (apigen.GetOpenAPIResponseObject, error) {
	return apigen.GetOpenAPI200ApplicationyamlResponse{Body: bytes.NewReader(openapi.Spec), ContentLength: int64(len(openapi.Spec))}, nil
}

// derefOr returns *p, or def when p is nil.
func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
