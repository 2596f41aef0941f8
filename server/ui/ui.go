// Package ui is muninn's web UI, in the miniflux manner: server-rendered Go
// templates, one file per page action, POST/redirect/GET, forms that work
// without JavaScript, a session cookie and a per-session CSRF token.
package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/web"
)

// Deps is what the UI needs.
type Deps struct {
	Store *store.Store
	// Index is the process's in-memory index (required): every view, search,
	// explanation and impact preview the pages show comes from it.
	Index  *index.Index
	Logger *slog.Logger
	Now    func() time.Time
	// BaseURL is how people reach muninn; an https URL makes cookies Secure
	// even behind a TLS-terminating proxy.
	BaseURL string
	// SessionTTL is how long a login lasts (default 12h).
	SessionTTL time.Duration
	// TrustedProxies are the reverse proxies whose X-Forwarded-For and
	// X-Forwarded-Proto are believed (client address, Secure cookies).
	TrustedProxies []netip.Prefix
	// LoginHashConcurrency bounds the password hashes computed at once
	// (default 2; each takes 19 MiB).
	LoginHashConcurrency int
	// Version is the server's version, against which the bouncers page
	// judges each bouncer's (api.BouncerCompatibility).
	Version string
	// AlertSealer seals alert channel URLs (nil: channels cannot be stored
	// or tested from the UI).
	AlertSealer *alert.Sealer
	// FlowAlertTags make an outside address a bad contact on the flow pages
	// (MUNINN_FLOW_ALERT_TAGS; flow.Contact).
	FlowAlertTags []string
}

// Handler serves /ui.
type Handler struct {
	store      *store.Store
	sealer     *alert.Sealer
	ix         *index.Index
	log        *slog.Logger
	now        func() time.Time
	secureBase bool
	sessionTTL time.Duration
	trusted    []netip.Prefix
	version    string
	alertTags  []string
	// hashSlots bounds concurrent password checks; check is CheckPassword
	// (tests count the checks running at once).
	hashSlots chan struct{}
	check     func(hash, password string) bool
	// keyMu guards csrfKey, loaded from the store on first use.
	keyMu   sync.Mutex
	csrfKey []byte
	pages   map[string]*template.Template
	static  http.Handler

	// refreshMu serialises dashboard computations; statsMu guards stats.
	refreshMu sync.Mutex
	statsMu   sync.Mutex
	stats     *dashboardStats
}

// Login throttle, per username (from any address): freeLoginFailures
// failures in a row cost nothing, each one after that doubles the wait before
// the next attempt (1 s, 2 s, 4 s…, at most maxLoginDelay). Nobody is locked
// out: the right password works once the wait is over. Failures older than
// loginWindow are forgotten.
const (
	freeLoginFailures = 5
	maxLoginDelay     = 15 * time.Minute
	loginWindow       = 15 * time.Minute
	// hashSlotWait is how long a login waits for a free hash slot before
	// it is answered 503.
	hashSlotWait = 10 * time.Second
)

// loginDelay is the wait after failures failed logins in a row.
func loginDelay(failures int) time.Duration {
	if failures < freeLoginFailures {
		return 0
	}
	if n := failures - freeLoginFailures; n < 20 {
		return min(time.Duration(1<<n)*time.Second, maxLoginDelay)
	}
	return maxLoginDelay
}

// pageNames are the templates in web/templates, each rendered inside layout.html.
var pageNames = []string{"login", "dashboard", "prefix", "confirm", "search", "tokens", "tags", "audit", "feeds", "feed", "error", "rulesets", "ruleset", "ruleset_edit", "bouncers", "users", "events", "alerts", "detections", "flows", "flow"}

