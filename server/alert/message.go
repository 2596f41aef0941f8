package alert

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/muninn/muninn/server/store"
)

// Message is one notification: Title is its subject line, Body its text.
type Message struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

// Summary is the one-line description of an event, e.g. "203.0.113.9
// touched tcp/23 on fw1" for a honeypot hit.
func Summary(ev store.Event) string {
	switch ev.Kind {
	case store.EventHoneypot:
		return fmt.Sprintf("%s touched %s/%s on %s", ev.Subject, detail(ev, "protocol"), detail(ev, "port"), detail(ev, "bouncer"))
	case store.EventBouncerSilent:
		return fmt.Sprintf("%s not seen for %s minutes", ev.Subject, detail(ev, "minutes"))
	case store.EventBouncerLagging:
		return fmt.Sprintf("%s has not applied the current version of ruleset %s for %s minutes", ev.Subject, detail(ev, "ruleset"), detail(ev, "minutes"))
	case store.EventBouncerError:
		return fmt.Sprintf("%s reported: %s", ev.Subject, detail(ev, "error"))
	case store.EventFeedFailed:
		return fmt.Sprintf("feed %s failed: %s", ev.Subject, detail(ev, "error"))
	case store.EventFeedHeld:
		return fmt.Sprintf("feed %s held back: %s", ev.Subject, detail(ev, "error"))
	case store.EventGuardRemoved:
		return fmt.Sprintf("%s kept out of ruleset %s rule %s (%s)", ev.Subject, detail(ev, "ruleset"), detail(ev, "rule"), detail(ev, "reason"))
	case store.EventRenderSize:
		return fmt.Sprintf("ruleset %s serves %s elements (limit %s)", ev.Subject, detail(ev, "elements"), detail(ev, "limit"))
	case store.EventAddressTag:
		return fmt.Sprintf("%s got tag %s from %s", ev.Subject, detail(ev, "tag"), detail(ev, "source"))
	case store.EventAddressClassification:
		return fmt.Sprintf("%s classified %s by %s", ev.Subject, detail(ev, "classification"), detail(ev, "source"))
	case store.EventEnrichFailing:
		return fmt.Sprintf("%s failed %s of its last %s lookups", ev.Subject, detail(ev, "failed"), detail(ev, "of"))
	case store.EventFlowBadContact:
		what := detail(ev, "classification")
		if tags := detailList(ev, "tags"); tags != "" {
			what = strings.TrimPrefix(what+"; tags "+tags, "; ")
		}
		return fmt.Sprintf("inside host %s talked with %s (%s), %s bytes in the hour", ev.Subject, detail(ev, "remote"), what, detail(ev, "bytes"))
	case store.EventFlowNewHost:
		s := fmt.Sprintf("new inside host %s seen by exporter %s", ev.Subject, detail(ev, "exporter"))
		if mac := detail(ev, "mac"); mac != "" {
			s += " (MAC " + mac + ")"
		}
		return s
	case store.EventFlowNewDestination:
		kind := detail(ev, "kind")
		if kind == "org" {
			kind = "AS organisation"
		}
		return fmt.Sprintf("inside host %s talked with %s %s for the first time", ev.Subject, kind, detail(ev, "value"))
	}
	if d := detail(ev, "message"); d != "" {
		return fmt.Sprintf("%s: %s", ev.Subject, d)
	}
	return ev.Subject
}

// detailList returns details[k] as a comma-joined list ("" when absent):
// a []string as stored, or the []any it reads back as from JSON.
func detailList(ev store.Event, k string) string {
	var out []string
	switch v := ev.Details[k].(type) {
	case []string:
		out = v
	case []any:
		for _, x := range v {
			out = append(out, fmt.Sprint(x))
		}
	}
	return strings.Join(out, ", ")
}

// Compose builds the message of a group of events (oldest first) of one
// kind: one event gives "[muninn] <kind>: <summary>"; several give
// "[muninn] <kind>: N events" with one section per event. An event about an
// address adds its classification, tags, country/ASN, the reason lines and
// a link to its page under baseURL. The error is facts' error.
func Compose(ctx context.Context, events []store.Event, facts FactsFunc, baseURL string) (Message, error) {
	if len(events) == 0 {
		return Message{}, nil
	}
	var m Message
	if len(events) == 1 {
		m.Title = "[muninn] " + events[0].Kind + ": " + Summary(events[0])
	} else {
		m.Title = fmt.Sprintf("[muninn] %s: %d events", events[0].Kind, len(events))
	}
	var b strings.Builder
	for i, ev := range events {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s: %s\n", ev.Kind, Summary(ev))
		fmt.Fprintf(&b, "at: %s\n", ev.At.UTC().Format("2006-01-02 15:04:05Z"))
		p, ok := Target(ev)
		if !ok {
			continue
		}
		var f Facts
		if facts != nil {
			var err error
			if f, err = facts(ctx, p); err != nil {
				return Message{}, err
			}
		}
		cls := f.Classification
		if cls == "" {
			cls = "none"
		}
		tags := "none"
		if len(f.Tags) > 0 {
			tags = strings.Join(f.Tags, ", ")
		}
		fmt.Fprintf(&b, "classification: %s\ntags: %s\n", cls, tags)
		if f.Country != "" || f.ASN != 0 {
			geo := f.Country
			if f.ASN != 0 {
				asn := fmt.Sprintf("AS%d", f.ASN)
				if f.ASOrg != "" {
					asn += " " + f.ASOrg
				}
				geo = strings.TrimSpace(geo + " " + asn)
			}
			fmt.Fprintf(&b, "country/ASN: %s\n", geo)
		}
		for _, r := range f.Reasons {
			fmt.Fprintf(&b, "reason: %s\n", r)
		}
		if p.IsSingleIP() {
			fmt.Fprintf(&b, "%s/ui/ips/%s\n", strings.TrimRight(baseURL, "/"), url.PathEscape(p.Addr().String()))
		} else {
			fmt.Fprintf(&b, "%s/ui/networks/%s\n", strings.TrimRight(baseURL, "/"), p.String())
		}
	}
	m.Body = strings.TrimRight(b.String(), "\n")
	return m, nil
}
