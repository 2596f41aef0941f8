package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/muninn/muninn/server/api/apigen"
)

// writeValidationError turns kin-openapi's findings into a 400 problem naming
// each field (a JSON Pointer into the body, or a parameter's name) and the
// reason; a body over its limit is 413.
func writeValidationError(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	var fields []apigen.FieldError
	var walk func(error)
	walk = func(e error) {
		var mb *http.MaxBytesError
		if errors.As(e, &mb) {
			status = http.StatusRequestEntityTooLarge
			fields = append(fields, fieldErr("", fmt.Sprintf("over %d bytes", mb.Limit)))
			return
		}
		if me, ok := e.(openapi3.MultiError); ok {
			for _, x := range me {
				walk(x)
			}
			return
		}
		if re, ok := e.(*openapi3filter.RequestError); ok {
			field := ""
			if re.Parameter != nil {
				field = re.Parameter.Name
			}
			if inner, ok := re.Err.(openapi3.MultiError); ok {
				for _, x := range inner {
					fields = append(fields, schemaField(field, re.Parameter == nil, x))
				}
				return
			}
			if re.Err == nil {
				fields = append(fields, fieldErr(field, re.Reason))
				return
			}
			fields = append(fields, schemaField(field, re.Parameter == nil, re.Err))
			return
		}
		fields = append(fields, fieldErr("", firstLine(e.Error())))
	}
	walk(err)
	WriteProblem(w, status, "the request does not match the API contract", fields...)
}

// schemaField names the field a schema error is about: inBody makes it a
// JSON Pointer into the body.
func schemaField(field string, inBody bool, e error) apigen.FieldError {
	var mb *http.MaxBytesError
	if errors.As(e, &mb) {
		return fieldErr("", fmt.Sprintf("over %d bytes", mb.Limit))
	}
	var se *openapi3.SchemaError
	if !errors.As(e, &se) {
		return fieldErr(field, firstLine(e.Error()))
	}
	reason := se.Reason
	if inBody {
		field = jsonPointer(se.JSONPointer())
		if name, ok := strings.CutPrefix(reason, "property \""); ok && strings.HasSuffix(reason, "\" is unsupported") {
			field = strings.TrimSuffix(field, "/") + "/" + pointerEscape.Replace(strings.TrimSuffix(name, "\" is unsupported"))
			reason = "unknown field"
		}
	}
	return fieldErr(field, reason)
}

var pointerEscape = strings.NewReplacer("~", "~0", "/", "~1")

// jsonPointer builds an RFC 6901 pointer from its reference tokens.
func jsonPointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(pointerEscape.Replace(t))
	}
	return b.String()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