// New parses the templates and returns the UI handler. It fails when d has no
// Index.
func New(d Deps) (*Handler, error) {
	if d.Index == nil {
		return nil, errors.New("ui: new: Deps.Index is required")
	}
	if d.SessionTTL <= 0 {
		d.SessionTTL = 12 * time.Hour
	}
	if d.LoginHashConcurrency <= 0 {
		d.LoginHashConcurrency = 2
	}
	h := &Handler{store: d.Store, sealer: d.AlertSealer, ix: d.Index, log: d.Logger, now: d.Now, sessionTTL: d.SessionTTL, version: d.Version, alertTags: d.FlowAlertTags,
		secureBase: strings.HasPrefix(strings.ToLower(d.BaseURL), "https://"), pages: map[string]*template.Template{},
		trusted: d.TrustedProxies, hashSlots: make(chan struct{}, d.LoginHashConcurrency), check: CheckPassword}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(web.FS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse template %s: %w", name, err)
		}
		h.pages[name] = t
	}
	static, err := fs.Sub(web.FS, "static")
	if err != nil {
		return nil, fmt.Errorf("ui: static files: %w", err)
	}
	h.static = http.StripPrefix("/ui/static/", http.FileServerFS(static))
	return h, nil
}

// Mount adds /ui to r.
func (h *Handler) Mount(r chi.Router) {
	r.Get("/ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently).ServeHTTP)
	r.Route("/ui", func(r chi.Router) {
		r.Use(startTimer, securityHeaders, limitForm, h.textOnly)
		r.Get("/static/*", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=3600")
			h.static.ServeHTTP(w, r)
		})
		r.Get("/login", h.showLogin)
		r.Post("/login", h.submitLogin)
		r.Group(func(r chi.Router) {
			r.Use(h.requireSession)
			r.Post("/logout", h.logout)
			r.Get("/", h.showDashboard)
			r.Get("/search", h.showSearch)
			r.Get("/ips/{address}", h.showIP)
			r.Get("/networks/{address}/{bits}", h.showNetwork)
			r.Get("/tags", h.listTags)
			r.Get("/audit", h.listAudit)
			r.Get("/feeds", h.listFeeds)
			r.Get("/feeds/{name}", h.showFeed)
			r.Get("/rulesets", h.listRulesets)
			r.Get("/rulesets/{name}", h.showRuleset)
			r.Get("/bouncers", h.listBouncers)
			r.Get("/events", h.listEvents)
			r.Get("/alerts", h.listAlerts)
			r.Get("/detections", h.listDetections)
			r.Get("/flows", h.listFlowHosts)
			r.Get("/flows/hosts/{address}", h.showFlowHost)
			r.Get("/flows/networks/{address}/{bits}", h.showFlowNetwork)
			r.Group(func(r chi.Router) {
				r.Use(h.requireRole(api.RoleWriter))
				r.Post("/override", h.submitOverride)
				r.Post("/override/delete", h.deleteOverride)
			})
			r.Group(func(r chi.Router) {
				r.Use(h.requireRole(api.RoleAdmin))
				r.Get("/tokens", h.listTokens)
				r.Post("/tokens", h.createToken)
				r.Post("/tokens/{id}/revoke", h.revokeToken)
				r.Get("/users", h.listUsers)
				r.Post("/users/{name}/{action}", h.changeUser)
				r.Get("/rulesets/new", h.editRuleset)
				r.Get("/rulesets/{name}/edit", h.editRuleset)
				r.Post("/rulesets", h.submitRuleset)
				r.Post("/bouncers/{name}/crowdsec", h.submitBouncerCrowdSec)
				r.Post("/alerts/channels", h.submitChannel)
				r.Post("/alerts/channels/{name}/test", h.testChannel)
				r.Post("/alerts/channels/{name}/delete", h.deleteChannel)
				r.Post("/alerts/rules", h.submitRule)
				r.Post("/alerts/rules/{name}/delete", h.deleteRule)
				r.Post("/detections/{name}", h.submitDetection)
			})
		})
	})
}

type startKey struct{}

// startTimer notes when the request arrived, for the Server-Timing header.
func startTimer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), startKey{}, time.Now())))
	})
}

// securityHeaders keeps pages out of frames and caches and allows no script or
// style from anywhere else.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// limitForm bounds form bodies; the UI's largest form is a few kilobytes.
func limitForm(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		}
		next.ServeHTTP(w, r)
	})
}

