// Package apitest helps tests of the HTTP API hold every answer to the
// contract: ValidateResponses wraps the /api/v1 handler (httpserver.Deps.Wrap)
// and fails the test whenever a response does not match openapi.yaml.
package apitest

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apigen"
)

var registerOnce sync.Once

// registerDecoders lets kin-openapi read the text bodies the contract
// declares as strings (CSV, TSV, NDJSON, the YAML of the spec itself).
func registerDecoders() {
	registerOnce.Do(func() {
		for _, mt := range []string{"text/csv", "text/tab-separated-values", "application/x-ndjson", "application/yaml"} {
			openapi3filter.RegisterBodyDecoder(mt, openapi3filter.PlainBodyDecoder)
		}
	})
}

// ValidateResponses returns a middleware for httpserver.Deps.Wrap that checks
// every response of an /api/v1 operation against the spec (status declared,
// headers, content type and body schema) and reports each mismatch with
// t.Errorf. The response still reaches the client unchanged.
func ValidateResponses(t testing.TB) func(http.Handler) http.Handler {
	t.Helper()
	registerDecoders()
	spec, err := apigen.GetSwagger()
	if err != nil {
		t.Fatalf("apitest: load spec: %v", err)
	}
	ops, err := api.Operations(spec)
	if err != nil {
		t.Fatalf("apitest: %v", err)
	}
	// The same patterns the generated server registers, to name the operation
	// of answers the contract gave before the server's router ran (401, 403…).
	mux := chi.NewRouter()
	for key := range ops {
		method, path, _ := strings.Cut(key, " ")
		mux.Method(method, path, http.NotFoundHandler())
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &recorder{ResponseWriter: w, status: http.StatusOK}
			next.ServeHTTP(rec, r)
			if r.Context().Err() != nil {
				return // a long poll whose client went away
			}
			match := chi.NewRouteContext()
			method := r.Method
			if method == http.MethodHead {
				method = http.MethodGet // the contract answers HEAD as the GET, without the body
			}
			pattern := mux.Find(match, method, strings.TrimPrefix(r.URL.EscapedPath(), "/api/v1"))
			op, ok := ops[method+" "+pattern]
			if !ok {
				return // the contract answers unknown routes itself (404/405)
			}
			body := rec.body.Bytes()
			if rec.Header().Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Errorf("apitest: %s %s: gzip body: %v", r.Method, r.URL.Path, err)
					return
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Errorf("apitest: %s %s: gzip body: %v", r.Method, r.URL.Path, err)
					return
				}
			}
			params := map[string]string{}
			for i, k := range match.URLParams.Keys {
				params[k] = match.URLParams.Values[i]
			}
			err := openapi3filter.ValidateResponse(r.Context(), &openapi3filter.ResponseValidationInput{
				RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: op.Route},
				Status:                 rec.status,
				Header:                 rec.Header(),
				Body:                   io.NopCloser(bytes.NewReader(body)),
				Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: r.Method == http.MethodHead},
			})
			if err != nil {
				t.Errorf("apitest: %s %s answered %d, which does not match the contract: %v\nbody: %.2000s", r.Method, r.URL.Path, rec.status, err, body)
			}
		})
	}
}

// recorder passes a response through and keeps a copy of it.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

// Flush passes flushes through, so streamed answers stay streamed.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
