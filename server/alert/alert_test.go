package alert_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/store"
)

func TestRedactHidesEverySecret(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"ntfy://:tk_secret@ntfy.example.org/muninn", "ntfy://REDACTED:REDACTED@ntfy.example.org/muninn"},
		{"ntfy://ntfy.sh/muninn-topic", "ntfy://ntfy.sh/muninn-topic"},
		{"gotify://gotify.example.org/AbCdEfGhIjKlMnO?disabletls=yes", "gotify://gotify.example.org/REDACTED?disabletls=yes"},
		{"telegram://123456:ABC-token@telegram?chats=@ops", "telegram://REDACTED:REDACTED@telegram?chats=%40ops"},
		{"slack://xoxb:1234-abcd@C0123456", "slack://REDACTED:REDACTED@C0123456"},
		{"discord://webhooktoken@123456789", "discord://REDACTED@123456789"},
		{"smtp://user:pa55word@mail.example.org:587/?from=a@example.org&to=b@example.org",
			"smtp://REDACTED:REDACTED@mail.example.org:587/?from=a%40example.org&to=b%40example.org"},
		{"generic://hooks.example.org/in?template=json&@Authorization=Bearer+s3cret&$token=x",
			"generic://hooks.example.org/in?%24token=REDACTED&%40Authorization=REDACTED&template=json"},
		{"matrix://user:password@matrix.example.org/?rooms=!room:example.org", "matrix://REDACTED:REDACTED@matrix.example.org/?rooms=%21room%3Aexample.org"},
		{"::not a url", "REDACTED"},
	} {
		require.Equal(t, c.want, alert.Redact(c.in), c.in)
	}
}

func TestServiceNamesTheServiceWithoutTheURL(t *testing.T) {
	t.Parallel()
	s, err := alert.Service("ntfy://:tk_secret@ntfy.example.org/muninn")
	require.NoError(t, err)
	require.Equal(t, "ntfy", s)
	_, err = alert.Service("nosuch://secret@host/x")
	require.EqualError(t, err, `unknown service "nosuch"`)
	_, err = alert.Service("not a url")
	require.ErrorContains(t, err, "must be a notification URL")
}

func TestSendErrorsNeverCarryTheSecret(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusInternalServerError) }))
	defer srv.Close()
	raw := "generic://" + strings.TrimPrefix(srv.URL, "http://") + "/hook/very-secret-path?disabletls=yes&@X-Key=header-secret"
	err := alert.Send(raw, alert.Message{Title: "t", Body: "b"}, 5*time.Second)
	require.Error(t, err)
	require.Contains(t, err.Error(), "500")
	require.NotContains(t, err.Error(), "very-secret-path")
	require.NotContains(t, err.Error(), "header-secret")
}

func TestSealerRoundTripsAndRefusesAnotherKey(t *testing.T) {
	t.Parallel()
	k1, k2 := make([]byte, 32), make([]byte, 32)
	k2[0] = 1
	s1, err := alert.NewSealer(k1)
	require.NoError(t, err)
	s2, err := alert.NewSealer(k2)
	require.NoError(t, err)
	sealed, err := s1.Seal("ntfy://:tk_secret@ntfy.example.org/muninn")
	require.NoError(t, err)
	require.NotContains(t, string(sealed), "tk_secret")
	got, err := s1.Open(sealed)
	require.NoError(t, err)
	require.Equal(t, "ntfy://:tk_secret@ntfy.example.org/muninn", got)
	_, err = s2.Open(sealed)
	require.EqualError(t, err, "alert: the channel URL was sealed with another key (MUNINN_ALERT_KEY)")
	_, err = alert.NewSealer(k1[:16])
	require.Error(t, err)
	path := t.TempDir() + "/alert.key"
	a, err := alert.LoadKeyFile(path)
	require.NoError(t, err)
	b, err := alert.LoadKeyFile(path)
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.Len(t, a, 32)
}

func TestQuietHours(t *testing.T) {
	t.Parallel()
	r := store.AlertRule{QuietStart: 23 * 60, QuietEnd: 7 * 60, QuietTZ: "Europe/Berlin"}
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return tm
	}
	for _, c := range []struct {
		at    string
		quiet bool
		end   string
	}{
		{"2026-11-30T21:59:00Z", false, ""},                    // 22:59 in Berlin
		{"2026-11-30T22:00:00Z", true, "2026-12-01T06:00:00Z"}, // 23:00
		{"2026-12-01T05:59:00Z", true, "2026-12-01T06:00:00Z"}, // 06:59
		{"2026-12-01T06:00:00Z", false, ""},                    // 07:00
	} {
		q, end := alert.Quiet(r, at(c.at))
		require.Equal(t, c.quiet, q, c.at)
		if c.quiet {
			require.True(t, end.Equal(at(c.end)), "%s: end %s", c.at, end)
		}
	}
	q, _ := alert.Quiet(store.AlertRule{QuietTZ: "UTC"}, at("2026-12-01T03:00:00Z"))
	require.False(t, q, "equal bounds: no quiet hours")
}