// textOnly refuses a request whose path or query is not text (invalid
// UTF-8, a NUL), by the API's rule: no page hands such a value to the index
// or the database.
func (h *Handler) textOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad := api.TextProblem(r.URL.Path)
		for k, vs := range r.URL.Query() {
			for _, v := range append(vs, k) {
				if reason := api.TextProblem(v); reason != "" && bad == "" {
					bad = reason
				}
			}
		}
		if bad != "" {
			h.fail(w, r, http.StatusBadRequest, "The address of this page is not valid: a part of it "+bad+".")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title  string
	Nav    string
	User   *store.User
	CSRF   string
	Flash  string
	Status int
	Data   any
}

// CanWrite reports whether the user may change overrides.
func (p page) CanWrite() bool {
	return p.User != nil && api.RoleRank(p.User.Role) >= api.RoleRank(api.RoleWriter)
}

// IsAdmin reports whether the user may manage tokens.
func (p page) IsAdmin() bool {
	return p.User != nil && api.RoleRank(p.User.Role) >= api.RoleRank(api.RoleAdmin)
}

// render writes template name with data, status and the session's user, CSRF
// token and pending flash message.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, title, nav string, data any) {
	p := page{Title: title, Nav: nav, Data: data, Status: status}
	if s, ok := sessionFrom(r.Context()); ok {
		p.User, p.CSRF = &s.User, s.CSRF
	}
	if c, err := r.Cookie(flashCookie); err == nil {
		if v, err := url.QueryUnescape(c.Value); err == nil {
			p.Flash = v
		}
		http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/ui/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: h.secure(r)})
	}
	h.renderPage(w, r, status, name, p)
}

func (h *Handler) renderPage(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		h.log.ErrorContext(r.Context(), "A UI template failed.", "template", name, "error", err)
		http.Error(w, "internal error; the server log has the details", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if start, ok := r.Context().Value(startKey{}).(time.Time); ok {
		// Server-Timing shows the page's server time in the browser's devtools.
		w.Header().Set("Server-Timing", fmt.Sprintf("app;dur=%.1f", float64(time.Since(start).Microseconds())/1000))
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorPage is the data of error.html.
type errorPage struct {
	Message string
	Back    string
}

// fail renders an error page with status and a sentence saying what went wrong.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	api.NoteReason(r.Context(), msg)
	h.render(w, r, status, "error", http.StatusText(status), "", errorPage{Message: msg, Back: "/ui/"})
}

// fault logs err and renders a 500 page.
func (h *Handler) fault(w http.ResponseWriter, r *http.Request, op string, err error) {
	h.log.ErrorContext(r.Context(), "A UI request failed.", "op", op, "path", r.URL.Path, "error", err)
	h.fail(w, r, http.StatusInternalServerError, "Something went wrong on the server while trying to "+op+". The server log has the details.")
}

const flashCookie = "muninn_flash"

// redirect answers a successful POST with 303 to target, carrying a one-time
// message shown on the next page.
func (h *Handler) redirect(w http.ResponseWriter, r *http.Request, target, flash string) {
	if flash != "" {
		http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(flash), Path: "/ui/", MaxAge: 60,
			HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: h.secure(r)})
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// catchUp brings the index up to every recorded write, so that the page a
// write redirects to shows it (read-your-writes). The write is stored either
// way: on failure the index catches up from the change feed by itself, and
// only a warning is logged.
func (h *Handler) catchUp(ctx context.Context) {
	if err := h.ix.CatchUp(ctx); err != nil {
		h.log.WarnContext(ctx, "The index could not catch up after a write; the next page may not show it yet.", "error", err)
	}
}

// secure reports whether cookies must be Secure for r: it came over TLS,
// directly or through a trusted proxy, or the base URL is https.
func (h *Handler) secure(r *http.Request) bool { return h.secureBase || api.ClientOf(r, h.trusted).TLS }

// prefixURL is the UI page of p: /ui/ips/A for one address, else /ui/networks/A/B.
func prefixURL(p netip.Prefix) string {
	if p.IsSingleIP() {
		return "/ui/ips/" + url.PathEscape(p.Addr().String())
	}
	return fmt.Sprintf("/ui/networks/%s/%d", url.PathEscape(p.Addr().String()), p.Bits())
}
