// Package alert holds the pure parts of alerting: which events a rule
// matches, the message text, quiet hours, channel URL redaction and sealing,
// and sending through shoutrrr. The worker package runs it (matching and
// delivery as River jobs); the API and UI use it to check and redact URLs.
package alert

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/muninn/muninn/server/store"
)

// Facts are what the index and resolver say about an event's address
// (Known false: no stored prefix contains it and no geo network does).
type Facts struct {
	Known          bool
	Classification string
	// Tags are the distinct tag names, sorted.
	Tags []string
	// Reasons are one line per deciding fact: "tag honeypot from bouncer:fw1".
	Reasons []string
	Country string
	ASN     int64
	ASOrg   string
}

// FactsFunc looks up the facts of an address (a host prefix) or a prefix
// (FromIndex, FromStore); a nil FactsFunc knows none. The error is the
// store's.
type FactsFunc func(context.Context, netip.Prefix) (Facts, error)

// Addr returns the address an event is about: its subject when that is an
// address, else its details' "ip", "address" or "remote" (the outside
// address of a flow.bad_contact, whose subject is the inside host).
func Addr(ev store.Event) (netip.Addr, bool) {
	if ev.SubjectType == "address" {
		if a, err := netip.ParseAddr(ev.Subject); err == nil {
			return a.Unmap(), true
		}
	}
	for _, k := range []string{"ip", "address", "remote"} {
		if s, ok := ev.Details[k].(string); ok {
			if a, err := netip.ParseAddr(s); err == nil {
				return a.Unmap(), true
			}
		}
	}
	return netip.Addr{}, false
}

// Target returns what an event's facts are about: its address as a host
// prefix (Addr), or its subject when that is a prefix.
func Target(ev store.Event) (netip.Prefix, bool) {
	if a, ok := Addr(ev); ok {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	if ev.SubjectType == "prefix" {
		if p, err := netip.ParsePrefix(ev.Subject); err == nil {
			return p.Masked(), true
		}
	}
	return netip.Prefix{}, false
}

// detail returns details[k] as text ("" when absent).
func detail(ev store.Event, k string) string {
	switch v := ev.Details[k].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// subjectOr returns ev's subject when its type is typ, else details[typ].
func subjectOr(ev store.Event, typ string) string {
	if ev.SubjectType == typ {
		return ev.Subject
	}
	return detail(ev, typ)
}

// Matches reports whether rule r takes event ev with facts f (its
// address's facts; zero when it has none). Disabled rules and alert.*
// events match nothing.
func Matches(r store.AlertRule, ev store.Event, f Facts) bool {
	if !r.Enabled || r.Kind != ev.Kind || strings.HasPrefix(ev.Kind, "alert.") {
		return false
	}
	fl := r.Filters
	switch {
	case fl.Tag != "" && !slices.Contains(f.Tags, fl.Tag):
		return false
	case fl.Classification != "" && f.Classification != fl.Classification:
		return false
	case fl.Country != "" && !strings.EqualFold(f.Country, fl.Country):
		return false
	case fl.ASN != 0 && f.ASN != fl.ASN:
		return false
	case fl.Ruleset != "" && subjectOr(ev, "ruleset") != fl.Ruleset:
		return false
	case fl.Bouncer != "" && subjectOr(ev, "bouncer") != fl.Bouncer:
		return false
	}
	return true
}

// Quiet reports whether t falls in r's quiet hours, and when they end.
func Quiet(r store.AlertRule, t time.Time) (bool, time.Time) {
	if r.QuietStart == r.QuietEnd {
		return false, time.Time{}
	}
	loc, err := time.LoadLocation(r.QuietTZ)
	if err != nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	in := false
	if r.QuietStart < r.QuietEnd {
		in = m >= r.QuietStart && m < r.QuietEnd
	} else {
		in = m >= r.QuietStart || m < r.QuietEnd
	}
	if !in {
		return false, time.Time{}
	}
	midnight := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, loc)
	end := midnight.Add(time.Duration(r.QuietEnd) * time.Minute)
	if !end.After(lt) {
		end = end.AddDate(0, 0, 1)
	}
	return true, end
}

// Minutes formats minutes after midnight as HH:MM.
func Minutes(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// ParseMinutes parses HH:MM into minutes after midnight.
func ParseMinutes(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("alert: %q is not a time of day HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}
