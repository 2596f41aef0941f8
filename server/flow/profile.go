package flow

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// Contact is the one rule for what an inside host's traffic with an outside
// address whose effective view is v means. bad: the view is malicious or
// suspicious, or carries one of alertTags; the profiles list it as a
// contact with a bad address. alert: the view is malicious or carries one of
// alertTags; the collector raises flow.bad_contact for it once per host,
// address and hour.
func Contact(v resolve.View, alertTags []string) (bad, alert bool) {
	tagged := slices.ContainsFunc(v.TagNames(), func(t string) bool { return slices.Contains(alertTags, t) })
	alert = v.Classification == resolve.Malicious || tagged
	return alert || v.Classification == resolve.Suspicious, alert
}

// DefaultSince is how far back a profile reaches when the caller names no
// period; MaxSince is the furthest (the 1-hour aggregates' default
// retention).
const (
	DefaultSince = 7 * 24 * time.Hour
	MaxSince     = 90 * 24 * time.Hour
)

// ProfileTop bounds each top list of a profile (countries, organisations,
// ports, new destinations); ProfileContacts bounds its contacts with bad
// addresses.
const (
	ProfileTop      = 20
	ProfileContacts = 200
)

// ParseSince reads a profile's period: a Go duration ("24h", "90m") above 0
// and at most MaxSince; "" is DefaultSince. The error is the reason, ready
// for a problem's field error or a page.
func ParseSince(v string) (time.Duration, error) {
	if v == "" {
		return DefaultSince, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > MaxSince {
		return 0, fmt.Errorf("%q is not a positive duration of at most %s, such as 24h", v, "2160h")
	}
	return d, nil
}

// Profile is the device profile of the inside hosts within p (a single host
// is a /32 or /128) over the hours from
// now-since (truncated to the hour) to now: the 1-hour aggregates' totals,
// top lists, bytes per hour and new destinations of the last 7 days
// (store.FlowProfileGet), and the contacts with addresses whose effective
// view in snap is bad by Contact, most recent first, at most
// ProfileContacts. Every answer that shows a profile (the API's host and
// network profiles, the UI's pages, the dashboard) reads it here.
func Profile(ctx context.Context, st *store.Store, snap *index.Snap, p netip.Prefix, since time.Duration, now time.Time, alertTags []string) (store.FlowProfile, error) {
	now = now.UTC()
	start := now.Add(-since).Truncate(time.Hour)
	pr, err := st.FlowProfileGet(ctx, p, start, now.Add(-7*24*time.Hour), ProfileTop)
	if err != nil {
		return pr, err
	}
	cs, err := Contacts(ctx, st, snap, p, start, alertTags, ProfileContacts)
	pr.Contacts = cs
	return pr, err
}

// Contacts returns the contacts of the inside hosts within p (every host for
// the zero Prefix) since start with an address whose effective view in snap
// is bad by Contact, most recent first, at most limit. The store gives every
// (host, address) pair with traffic; the index gives every view, so an
// address classified today shows on last week's traffic.
func Contacts(ctx context.Context, st *store.Store, snap *index.Snap, p netip.Prefix, start time.Time, alertTags []string, limit int) ([]store.FlowContactRow, error) {
	out := []store.FlowContactRow{}
	if snap == nil || limit <= 0 {
		return out, nil
	}
	err := st.FlowPeersEach(ctx, p, start, func(pe store.FlowPeer) (bool, error) {
		v, ok := snap.Lookup(pe.Remote)
		if !ok {
			return true, nil
		}
		if bad, _ := Contact(v, alertTags); !bad {
			return true, nil
		}
		tags := v.TagNames()
		if tags == nil {
			tags = []string{}
		}
		out = append(out, store.FlowContactRow{Host: pe.Host, Remote: pe.Remote, LastHour: pe.LastHour,
			Classification: v.Classification, Tags: tags, Bytes: pe.Bytes})
		return len(out) < limit, nil
	})
	return out, err
}
