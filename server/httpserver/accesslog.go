package httpserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/muninn/muninn/server/api"
)

// RequestIDHeader carries a request's id: answered on every response, and
// taken from a request only when a trusted proxy sends it.
const RequestIDHeader = "X-Request-Id"

// maxRequestID bounds an id taken from a proxy; longer ones are replaced.
const maxRequestID = 128

// requestID gives every request an id, an access note (api.AccessNote) and
// its client's address (api.WithClientAddr), in its context (chi's
// middleware.GetReqID reads the id) and in the X-Request-Id answer header. An
// incoming X-Request-Id is kept only from a peer inside trusted, and only when
// it is short printable ASCII without spaces: anyone else could forge one to
// pin their requests on someone else's, or put a line break in the log.
func requestID(trusted []netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get(RequestIDHeader)
			if !validRequestID(id) || !api.FromTrustedProxy(r, trusted) {
				id = newRequestID()
			}
			w.Header().Set(RequestIDHeader, id)
			ctx, _ := api.WithAccessNote(context.WithValue(r.Context(), middleware.RequestIDKey, id))
			ctx = api.WithClientAddr(ctx, api.ClientOf(r, trusted).Addr)
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := range len(id) {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// newRequestID is 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// quietRoutes are logged at debug: probes and scrapes that arrive every few
// seconds and say nothing about what people do.
var quietRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// maxReasonBody is how much of a failed answer's body is kept to find its
// reason in.
const maxReasonBody = 4 << 10

// accessLog logs one line per request when it is done: its id, method, route
// pattern (chi's, so no address or other parameter is logged), status,
// duration, bytes written, client address and caller (a name, never a
// credential: no header, cookie or query is logged), and for every 4xx and
// 5xx the reason (the problem's detail and field errors, or what the handler
// noted). The level is info, warn for 5xx, and debug for health probes,
// scrapes and long polls that ended without news (304 after wait).
func accessLog(log *slog.Logger, trusted []netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			note := api.AccessNoteFrom(ctx)
			if note == nil {
				ctx, note = api.WithAccessNote(ctx)
				r = r.WithContext(ctx)
			}
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			body := &failedBody{ww: ww}
			ww.Tee(body)
			start := time.Now()
			next.ServeHTTP(ww, r)
			status := ww.Status()
			route := routeOf(r)
			level := slog.LevelInfo
			switch {
			case quietRoutes[route]:
				level = slog.LevelDebug
			case status >= 500:
				level = slog.LevelWarn
			case status == http.StatusNotModified && r.URL.Query().Has("wait"):
				level = slog.LevelDebug
			}
			if !log.Enabled(ctx, level) {
				return
			}
			attrs := make([]slog.Attr, 0, 10)
			attrs = append(attrs,
				slog.String("request_id", middleware.GetReqID(ctx)),
				slog.String("method", methodLabel(r.Method)),
				slog.String("route", route),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
				slog.Int("bytes", ww.BytesWritten()),
				slog.String("client", api.ClientOf(r, trusted).Addr.String()))
			if note.Principal != "" {
				attrs = append(attrs, slog.String("principal", note.Principal))
			}
			if status >= 400 {
				attrs = append(attrs, slog.String("reason", reason(status, note.Reason, ww.Header().Get("Content-Type"), body.buf.Bytes())))
			}
			log.LogAttrs(ctx, level, "Served a request.", attrs...)
		})
	}
}

// routeOf is the route pattern r matched: chi's, completed with the
// operation the API contract matched when the contract answered before the
// API's router recorded it; "unmatched" when nothing matched.
func routeOf(r *http.Request) string {
	route := "unmatched"
	if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
		route = rc.RoutePattern()
	}
	if n := api.AccessNoteFrom(r.Context()); n != nil && n.Route != "" && strings.HasSuffix(route, "/*") {
		route = strings.TrimSuffix(route, "/*") + n.Route
	}
	return route
}

// failedBody keeps the start of an answer's body once its status is an
// error; successful answers (exports of any size) are not copied.
type failedBody struct {
	ww  middleware.WrapResponseWriter
	buf bytes.Buffer
}

func (b *failedBody) Write(p []byte) (int, error) {
	if b.ww.Status() >= 400 && b.buf.Len() < maxReasonBody {
		b.buf.Write(p[:min(len(p), maxReasonBody-b.buf.Len())])
	}
	return len(p), nil
}

// reason says why a request failed: what the handler noted, else the
// problem's detail and its field errors (or the CrowdSec API's message, or a
// plain-text body's first line), else the status text.
func reason(status int, noted, contentType string, body []byte) string {
	if noted != "" {
		return noted
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "application/problem+json" || mt == "application/json":
		var p struct {
			Detail  string `json:"detail"`
			Message string `json:"message"`
			Errors  []struct {
				Field  string `json:"field"`
				Reason string `json:"reason"`
			} `json:"errors"`
		}
		if json.Unmarshal(body, &p) != nil {
			break
		}
		var sb strings.Builder
		sb.WriteString(p.Detail)
		if sb.Len() == 0 {
			sb.WriteString(p.Message)
		}
		for i, e := range p.Errors {
			if i == 3 {
				fmt.Fprintf(&sb, " (and %d more)", len(p.Errors)-i)
				break
			}
			fmt.Fprintf(&sb, "; %s: %s", e.Field, e.Reason)
		}
		if sb.Len() > 0 {
			return sb.String()
		}
	case mt == "text/plain":
		if line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n"); line != "" {
			return line
		}
	}
	return http.StatusText(status)
}

// LogHandler wraps h so that every record logged with the context of a
// request carries that request's request_id, the key of its access log line.
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := middleware.GetReqID(ctx); id != "" {
		has := false
		r.Attrs(func(a slog.Attr) bool {
			has = a.Key == "request_id"
			return !has
		})
		if !has {
			r = r.Clone()
			r.AddAttrs(slog.String("request_id", id))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
