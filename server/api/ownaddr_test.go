package api_test

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api/apitest"
	"github.com/muninn/muninn/server/httpserver"
)

// TestEventsOwnAddressesNotTagged: private, loopback, the address the events
// request came from (here through a trusted proxy) and the configured own
// addresses are counted (a sighting each) but a detection does not tag them
// by default; another address is tagged; a detection that includes private
// addresses tags them too.
func TestEventsOwnAddressesNotTagged(t *testing.T) {
	t.Parallel()
	b := setupWith(t, apitest.ValidateResponses(t), func(d *httpserver.Deps) {
		d.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
		d.SensorOwnAddresses = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/28")}
	})
	at := time.Now().Add(-time.Minute).UTC().Format("2006-01-02T15:04:05.000000Z")
	send := func(addrs ...string) {
		t.Helper()
		var lines []string
		for _, a := range addrs {
			lines = append(lines, `{"eventid":"cowrie.session.connect","src_ip":"`+a+`","sensor":"pot1","timestamp":"`+at+`"}`)
		}
		req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/api/v1/events?format=cowrie", strings.NewReader(strings.Join(lines, "\n")))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+b.writer)
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("X-Forwarded-For", "198.51.100.50")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var res eventsResult
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.EqualValues(t, len(addrs), res.Events)
	}
	tags := func(addr string) []string {
		t.Helper()
		v := b.viewOf(t, addr)
		out := []string{}
		for _, tg := range v.Tags {
			out = append(out, tg.Name+" "+tg.Source)
		}
		return out
	}
	own := []string{"198.51.100.50", "203.0.113.5", "192.168.1.5", "127.0.0.1", "::1", "fe80::1", "100.64.0.9"}
	send(append([]string{"198.51.100.51", "203.0.113.16"}, own...)...)
	for _, a := range own {
		require.Equal(t, []string{}, tags(a), "%s is counted, not tagged", a)
		require.EqualValues(t, 1, b.viewOf(t, a).Sightings, a)
	}
	require.Equal(t, []string{"honeypot sensor:honeypot"}, tags("198.51.100.51"))
	require.Equal(t, []string{"honeypot sensor:honeypot"}, tags("203.0.113.16"), "just outside the configured /28")

	// A detection that includes private addresses tags them all.
	b.json(t, b.admin, http.MethodPut, "/api/v1/detections/honeypot", map[string]any{"kinds": []string{}, "instant_kinds": []string{"honeypot-connect"},
		"threshold": 1, "window": "1m", "tag": "honeypot", "ttl": "1h", "include_private": true}, http.StatusOK, nil)
	send(own...)
	for _, a := range own {
		require.Equal(t, []string{"honeypot sensor:honeypot"}, tags(a), a)
		require.EqualValues(t, 2, b.viewOf(t, a).Sightings, "%s: two events; the detection's firing is not a sighting", a)
	}
}