func TestMatchesFilters(t *testing.T) {
	t.Parallel()
	ev := store.Event{Kind: store.EventHoneypot, SubjectType: "address", Subject: "203.0.113.9",
		Details: map[string]any{"ruleset": "edge", "bouncer": "fw1"}}
	f := alert.Facts{Known: true, Classification: "malicious", Tags: []string{"honeypot", "scanner"}, Country: "NL", ASN: 64500}
	for _, c := range []struct {
		filters store.AlertFilters
		want    bool
	}{
		{store.AlertFilters{}, true},
		{store.AlertFilters{Tag: "scanner", Classification: "malicious", Country: "nl", ASN: 64500, Ruleset: "edge", Bouncer: "fw1"}, true},
		{store.AlertFilters{Tag: "tor"}, false},
		{store.AlertFilters{Classification: "benign"}, false},
		{store.AlertFilters{Country: "DE"}, false},
		{store.AlertFilters{ASN: 64501}, false},
		{store.AlertFilters{Ruleset: "core"}, false},
		{store.AlertFilters{Bouncer: "fw2"}, false},
	} {
		r := store.AlertRule{Kind: store.EventHoneypot, Enabled: true, Filters: c.filters}
		require.Equal(t, c.want, alert.Matches(r, ev, f), "%+v", c.filters)
	}
	require.False(t, alert.Matches(store.AlertRule{Kind: "feed.failed", Enabled: true}, ev, f))
	require.False(t, alert.Matches(store.AlertRule{Kind: store.EventHoneypot}, ev, f), "disabled")
	loop := store.Event{Kind: store.EventAlertDeliveryFailed, SubjectType: "channel", Subject: "hook"}
	require.False(t, alert.Matches(store.AlertRule{Kind: store.EventAlertDeliveryFailed, Enabled: true}, loop, alert.Facts{}))
}

func TestSummaryOfFlowEvents(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		ev   store.Event
		want string
	}{
		{store.Event{Kind: store.EventFlowBadContact, SubjectType: "host", Subject: "10.0.0.5",
			Details: map[string]any{"remote": "203.0.113.9", "classification": "malicious", "tags": []any{"c2"}, "bytes": float64(1000)}},
			"inside host 10.0.0.5 talked with 203.0.113.9 (malicious; tags c2), 1000 bytes in the hour"},
		{store.Event{Kind: store.EventFlowBadContact, SubjectType: "host", Subject: "10.0.0.5",
			Details: map[string]any{"remote": "203.0.113.9", "classification": "", "tags": []string{"c2", "tor"}, "bytes": uint64(5)}},
			"inside host 10.0.0.5 talked with 203.0.113.9 (tags c2, tor), 5 bytes in the hour"},
		{store.Event{Kind: store.EventFlowNewHost, SubjectType: "host", Subject: "10.0.0.9", Details: map[string]any{"exporter": "gw", "mac": "02:00:00:00:00:09"}},
			"new inside host 10.0.0.9 seen by exporter gw (MAC 02:00:00:00:00:09)"},
		{store.Event{Kind: store.EventFlowNewHost, SubjectType: "host", Subject: "fd00::9", Details: map[string]any{"exporter": "gw"}},
			"new inside host fd00::9 seen by exporter gw"},
		{store.Event{Kind: store.EventFlowNewDestination, SubjectType: "host", Subject: "10.0.0.5", Details: map[string]any{"kind": "country", "value": "NL"}},
			"inside host 10.0.0.5 talked with country NL for the first time"},
		{store.Event{Kind: store.EventFlowNewDestination, SubjectType: "host", Subject: "10.0.0.5", Details: map[string]any{"kind": "org", "value": "Example Hosting"}},
			"inside host 10.0.0.5 talked with AS organisation Example Hosting for the first time"},
	} {
		require.Equal(t, c.want, alert.Summary(c.ev))
	}
	a, ok := alert.Addr(store.Event{Kind: store.EventFlowBadContact, SubjectType: "host", Subject: "10.0.0.5", Details: map[string]any{"remote": "203.0.113.9"}})
	require.True(t, ok)
	require.Equal(t, netip.MustParseAddr("203.0.113.9"), a, "a bad contact is about its outside address")
	_, ok = alert.Addr(store.Event{Kind: store.EventFlowNewHost, SubjectType: "host", Subject: "10.0.0.9"})
	require.False(t, ok, "an inside host is no address with facts")
}
