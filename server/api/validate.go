package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	nethttpmiddleware "github.com/oapi-codegen/nethttp-middleware"

	"github.com/muninn/muninn/server/api/apigen"
)

// MaxBody bounds every request body to limit bytes, except those skip selects
// (ingest has its own, larger limit). A body announced as larger is refused at once.
func MaxBody(limit int64, skip func(*http.Request) bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if (skip == nil || !skip(r)) && r.Body != nil {
				if r.ContentLength > limit {
					WriteProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", limit))
					return
				}
				r.Body = http.MaxBytesReader(w, r.Body, limit)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// ValidationError is the request validator's error handler: it turns kin-openapi's findings into problem+json naming each
// field and the reason.
func ValidationError(_ context.Context, err error, w http.ResponseWriter, _ *http.Request, opts nethttpmiddleware.ErrorHandlerOpts) {
	status := opts.StatusCode
	if status == 0 {
		status = http.StatusBadRequest
	}
	var fields []apigen.FieldError
	var walk func(error)
	walk = func(e error) {
		var re *openapi3filter.RequestError
		if errors.As(e, &re) {
			field := "body"
			if re.Parameter != nil {
				field = re.Parameter.Name
			}
			var inner openapi3.MultiError
			if errors.As(re.Err, &inner) {
				for _, x := range inner {
					fields = append(fields, schemaField(field, x))
				}
				return
			}
			fields = append(fields, schemaField(field, re))
			return
		}
		var me openapi3.MultiError
		if errors.As(e, &me) {
			for _, x := range me {
				walk(x)
			}
			return
		}
		var mb *http.MaxBytesError
		if errors.As(e, &mb) {
			status = http.StatusRequestEntityTooLarge
			fields = append(fields, apigen.FieldError{Field: "body", Reason: fmt.Sprintf("over %d bytes", mb.Limit)})
			return
		}
		fields = append(fields, schemaField("request", e))
	}
	walk(err)
	detail := "the request does not match the API contract"
	if opts.MatchedRoute == nil {
		status = http.StatusNotFound
		detail = "no such endpoint"
	}
	WriteProblem(w, status, detail, fields...)
}

func schemaField(field string, e error) apigen.FieldError {
	var se *openapi3.SchemaError
	if errors.As(e, &se) {
		if ptr := se.JSONPointer(); len(ptr) > 0 && field == "body" {
			field = strings.Join(ptr, ".")
		}
		reason := se.Reason
		if name, ok := strings.CutPrefix(reason, "property \""); ok && strings.HasSuffix(reason, "\" is unsupported") {
			field = strings.TrimPrefix(field+"."+strings.TrimSuffix(name, "\" is unsupported"), "body.")
			reason = "unknown field"
		}
		return apigen.FieldError{Field: field, Reason: reason}
	}
	var re *openapi3filter.RequestError
	if errors.As(e, &re) && re.Err != nil {
		if errors.As(re.Err, &se) {
			return schemaField(field, se)
		}
		return apigen.FieldError{Field: field, Reason: firstLine(re.Err.Error())}
	}
	return apigen.FieldError{Field: field, Reason: firstLine(e.Error())}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
