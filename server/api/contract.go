package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/api/apigen"
)

// RolePublic and RoleBouncer are the roles of x-muninn-role besides the token
// roles: an operation anyone may call, and one only bouncer keys reach.
const (
	RolePublic  = "public"
	RoleBouncer = "bouncer"
)

// RoleExtension is the OpenAPI extension that names an operation's role.
const RoleExtension = "x-muninn-role"

// streamExtension marks an operation whose body the handler reads as a stream
// and validates itself, element by element (ingest: up to 100 MB).
const streamExtension = "x-muninn-streamed-body"

// closedQueryExtension marks an operation whose query takes only the
// parameters it declares: any other answers 400 (the prefix list endpoints,
// where a mistyped parameter would silently serve the wrong list to a router).
const closedQueryExtension = "x-muninn-closed-query"

// bouncerKeyExtension marks a token operation that a bouncer key may call
// too, acting for its own host (POST /events: a bouncer is a sensor).
const bouncerKeyExtension = "x-muninn-bouncer-key"

// heavyExtension marks an operation that runs a few at a time (search and
// exports); see Limiter.
const heavyExtension = "x-muninn-heavy"

// maxBodyBytes bounds every request body but a streamed one.
const maxBodyBytes = 1 << 20

// Operation is one operation of the contract as the server enforces it.
type Operation struct {
	// Route is the operation in the spec, for request and response
	// validation. Its security is cleared: the contract authenticates first,
	// and kin-openapi would read a whole body into memory to check security.
	Route *routers.Route
	// Role is its x-muninn-role: public, reader, writer, admin or bouncer.
	Role string
	// Streamed says the handler reads and validates the body itself.
	Streamed bool
	// ParamRoles names the query parameters that need a role above the
	// operation's (their x-muninn-role), e.g. allow_wide: admin.
	ParamRoles map[string]string
	// Heavy says the operation takes a turn of the server's Limiter.
	Heavy bool
	// Query holds, for an operation with x-muninn-closed-query, the query
	// parameters it declares; nil when any other is ignored.
	Query map[string]bool
	// BouncerKey says a bouncer key (X-Api-Key) reaches the operation too.
	BouncerKey bool
	// PathOnly lists, when the operation takes no body and only path
	// parameters that are strings bounded at most by length, those
	// parameters' bounds: a request without a query string whose path
	// values are within them passes the contract's request validation, so
	// the middleware need not run it (GET /ips/{address} is the hot path).
	// Nil when the operation needs the full validation.
	PathOnly []pathBound
}

// pathBound is the length bounds of one string path parameter, in
// characters (JSON Schema minLength and maxLength; max 0: none).
type pathBound struct {
	name     string
	min, max uint64
}

// pathOnly returns the bounds of op's parameters for Operation.PathOnly.
func pathOnly(item *openapi3.PathItem, op *openapi3.Operation) []pathBound {
	if op.RequestBody != nil {
		return nil
	}
	out := []pathBound{}
	for _, ref := range append(slices.Clone(item.Parameters), op.Parameters...) {
		p := ref.Value
		if p == nil || p.In != openapi3.ParameterInPath || p.Schema == nil || p.Schema.Value == nil || p.Content != nil {
			return nil
		}
		sc := p.Schema.Value
		if !sc.Type.Is(openapi3.TypeString) || sc.Pattern != "" || sc.Format != "" || len(sc.Enum) > 0 ||
			len(sc.AllOf) > 0 || len(sc.AnyOf) > 0 || len(sc.OneOf) > 0 || sc.Not != nil {
			return nil
		}
		b := pathBound{name: p.Name, min: sc.MinLength}
		if sc.MaxLength != nil {
			b.max = *sc.MaxLength
		}
		out = append(out, b)
	}
	return out
}

