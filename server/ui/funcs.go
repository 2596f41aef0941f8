package ui

import (
	"html/template"
	"net/netip"
	"strings"
	"time"

	"github.com/muninn/muninn/server/resolve"
)

// funcs are the helpers templates use.
var funcs = template.FuncMap{
	"time": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if v == nil {
				return "never"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		}
		return ""
	},
	// rfc3339 is a time for a <time datetime> attribute.
	"rfc3339":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"prefixURL": prefixURL,
	// fieldLabel and fieldID name an override form field in an error summary.
	"fieldLabel": func(f string) string { return overrideLabels[f] },
	"fieldID": func(f string) string {
		if f == "classification" {
			return "classification-field"
		}
		return f
	},
	"prefixString": func(p netip.Prefix) string {
		if p.IsSingleIP() {
			return p.Addr().String()
		}
		return p.String()
	},
	"join":     strings.Join,
	"hostName": hostName,
	"inc":      func(i int) int { return i + 1 },
	"manual":   resolve.IsManual,
	"severityClass": func(c string) string {
		switch c {
		case resolve.Malicious, resolve.Suspicious, resolve.Benign:
			return "cls-" + c
		}
		return "cls-unknown"
	},
}

// overrideLabels are the override form's field labels.
var overrideLabels = map[string]string{
	"prefix": "Address or network (CIDR)", "classification": "Classification", "add_tags": "Tags to add",
	"suppress_tags": "Tags to suppress", "note": "Note", "expires": "Expires after",
}
