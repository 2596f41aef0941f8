package ui

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// overrideForm is the override form as typed, with an error per field.
type overrideForm struct {
	// Page is the prefix whose page the form is on (to re-render it).
	Page           string
	Prefix         string
	Classification string
	AddTags        string
	SuppressTags   string
	Note           string
	Expires        string
	// ExpiresAt shows the expiry of the current override.
	ExpiresAt string
	Errors    map[string]string
}

// Classifications lists the choices of the classification field.
func (overrideForm) Classifications() []string {
	return []string{resolve.Malicious, resolve.Suspicious, resolve.Benign, resolve.Unknown}
}

const maxNote = 1000

// readOverrideForm reads and checks the form; on success it returns the target
// prefix and the override.
func readOverrideForm(r *http.Request, now time.Time) (overrideForm, netip.Prefix, store.Override) {
	f := overrideForm{
		Page:           r.PostFormValue("page"),
		Prefix:         strings.TrimSpace(r.PostFormValue("prefix")),
		Classification: r.PostFormValue("classification"),
		AddTags:        r.PostFormValue("add_tags"),
		SuppressTags:   r.PostFormValue("suppress_tags"),
		Note:           strings.TrimSpace(r.PostFormValue("note")),
		Expires:        strings.TrimSpace(r.PostFormValue("expires")),
		Errors:         map[string]string{},
	}
	var o store.Override
	p, err := parseTarget(f.Prefix)
	if f.Prefix == "" {
		f.Errors["prefix"] = "Enter the address or network (CIDR) to override."
	} else if err != nil {
		f.Errors["prefix"] = capitalise(err.Error()) + "."
	}
	if f.Classification != "" {
		if !resolve.ValidClassification(f.Classification) {
			f.Errors["classification"] = "Choose malicious, suspicious, benign or unknown."
		}
		o.Classification = f.Classification
	}
	var bad string
	if o.AddTags, bad = splitTags(f.AddTags); bad != "" {
		f.Errors["add_tags"] = bad
	}
	if o.SuppressTags, bad = splitTags(f.SuppressTags); bad != "" {
		f.Errors["suppress_tags"] = bad
	}
	if len(f.Note) > maxNote {
		f.Errors["note"] = fmt.Sprintf("The note is %d characters long; the limit is %d.", len(f.Note), maxNote)
	}
	o.Note = f.Note
	if f.Expires != "" {
		d, err := parseLifetime(f.Expires)
		if err != nil {
			f.Errors["expires"] = "Use a lifetime such as 90m, 24h or 7d, or leave it empty to never expire."
		} else {
			at := now.Add(d)
			o.ExpiresAt = &at
		}
	}
	if len(f.Errors) == 0 && o.Classification == "" && len(o.AddTags) == 0 && len(o.SuppressTags) == 0 && o.Note == "" {
		f.Errors["classification"] = "Set a classification, a tag, a suppressed tag or a note; to remove the override, use Delete override."
	}
	return f, p, o
}

// splitTags reads a comma-separated tag list; bad says what is wrong.
func splitTags(s string) (tags []string, bad string) {
	seen := map[string]bool{}
	for t := range strings.SplitSeq(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		switch {
		case len(t) > 100:
			return nil, fmt.Sprintf("The tag %q is longer than 100 bytes.", t[:20]+"…")
		case strings.ContainsAny(t, "\"\n\r\t"):
			return nil, fmt.Sprintf("The tag %q contains a quote, tab or newline; tags cannot.", t)
		}
		if !seen[t] {
			seen[t] = true
			tags = append(tags, t)
		}
	}
	return tags, ""
}

// parseLifetime reads a Go duration or a number of days ("7d").
func parseLifetime(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("ui: parse lifetime %q: not a positive duration", s)
	}
	return d, nil
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