// pathValid reports whether params are within the bounds of PathOnly (false
// when the operation has none): then the request passes validation.
func (o Operation) pathValid(params map[string]string) bool {
	if o.PathOnly == nil || len(params) != len(o.PathOnly) {
		return false
	}
	for _, b := range o.PathOnly {
		v, ok := params[b.name]
		if !ok || v == "" { // an empty value is a missing required parameter
			return false
		}
		n := uint64(utf8.RuneCountInString(v))
		if n < b.min || (b.max > 0 && n > b.max) {
			return false
		}
	}
	return true
}

// Operations reads every operation of spec, keyed "METHOD /path" with the
// spec's path template (which is the chi route pattern the generated server
// registers). It fails when an operation's role is missing, unknown, or
// disagrees with its security (public ⇔ no security, bouncer ⇔ bouncerKey).
func Operations(spec *openapi3.T) (map[string]Operation, error) {
	out := map[string]Operation{}
	for path, item := range spec.Paths.Map() {
		for method, op := range item.Operations() {
			role, _ := op.Extensions[RoleExtension].(string)
			sec := spec.Security
			if op.Security != nil {
				sec = *op.Security
			}
			var schemes []string
			for _, req := range sec {
				for name := range req {
					schemes = append(schemes, name)
				}
			}
			want := "bearerAuth"
			switch role {
			case RolePublic:
				want = ""
			case RoleBouncer:
				want = "bouncerKey"
			case RoleReader, RoleWriter, RoleAdmin:
			default:
				return nil, fmt.Errorf("api: %s %s: %s %q is not public, reader, writer, admin or bouncer", method, path, RoleExtension, role)
			}
			bouncerToo, _ := op.Extensions[bouncerKeyExtension].(bool)
			if bouncerToo && want == "bearerAuth" {
				slices.Sort(schemes)
				if !slices.Equal(schemes, []string{"bearerAuth", "bouncerKey"}) {
					return nil, fmt.Errorf("api: %s %s: %s needs security bearerAuth and bouncerKey, the spec says %v", method, path, bouncerKeyExtension, schemes)
				}
				schemes = []string{want}
			}
			if (want == "" && len(schemes) != 0) || (want != "" && !slices.Equal(schemes, []string{want})) {
				return nil, fmt.Errorf("api: %s %s: role %s needs security %q, the spec says %v", method, path, role, want, schemes)
			}
			paramRoles, err := paramRoles(op)
			if err != nil {
				return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
			}
			if len(paramRoles) > 0 && want != "bearerAuth" {
				return nil, fmt.Errorf("api: %s %s: parameter roles need a token-authenticated operation, not %s", method, path, role)
			}
			streamed, _ := op.Extensions[streamExtension].(bool)
			heavy, _ := op.Extensions[heavyExtension].(bool)
			var query map[string]bool
			if closed, _ := op.Extensions[closedQueryExtension].(bool); closed {
				query = map[string]bool{}
				for _, ref := range append(slices.Clone(item.Parameters), op.Parameters...) {
					if ref.Value != nil && ref.Value.In == openapi3.ParameterInQuery {
						query[ref.Value.Name] = true
					}
				}
			}
			checked := *op
			checked.Security = &openapi3.SecurityRequirements{}
			out[method+" "+path] = Operation{Route: &routers.Route{Spec: spec, Path: path, PathItem: item, Method: method, Operation: &checked},
				Role: role, Streamed: streamed, ParamRoles: paramRoles, Heavy: heavy, Query: query, PathOnly: pathOnly(item, op), BouncerKey: bouncerToo}
		}
	}
	return out, nil
}

