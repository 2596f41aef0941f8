package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// auditChange is one field an audit entry changed: its path in the stored
// value ("crowdsec.expand"; "" when the value is not an object) and its old
// and new values as people read them ("" when absent).
type auditChange struct {
	Field    string
	Old, New string
}

// durationFields are the audited fields that hold a time.Duration, stored
// as JSON nanoseconds (store.Feed's ttl and schedule, store.Tag's
// default_ttl).
var durationFields = map[string]bool{"ttl": true, "schedule": true, "default_ttl": true}

// auditDiff lists the fields that differ between an audit entry's before and
// after (stored JSON, nil when absent), in field order, each value readable:
// durations as "1h30m", times as "2026-01-31 14:05 UTC", lists joined.
func auditDiff(before, after json.RawMessage) ([]auditChange, error) {
	b, err := flattenJSON(before)
	if err != nil {
		return nil, err
	}
	a, err := flattenJSON(after)
	if err != nil {
		return nil, err
	}
	keys := slices.Sorted(maps.Keys(b))
	for k := range a {
		if _, ok := b[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []auditChange
	for _, k := range keys {
		o, n := readable(k, b[k]), readable(k, a[k])
		if o != n {
			out = append(out, auditChange{Field: k, Old: o, New: n})
		}
	}
	return out, nil
}

// flattenJSON maps each leaf of raw's objects to its dotted path; arrays and
// scalars are leaves. A JSON null or absent value is no field at all.
func flattenJSON(raw json.RawMessage) (map[string]any, error) {
	out := map[string]any{}
	if len(raw) == 0 {
		return out, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode audit value: %w", err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		obj, ok := v.(map[string]any)
		if !ok {
			if v != nil {
				out[path] = v
			}
			return
		}
		for k, x := range obj {
			p := k
			if path != "" {
				p = path + "." + k
			}
			walk(p, x)
		}
	}
	walk("", v)
	return out, nil
}

// readable shows one stored value: "" when absent.
func readable(field string, v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case json.Number:
		last := field[strings.LastIndexByte(field, '.')+1:]
		if n, err := x.Int64(); err == nil && durationFields[last] {
			return humanDuration(time.Duration(n))
		}
		return x.String()
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return t.UTC().Format("2006-01-02 15:04 UTC")
		}
		return x
	case bool:
		if x {
			return "yes"
		}
		return "no"
	case []any:
		if len(x) == 0 {
			return "none"
		}
		parts := make([]string, len(x))
		for i, e := range x {
			if s, ok := e.(string); ok {
				parts[i] = s
				continue
			}
			b, _ := json.Marshal(e) // decoded from JSON: encodes again
			parts[i] = string(b)
		}
		return strings.Join(parts, ", ")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// humanDuration writes d the way people say it: "1h30m", "2d", "90s",
// "1d12h"; "0" for none.
func humanDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	neg := d < 0
	if neg {
		d = -d
	}
	var sb strings.Builder
	if neg {
		sb.WriteByte('-')
	}
	if d < time.Second {
		sb.WriteString(d.String())
		return sb.String()
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&sb, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	if d > 0 { // a fraction of a second
		fmt.Fprintf(&sb, "%s", d)
	}
	return sb.String()
}
