package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-faster/jx"

	"github.com/muninn/muninn/server/api/apigen"
)

// jsonObject describes the one JSON object a line of an ingest or events
// body must be, for check and explain.
type jsonObject struct {
	what   string   // "an observation"
	fields []string // every field, spelled exactly
	// stringArrays maps a field that is an array of strings to what it
	// and each element must be.
	stringArrays map[string]arrayOf
}

// arrayOf names an array of strings and its elements in errors.
type arrayOf struct{ array, element string }

// lineError is a line's problem: the field (a JSON pointer, "" for the
// line as a whole) and the reason.
type lineError struct {
	field, reason string
}

func (e *lineError) Error() string { return e.field + ": " + e.reason }

// ingestError is e as the contract's IngestError (without its line).
func (e *lineError) ingestError() *apigen.IngestError {
	out := &apigen.IngestError{Reason: e.reason}
	if e.field != "" {
		out.Field = ptr(e.field)
	}
	return out
}

// pointer is the JSON pointer (RFC 6901) of a top-level field and, when
// index >= 0, of that element of it.
func pointer(field string, index int) string {
	p := "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(field)
	if index >= 0 {
		p += fmt.Sprintf("/%d", index)
	}
	return p
}

// maxEchoed bounds a field name or value repeated in an error.
const maxEchoed = 64

// clip shortens s to maxEchoed bytes (on a rune boundary) with "…".
func clip(s string) string { return clipTo(s, maxEchoed) }

func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && (s[cut]&0xC0) == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// Bounds of a reported line error: a reason may quote the line's value
// (an ip of a megabyte), and a body may have 1000 of them.
const (
	maxErrorField  = 128
	maxErrorReason = 512
)

// bounded clips e's field and reason to their bounds.
func bounded(e apigen.IngestError) apigen.IngestError {
	if e.Field != nil && len(*e.Field) > maxErrorField {
		e.Field = ptr(clipTo(*e.Field, maxErrorField))
	}
	e.Reason = clipTo(e.Reason, maxErrorReason)
	return e
}

// check reads b's structure before encoding/json decodes it, for what
// encoding/json lets pass or reports without the field: a line that is not
// an object (null included), a key that is not one of the fields spelled
// exactly (encoding/json matches keys ignoring case), a key given twice
// (encoding/json keeps the last), and an element of a string array that is
// not a string (encoding/json names only the array). It returns nil when
// none of these is wrong or b is not valid JSON (encoding/json then says
// where it breaks).
func (o jsonObject) check(b []byte) *lineError {
	d := jx.DecodeBytes(b)
	if d.Next() != jx.Object {
		if err := d.Skip(); err != nil {
			return nil
		}
		return &lineError{reason: "must be a JSON object (" + o.what + ")"}
	}
	seen := map[string]bool{}
	var found *lineError
	err := d.ObjBytes(func(d *jx.Decoder, key []byte) error {
		k := string(key)
		switch {
		case !slices.Contains(o.fields, k):
			found = &lineError{field: clip(pointer(k, -1)), reason: "is not a field of " + o.what + " (" + strings.Join(o.fields, ", ") + ")"}
		case seen[k]:
			found = &lineError{field: pointer(k, -1), reason: "is given more than once"}
		}
		if found != nil {
			return errFound
		}
		seen[k] = true
		arr, isArray := o.stringArrays[k]
		if !isArray || d.Next() != jx.Array {
			return d.Skip()
		}
		i := 0
		return d.Arr(func(d *jx.Decoder) error {
			if t := d.Next(); t != jx.String {
				found = &lineError{field: pointer(k, i), reason: "must be " + arr.element + ", not a JSON " + jsonTypeName(t)}
				return errFound
			}
			i++
			return d.Skip()
		})
	})
	if err != nil && found == nil {
		return nil // not JSON: encoding/json says where it breaks
	}
	return found
}

var errFound = errors.New("found")

// decode decodes b, one line of a body, into v (a pointer to the struct o
// describes): one JSON object of o's fields spelled exactly and once, of
// the right types, with only white space after it. explain turns its error
// into the line's problem.
func (o jsonObject) decode(b []byte, v any) error {
	if e := o.check(b); e != nil {
		return e
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Only white space may follow (dec.More says false for a stray '}').
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the object")
	}
	return nil
}

// timeProblem says what is wrong with t, a time a line gives for when
// something was seen, received at now: more than 5 minutes ahead (a clock
// gone wrong) or before 2000 (a zero or epoch time from the sender);
// "" when nothing is.
func timeProblem(t, now time.Time) string {
	switch {
	case t.After(now.Add(5 * time.Minute)):
		return "is more than 5 minutes in the future"
	case t.Before(oldestSeenAt):
		return "is before 2000-01-01T00:00:00Z"
	}
	return ""
}

// oldestSeenAt is the earliest time timeProblem takes.
var oldestSeenAt = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func jsonTypeName(t jx.Type) string {
	switch t {
	case jx.Null:
		return "null"
	case jx.Bool:
		return "boolean"
	case jx.Number:
		return "number"
	case jx.Array:
		return "array"
	case jx.Object:
		return "object"
	}
	return "string"
}

// explain says why decoding a line failed: the field (a JSON pointer) and
// what it must be, or where the JSON breaks, in words that do not leak Go's
// types or time layouts.
func (o jsonObject) explain(err error) *apigen.IngestError {
	var (
		le     *lineError
		typ    *json.UnmarshalTypeError
		syntax *json.SyntaxError
		parse  *time.ParseError
	)
	switch {
	case errors.As(err, &le):
		return le.ingestError()
	case errors.As(err, &typ) && typ.Field != "":
		want := "a string"
		if typ.Type.Kind() == reflect.Slice {
			want = "an array of strings"
			if arr, ok := o.stringArrays[typ.Field]; ok {
				want = arr.array
			}
		}
		return &apigen.IngestError{Field: ptr(pointer(typ.Field, -1)), Reason: "must be " + want + ", not a JSON " + typ.Value}
	case errors.As(err, &parse), strings.HasPrefix(err.Error(), "Time.UnmarshalJSON"):
		// seen_at is the only time of a line.
		return &apigen.IngestError{Field: ptr("/seen_at"), Reason: "must be an RFC 3339 time such as 2026-01-02T15:04:05Z"}
	case errors.As(err, &syntax):
		return &apigen.IngestError{Reason: fmt.Sprintf("malformed JSON at column %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))}
	}
	return &apigen.IngestError{Reason: "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
}