// paramRoles reads the x-muninn-role of op's query parameters.
func paramRoles(op *openapi3.Operation) (map[string]string, error) {
	var out map[string]string
	for _, ref := range op.Parameters {
		p := ref.Value
		if p == nil {
			continue
		}
		role, ok := p.Extensions[RoleExtension].(string)
		if !ok {
			continue
		}
		if p.In != openapi3.ParameterInQuery || RoleRank(role) == 0 {
			return nil, fmt.Errorf("parameter %s: %s %q must be reader, writer or admin on a query parameter", p.Name, RoleExtension, role)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[p.Name] = role
	}
	return out, nil
}

// ParamRole is the role the contract requires of a caller that sends the
// query parameter name (its x-muninn-role in openapi.yaml), or "" when the
// parameter needs no more than its operation. The UI asks it before offering
// what the parameter does, so both follow the one declaration.
func ParamRole(name string) string {
	return specParamRoles()[name]
}

var specParamRoles = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	spec, err := apigen.GetSwagger()
	if err != nil {
		panic(fmt.Sprintf("api: load the embedded spec: %v", err))
	}
	for _, ref := range spec.Components.Parameters {
		if p := ref.Value; p != nil {
			if role, ok := p.Extensions[RoleExtension].(string); ok {
				out[p.Name] = role
			}
		}
	}
	return out
})

// MaySendParam reports whether a caller with role may send the query
// parameter name: the one check behind the contract's 403 and the UI.
func MaySendParam(name, role string) bool {
	need := ParamRole(name)
	return need == "" || RoleRank(role) >= RoleRank(need)
}

// Contract is the one place the API's contract is enforced before a handler
// runs: it finds the operation the router itself matched, authenticates the
// credential the operation's security names, checks the operation's role, and
// validates the parameters and the body against the spec, in that order.
type Contract struct {
	ops       map[string]Operation
	routes    chi.Routes
	srv       *Server
	auth      *Authenticator
	maxIngest int64
}

// NewContract returns the contract of spec over routes, the chi router the
// generated server registers its operations on.
func NewContract(spec *openapi3.T, routes chi.Routes, srv *Server, auth *Authenticator) (*Contract, error) {
	ops, err := Operations(spec)
	if err != nil {
		return nil, err
	}
	return &Contract{ops: ops, routes: routes, srv: srv, auth: auth, maxIngest: srv.opts.MaxIngestBytes}, nil
}

var allMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// Middleware enforces the contract; install it with Use on the router the
// operations are registered on. chi matches the escaped path (RawPath), so a
// %2F inside a path parameter stays inside it.
func (c *Contract) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.EscapedPath()
		if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.RoutePath != "" {
			path = rctx.RoutePath
		}
		match := routeContexts.Get().(*chi.Context)
		match.Reset()
		defer routeContexts.Put(match)
		method := r.Method
		if method == http.MethodHead && c.routes.Find(chi.NewRouteContext(), http.MethodHead, path) == "" {
			// HEAD answers like GET without the body (RFC 9110 §9.3.2), for
			// every GET operation: routed, checked and answered as the GET.
			method = http.MethodGet
		}
		pattern := c.routes.Find(match, method, path)
		op, ok := c.ops[method+" "+pattern]
		if n := accessNote(r.Context()); n != nil {
			n.Route = pattern
		}
		if pattern == "" || !ok {
			var allowed []string
			for _, m := range allMethods {
				if c.routes.Find(chi.NewRouteContext(), m, path) != "" || m == http.MethodHead && slices.Contains(allowed, http.MethodGet) {
					allowed = append(allowed, m)
				}
			}
			if len(allowed) > 0 {
				w.Header().Set("Allow", strings.Join(allowed, ", "))
				WriteProblem(w, http.StatusMethodNotAllowed, r.Method+" is not allowed here; allowed: "+strings.Join(allowed, ", "))
				return
			}
			WriteProblem(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
			return
		}
		ctx := r.Context()
		role := op.Role
		if op.BouncerKey && r.Header.Get("Authorization") == "" && r.Header.Get("X-Api-Key") != "" {
			role = RoleBouncer
		}
		switch role {
		case RolePublic:
		case RoleBouncer:
			b, err := c.srv.AuthenticateBouncer(ctx, strings.TrimSpace(r.Header.Get("X-Api-Key")))
			switch {
			case errors.Is(err, errNoBouncerKey), errors.Is(err, errBadBouncerKey):
				WriteProblem(w, http.StatusUnauthorized, err.Error())
				return
			case err != nil:
				logCredentialError(ctx, c.srv.log, "Could not check a bouncer key.", err)
				writeUnavailable(w, "cannot check the credential now")
				return
			}
			ctx = WithBouncer(ctx, b)
		default:
			h := r.Header.Get("Authorization")
			secret, found := strings.CutPrefix(h, "Bearer ")
			if h != "" && !found {
				w.Header().Set("WWW-Authenticate", `Bearer realm="muninn"`)
				WriteProblem(w, http.StatusUnauthorized, "the Authorization header must be \"Bearer <token>\"")
				return
			}
			p, err := c.auth.Authenticate(ctx, strings.TrimSpace(secret))
			switch {
			case errors.Is(err, ErrNoCredential), errors.Is(err, ErrBadToken), errors.Is(err, ErrExpiredToken):
				w.Header().Set("WWW-Authenticate", `Bearer realm="muninn"`)
				WriteProblem(w, http.StatusUnauthorized, err.Error())
				return
			case err != nil:
				logCredentialError(ctx, c.srv.log, "Could not check a token.", err)
				writeUnavailable(w, "cannot check the credential now")
				return
			}
			if RoleRank(p.Role) < RoleRank(op.Role) {
				WriteProblem(w, http.StatusForbidden, "this needs the "+op.Role+" role; "+p.Name+" has "+p.Role)
				return
			}
			var q url.Values
			if len(op.ParamRoles) > 0 {
				q = r.URL.Query()
			}
			for name, role := range op.ParamRoles {
				// Sent at all (even =false) needs the role: the flag's presence
				// is what a caller asks for.
				if q.Has(name) && RoleRank(p.Role) < RoleRank(role) {
					WriteProblem(w, http.StatusForbidden, name+" needs the "+role+" role; "+p.Name+" has "+p.Role,
						fieldErr(name, "only the "+role+" role may send "+name))
					return
				}
			}
			ctx = WithPrincipal(ctx, p)
		}
		// Content coding is HTTP's, not the contract's: handlers that serve
		// cached gzip bodies read it from the context.
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			ctx = context.WithValue(ctx, gzipKey{}, true)
		}
		r = r.WithContext(ctx)
		if rb := op.Route.Operation.RequestBody; rb != nil && rb.Value != nil && r.ContentLength != 0 {
			ct := r.Header.Get("Content-Type")
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || rb.Value.Content.Get(mt) == nil {
				WriteProblem(w, http.StatusUnsupportedMediaType, fmt.Sprintf("this operation takes %s, not %q", strings.Join(mediaTypes(rb.Value.Content), " or "), ct),
					fieldErr("Content-Type", "unsupported media type"))
				return
			}
			limit := int64(maxBodyBytes)
			if op.Streamed {
				limit = c.maxIngest
			}
			if r.ContentLength > limit {
				p := problem(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes; nothing was read", limit), fieldErr("", "too large"))
				if op.Streamed {
					// Ingest's 413 says how far it got: nowhere.
					writeProblemBody(w, p.Status, apigen.IngestProblem{Type: p.Type, Title: p.Title, Status: p.Status, Detail: p.Detail, Errors: p.Errors, StoppedAtLine: 1})
					return
				}
				WriteProblem(w, p.Status, *p.Detail, *p.Errors...)
				return
			}
			// The limit counts decompressed bytes: a small gzip body can
			// hold gigabytes.
			switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
			case "", "identity":
			case "gzip", "x-gzip":
				r.Body = &gunzipBody{src: r.Body}
				r.Header.Del("Content-Encoding")
				r.ContentLength = -1
			default:
				WriteProblem(w, http.StatusUnsupportedMediaType, fmt.Sprintf("the body's Content-Encoding %q is not supported; send it plain or gzip", enc),
					fieldErr("Content-Encoding", "unsupported content coding"))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			if op.Streamed && (mt == "application/json" || mt == "text/plain") {
				// The generated handler would decode a JSON body whole before the
				// handler runs; a streamed one goes to the handler as a stream.
				r.Header.Set("Content-Type", "application/x-ndjson")
			}
			if !op.Streamed && strings.HasSuffix(mt, "json") {
				// No handler, index or database sees a string that is not
				// text (PostgreSQL's text holds no NUL): checked here once
				// for every JSON body, as for every parameter below.
				b, err := io.ReadAll(r.Body)
				if err != nil {
					var tooBig *http.MaxBytesError
					if errors.As(err, &tooBig) {
						WriteProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", limit), fieldErr("", "too large"))
						return
					}
					WriteProblem(w, http.StatusBadRequest, "the body could not be read", fieldErr("", err.Error()))
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(b))
				doc, reason := jsonBody(b)
				if reason != "" {
					WriteProblem(w, http.StatusBadRequest, "the body is not valid JSON", fieldErr("", reason))
					return
				}
				if at, reason := jsonTextProblem(doc); reason != "" {
					WriteProblem(w, http.StatusBadRequest, "the request does not match the API contract", fieldErr(at, reason))
					return
				}
			}
		}
		params := make(map[string]string, len(match.URLParams.Keys))
		var bad []apigen.FieldError
		for i, k := range match.URLParams.Keys {
			v, err := url.PathUnescape(match.URLParams.Values[i])
			if err != nil {
				WriteProblem(w, http.StatusBadRequest, "the request does not match the API contract", fieldErr(k, "is not a valid escaped path segment"))
				return
			}
			if reason := TextProblem(v); reason != "" {
				bad = append(bad, fieldErr(k, reason))
			}
			params[k] = v
		}
		// No handler, index or database sees a parameter that is not text.
		var query url.Values
		if r.URL.RawQuery != "" {
			query = r.URL.Query()
		}
		for _, k := range slices.Sorted(maps.Keys(query)) {
			if reason := TextProblem(k); reason != "" {
				bad = append(bad, fieldErr(k, "the name "+reason))
				continue
			}
			if op.Query != nil && !op.Query[k] {
				bad = append(bad, fieldErr(k, "is not a parameter of this operation"))
				continue
			}
			for _, v := range query[k] {
				if reason := TextProblem(v); reason != "" {
					bad = append(bad, fieldErr(k, reason))
					break
				}
			}
		}
		if len(bad) > 0 {
			WriteProblem(w, http.StatusBadRequest, "the request does not match the API contract", bad...)
			return
		}
		if r.URL.RawQuery != "" || !op.pathValid(params) {
			err := openapi3filter.ValidateRequest(ctx, &openapi3filter.RequestValidationInput{
				Request: r, PathParams: params, Route: op.Route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true, ExcludeRequestBody: op.Streamed},
			})
			if err != nil {
				writeValidationError(w, err)
				return
			}
		}
		if op.Heavy {
			release, ok := c.srv.opts.Heavy.Acquire(r.Context())
			if !ok {
				writeUnavailable(w, "too many searches and exports are running; try again shortly")
				return
			}
			defer release()
		}
		if method != r.Method {
			if rctx := chi.RouteContext(r.Context()); rctx != nil {
				rctx.RouteMethod = method
			}
			w = headWriter{w}
		}
		next.ServeHTTP(w, r)
	})
}

