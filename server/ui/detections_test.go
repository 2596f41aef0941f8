package ui_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
)

// TestDetectionsPageEditsARule: every user sees the rules; an admin saves a
// new threshold, TTL and enabled state (stored exactly), a bad window is
// refused with the API's reason and the form as typed; a writer may not
// change a rule (PUT /detections is admin in the contract).
func TestDetectionsPageEditsARule(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.client(t)
	r.mustLogin("reader")
	resp, page := r.get("/ui/detections")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, `<tr id="detection-ssh-bruteforce">`)
	require.Contains(t, page, "<td>ssh-auth-failure, ssh-max-auth</td><td></td><td>5</td><td>10m</td>")
	require.NotContains(t, page, `action="/ui/detections/ssh-bruteforce"`, "readers get no form")

	w := b.client(t)
	w.mustLogin("writer")
	_, page = w.get("/ui/detections")
	resp, _ = w.post("/ui/detections/ssh-bruteforce", url.Values{"csrf": {csrfOf(t, page)}, "kinds": {"ssh-auth-failure"}, "threshold": {"3"},
		"window": {"5m"}, "tag": {"ssh-bruteforce"}, "ttl": {"1h"}, "max_ttl": {"720h"}, "quiet": {"168h"}, "enabled": {"on"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	a := b.client(t)
	a.mustLogin("admin")
	_, page = a.get("/ui/detections")
	csrf := csrfOf(t, page)
	form := url.Values{"csrf": {csrf}, "kinds": {"ssh-auth-failure, ssh-max-auth"}, "instant_kinds": {""}, "threshold": {"3"},
		"window": {"soon"}, "tag": {"ssh-bruteforce"}, "ttl": {"1h"}, "max_ttl": {"720h"}, "quiet": {"168h"}}
	resp, page = a.post("/ui/detections/ssh-bruteforce", form)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Contains(t, html.UnescapeString(page), `must be a positive duration such as "10m", at most 10 years`)
	require.Contains(t, page, `<input id="ssh-bruteforce-window" name="window" value="soon" aria-describedby="ssh-bruteforce-window-hint ssh-bruteforce-window-error" aria-invalid="true">`)

	form.Set("window", "5m")
	resp, _ = a.post("/ui/detections/ssh-bruteforce", form)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	d, err := b.store.Detection(context.Background(), "ssh-bruteforce")
	require.NoError(t, err)
	require.Equal(t, store.Detection{Name: "ssh-bruteforce", Kinds: []string{"ssh-auth-failure", "ssh-max-auth"}, InstantKinds: []string{}, Threshold: 3,
		Window: 5 * time.Minute, Tag: "ssh-bruteforce", TTL: time.Hour, MaxTTL: 720 * time.Hour, Quiet: 168 * time.Hour, Enabled: false}, d,
		"an unchecked box disables")
	_, page = a.get("/ui/detections")
	require.Contains(t, page, "Detection ssh-bruteforce stored.")
	require.Contains(t, page, `<span class="bad">no</span>`)

	resp, _ = a.post("/ui/detections/nope", form)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// TestAddressPageShowsSensorEventsAndPassiveDNS: the address page lists the
// address's raw log events (time, kind, host, the line), its repeat-offender
// record and the names it answered for in DNS.
func TestAddressPageShowsSensorEventsAndPassiveDNS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	addr := netip.MustParseAddr("198.51.100.20")
	var evs []store.SensorEvent
	for i := range 5 {
		evs = append(evs, store.SensorEvent{Addr: addr, Kind: "ssh-auth-failure", Host: "gw", Format: "sshd", At: at.Add(time.Duration(i) * time.Second),
			Line: "Mar  3 10:00:02 gw sshd[812]: Failed password for invalid user admin from 198.51.100.20 port 4242 ssh2"})
	}
	// Three more within the fifth's second fold into its row: 4 events, the newest line.
	for i := range 3 {
		evs = append(evs, store.SensorEvent{Addr: addr, Kind: "ssh-auth-failure", Host: "gw", Format: "sshd", At: at.Add(4*time.Second + time.Duration(i+1)*100*time.Millisecond),
			Line: fmt.Sprintf("Mar  3 10:00:06 gw sshd[81%d]: Failed password for root from 198.51.100.20 port 4242 ssh2", i)})
	}
	evs = append(evs, store.SensorEvent{Addr: addr, Kind: "dns-answer", Host: "gw", Format: "dnsmasq", At: at,
		Line: "Mar  3 10:00:02 gw dnsmasq[501]: reply updates.example.net is 198.51.100.20",
		DNS:  &store.PassiveDNS{Name: "updates.example.net", Client: netip.MustParseAddr("192.168.1.10")}})
	fired, err := b.store.StoreSensorEvents(ctx, evs, "test", time.Now())
	require.NoError(t, err)
	require.Len(t, fired, 1)
	b.catchUp(t)

	c := b.client(t)
	c.mustLogin("reader")
	resp, page := c.get("/ui/ips/198.51.100.20")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, "<td>updates.example.net</td><td>"+at.Format("2006-01-02 15:04 UTC")+"</td><td>"+at.Format("2006-01-02 15:04 UTC")+"</td><td>1</td><td>192.168.1.10</td>")
	require.Contains(t, page, `<td><time datetime="`+at.Add(4300*time.Millisecond).Format(time.RFC3339)+`">`+at.Add(4*time.Second).Format("2006-01-02 15:04 UTC")+
		`</time></td><td>ssh-auth-failure</td><td>gw</td><td>4</td><td class="mono small">Mar  3 10:00:06 gw sshd[812]: Failed password for root from 198.51.100.20 port 4242 ssh2</td>`)
	require.Contains(t, page, `<td><time datetime="`+at.Add(3*time.Second).Format(time.RFC3339)+`">`+at.Add(3*time.Second).Format("2006-01-02 15:04 UTC")+
		`</time></td><td>ssh-auth-failure</td><td>gw</td><td>1</td><td class="mono small">Mar  3 10:00:02 gw sshd[812]: Failed password for invalid user admin from 198.51.100.20 port 4242 ssh2</td>`)
	require.Equal(t, 5, strings.Count(page, "<td>ssh-auth-failure</td>"), "8 events in 5 seconds are 5 rows")
	require.Contains(t, page, `<td><a href="/ui/detections#detection-ssh-bruteforce">ssh-bruteforce</a></td><td>1</td>`)
	require.Contains(t, page, "<td>20m0s</td>", "the next firing's TTL: 5m × 2²")
}