// headWriter answers a HEAD request routed to a GET operation: the status
// and headers go out, the body is dropped (net/http would drop it too, but
// with an error for every write the handler would report).
type headWriter struct{ http.ResponseWriter }

func (h headWriter) Write(b []byte) (int, error) { return len(b), nil }

// Unwrap gives http.ResponseController the writer underneath.
func (h headWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// jsonBody decodes b, which must be one JSON document in UTF-8, or says why
// it is not (a second document after the first, say) with the line and
// column where it goes wrong. An empty body decodes to nil: an operation's
// required body is the contract's to check.
func jsonBody(b []byte) (doc any, reason string) {
	if len(b) == 0 {
		return nil, ""
	}
	where := func(off int) string {
		line := 1 + bytes.Count(b[:off], []byte("\n"))
		col := 1 + utf8.RuneCount(b[bytes.LastIndexByte(b[:off], '\n')+1:off])
		return fmt.Sprintf("line %d, column %d", line, col)
	}
	if !utf8.Valid(b) {
		off := 0
		for off < len(b) {
			r, n := utf8.DecodeRune(b[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		return nil, where(off) + ": must be valid UTF-8"
	}
	err := json.Unmarshal(b, &doc)
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		// The offset is just past the offending byte; a cut-off document
		// goes wrong just past its end.
		off := max(0, int(syn.Offset)-1)
		if strings.HasPrefix(syn.Error(), "unexpected end") {
			off = len(b)
		}
		return nil, where(off) + ": " + syn.Error()
	case err != nil:
		return nil, err.Error()
	}
	return doc, ""
}

// jsonTextProblem returns the JSON pointer of the first string (or object
// key) in the decoded JSON document v that is not text (TextProblem) and
// why; "" when there is none.
func jsonTextProblem(v any) (at, reason string) {
	var walk func(v any, at string) (string, string)
	walk = func(v any, at string) (string, string) {
		switch v := v.(type) {
		case string:
			if r := TextProblem(v); r != "" {
				return at, r
			}
		case []any:
			for i, e := range v {
				if p, r := walk(e, at+"/"+strconv.Itoa(i)); r != "" {
					return p, r
				}
			}
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				p := at + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(k)
				if r := TextProblem(k); r != "" {
					return p, "the name " + r
				}
				if p, r := walk(v[k], p); r != "" {
					return p, r
				}
			}
		}
		return "", ""
	}
	return walk(v, "")
}

// logCredentialError logs a failed credential check: at error, unless the
// client went away first (its request's context ended), which is routine.
func logCredentialError(ctx context.Context, log *slog.Logger, msg string, err error) {
	level := slog.LevelError
	if ctx.Err() != nil {
		level = slog.LevelDebug
	}
	log.Log(ctx, level, msg, "error", err)
}

// routeContexts recycles the route contexts the middleware matches
// operations with.
var routeContexts = sync.Pool{New: func() any { return chi.NewRouteContext() }}

// gzipKey marks a request whose Accept-Encoding takes gzip.
type gzipKey struct{}

// wantsGzip reports whether the request behind ctx accepts a gzip body.
func wantsGzip(ctx context.Context) bool {
	v, _ := ctx.Value(gzipKey{}).(bool)
	return v
}

func mediaTypes(c openapi3.Content) []string {
	out := make([]string, 0, len(c))
	for mt := range c {
		out = append(out, mt)
	}
	slices.Sort(out)
	return out
}

func writeUnavailable(w http.ResponseWriter, detail string) {
	w.Header().Set("Retry-After", "5")
	WriteProblem(w, http.StatusServiceUnavailable, detail)
}

// gunzipBody decompresses a gzip request body. It reads the gzip header on
// the first Read rather than up front, so a corrupt stream is an error of the
// body, answered where the body is read (400), like any other unreadable one.
type gunzipBody struct {
	src  io.ReadCloser
	once sync.Once
	zr   *gzip.Reader
	err  error
}

func (g *gunzipBody) Read(p []byte) (int, error) {
	g.once.Do(func() {
		g.zr, g.err = gzip.NewReader(g.src)
		if g.err != nil {
			g.err = gzipError(g.err)
		}
	})
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.zr.Read(p)
	if err != nil && err != io.EOF {
		err = gzipError(err)
	}
	return n, err
}

// gzipError says an error came from decompressing the body, once:
// compress/gzip's own errors already start with "gzip: ".
func gzipError(err error) error {
	if strings.HasPrefix(err.Error(), "gzip: ") {
		return err
	}
	return fmt.Errorf("gzip: %w", err)
}

func (g *gunzipBody) Close() error { return g.src.Close() }
