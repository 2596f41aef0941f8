package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/store/storetest"
)

type csDecision struct {
	ID        int64  `json:"id"`
	UUID      string `json:"uuid"`
	Origin    string `json:"origin"`
	Type      string `json:"type"`
	Scope     string `json:"scope"`
	Value     string `json:"value"`
	Scenario  string `json:"scenario"`
	Duration  string `json:"duration"`
	Simulated bool   `json:"simulated"`
}

type csStream struct {
	New     []csDecision `json:"new"`
	Deleted []csDecision `json:"deleted"`
}

// csCall sends one request with a bouncer key (and User-Agent) and returns
// the status and body.
func (b *renderBundle) csCall(t *testing.T, key, method, path string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, body)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	req.Header.Set("User-Agent", "crowdsec-firewall-bouncer/v0.0.31")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

func (b *renderBundle) crowdsec(t *testing.T, key, path string, out any) {
	t.Helper()
	status, body := b.csCall(t, key, http.MethodGet, path, nil)
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.NoError(t, json.Unmarshal(body, out), "%s", body)
}

func (b *renderBundle) csPull(t *testing.T, key, query string) csStream {
	t.Helper()
	var s csStream
	b.crowdsec(t, key, "/crowdsec/v1/decisions/stream"+query, &s)
	return s
}

func values(ds []csDecision) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.Scope+" "+d.Value)
	}
	return out
}

// changeVersion runs change and waits for the next render of name.
func (b *renderBundle) changeVersion(t *testing.T, name string, change func()) {
	t.Helper()
	_, cur, _ := b.getRender(t, name, "")
	change()
	b.waitVersion(t, name, cur.Version)
}

// TestCrowdSecNeighbour is the case of issue 11: blocking 198.51.100.6 while
// 198.51.100.7 is blocked adds Ip 198.51.100.6 and deletes nothing.
func TestCrowdSecNeighbour(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.7","source":"feed","tags":["bad"]}`+"\n")
	b.putRuleset(t, "ruleset edge\n  block tag bad\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	b.getRender(t, "edge", "")

	s := b.csPull(t, key, "?startup=true")
	require.Equal(t, []string{"Ip 198.51.100.7"}, values(s.New))
	require.Empty(t, s.Deleted)
	d := s.New[0]
	require.Equal(t, "ban", d.Type)
	require.Equal(t, "muninn", d.Origin)
	require.Equal(t, "block tag bad", d.Scenario)
	require.Equal(t, "596h31m23s", d.Duration)

	b.changeVersion(t, "edge", func() { b.ingest(t, `{"ip":"198.51.100.6","source":"feed","tags":["bad"]}`+"\n") })
	s = b.csPull(t, key, "")
	require.Equal(t, []string{"Ip 198.51.100.6"}, values(s.New))
	require.Empty(t, s.Deleted)

	// Unblocking .6 again deletes only .6, with the id it was sent with.
	sent := s.New[0]
	b.changeVersion(t, "edge", func() {
		b.json(t, b.writer, http.MethodPut, "/api/v1/ips/198.51.100.6/override", map[string]any{"suppress_tags": []string{"bad"}}, http.StatusOK, nil)
	})
	s = b.csPull(t, key, "?startup=false")
	require.Empty(t, s.New)
	require.Equal(t, []csDecision{sent}, s.Deleted)

	// The ids are a fixed function of ruleset, scenario and value: a new
	// bouncer (another process, a restart) gets the same.
	key2 := b.createBouncer(t, "cs2", "edge")
	s = b.csPull(t, key2, "?startup=true")
	require.Equal(t, []csDecision{d}, s.New)
}

// TestCrowdSecAllowSplits: an allow rule splits a blocked stored prefix; the
// pieces are the decisions, and the decisions cover the deny list exactly.
func TestCrowdSecAllowSplits(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.0/29","source":"feed","tags":["bad"]}
{"ip":"198.51.100.2","source":"feed","classification":"benign"}
`)
	b.putRuleset(t, "ruleset edge\n  allow classification benign\n  block tag bad\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	b.getRender(t, "edge", "")
	s := b.csPull(t, key, "?startup=true")
	require.Equal(t, []string{"Range 198.51.100.0/31", "Ip 198.51.100.3", "Range 198.51.100.4/30"}, values(s.New))
}

// TestCrowdSecScopes covers LAPI's filters: scopes (default ip,range,
// case-insensitive), origins, scenarios_containing/_not_containing and
// unknown parameters.
func TestCrowdSecScopes(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.0/24","source":"feed","tags":["bad"]}
{"ip":"192.0.2.7","source":"feed","tags":["worse"]}
`)
	b.putRuleset(t, "ruleset edge\n  block tag bad\n  block tag worse\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	b.json(t, b.admin, http.MethodPut, "/api/v1/bouncers/cs", map[string]any{"rulesets": []string{"edge"},
		"crowdsec": map[string]any{"expand": "off", "v4_bits": 24, "v6_bits": 120}}, http.StatusOK, nil)
	b.getRender(t, "edge", "")

	all := []string{"Ip 192.0.2.7", "Range 198.51.100.0/24"}
	for query, want := range map[string][]string{
		"":                                      all,
		"&scopes=ip,range":                      all,
		"&scopes=IP,Range":                      all,
		"&scopes=ip":                            {"Ip 192.0.2.7"},
		"&scopes=range":                         {"Range 198.51.100.0/24"},
		"&scopes=as,country":                    {},
		"&origins=muninn":                       all,
		"&origins=CAPI,cscli":                   {},
		"&scenarios_containing=worse":           {"Ip 192.0.2.7"},
		"&scenarios_containing=nothing,bad":     {"Range 198.51.100.0/24"},
		"&scenarios_not_containing=BAD":         {"Ip 192.0.2.7"},
		"&scenarios_not_containing=block":       {},
		"&community_pull=false&additional_pull": all,
	} {
		s := b.csPull(t, key, "?startup=true"+query)
		require.Equal(t, want, values(s.New), "query %q", query)
	}

	// GET /decisions: ip, range, contains, scope, value, type.
	for query, want := range map[string][]string{
		"":                                      all,
		"?ip=198.51.100.9":                      {"Range 198.51.100.0/24"},
		"?ip=192.0.2.8":                         nil,
		"?range=198.51.100.0/25":                {"Range 198.51.100.0/24"},
		"?range=198.51.100.0/23":                nil,
		"?range=198.51.100.0/23&contains=false": {"Range 198.51.100.0/24"},
		"?range=192.0.2.0/24&contains=false":    {"Ip 192.0.2.7"},
		"?scope=ip":                             {"Ip 192.0.2.7"},
		"?scope=Range":                          {"Range 198.51.100.0/24"},
		"?value=192.0.2.7":                      {"Ip 192.0.2.7"},
		"?scope=ip&value=198.51.100.0/24":       nil,
		"?type=ban":                             all,
		"?type=captcha":                         nil,
	} {
		var ds []csDecision
		b.crowdsec(t, key, "/crowdsec/v1/decisions"+query, &ds)
		if want == nil {
			require.Nil(t, ds, "query %q", query)
			continue
		}
		require.Equal(t, want, values(ds), "query %q", query)
	}
	status, body := b.csCall(t, key, http.MethodGet, "/crowdsec/v1/decisions?ip=nope", nil)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, string(body), `"message"`)
}

// TestCrowdSecExpansion: with the bouncer's expansion setting a /24 becomes
// 256 Ip decisions for a bouncer that asks for scopes=ip; a wider range stays
// a Range and is counted on the bouncer.
func TestCrowdSecExpansion(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.0/24","source":"feed","tags":["bad"]}
{"ip":"198.51.100.7","source":"feed","tags":["worse"]}
{"ip":"192.0.2.0/23","source":"feed","tags":["bad"]}
{"ip":"2001:db8::/120","source":"feed","tags":["bad"]}
`)
	b.putRuleset(t, "ruleset edge\n  block tag bad\n  block tag worse\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	b.getRender(t, "edge", "")

	// Default: expand when the bouncer asks for Ip decisions only.
	s := b.csPull(t, key, "?startup=true&scopes=ip")
	got := values(s.New)
	require.Len(t, got, 512)
	require.Equal(t, "Ip 198.51.100.0", got[0])
	require.Equal(t, "Ip 198.51.100.255", got[255])
	require.Equal(t, "Ip 2001:db8::", got[256])
	require.Equal(t, 1, strings.Count(strings.Join(got, ","), "Ip 198.51.100.7,"), "the /32 and the /24's expansion are one decision")
	var list []struct {
		Name       string `json:"name"`
		Version    string `json:"version"`
		WideRanges int64  `json:"wide_ranges"`
		Crowdsec   struct {
			Expand string `json:"expand"`
			V4Bits int    `json:"v4_bits"`
			V6Bits int    `json:"v6_bits"`
		} `json:"crowdsec"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/bouncers", nil, http.StatusOK, &list)
	require.Equal(t, int64(1), list[0].WideRanges)
	require.Equal(t, "scopes", list[0].Crowdsec.Expand)
	require.Equal(t, 24, list[0].Crowdsec.V4Bits)
	require.Equal(t, 120, list[0].Crowdsec.V6Bits)

	// With ranges asked for, nothing is expanded.
	s = b.csPull(t, key, "?startup=true")
	require.Equal(t, []string{"Range 192.0.2.0/23", "Range 198.51.100.0/24", "Ip 198.51.100.7", "Range 2001:db8::/120"}, values(s.New))

	// always, to /23: everything becomes Ip decisions.
	b.json(t, b.admin, http.MethodPut, "/api/v1/bouncers/cs", map[string]any{"rulesets": []string{"edge"},
		"crowdsec": map[string]any{"expand": "always", "v4_bits": 23, "v6_bits": 128}}, http.StatusOK, nil)
	s = b.csPull(t, key, "?startup=true")
	got = values(s.New)
	require.Len(t, got, 512+256+1)
	require.Contains(t, got, "Range 2001:db8::/120")
	b.json(t, b.reader, http.MethodGet, "/api/v1/bouncers", nil, http.StatusOK, &list)
	require.Equal(t, int64(1), list[0].WideRanges)

	// A delta expands the same way: unblocking the /24 deletes its
	// addresses but the one the /32 still blocks (by another rule).
	b.changeVersion(t, "edge", func() {
		b.json(t, b.writer, http.MethodPut, "/api/v1/networks/198.51.100.0/24/override", map[string]any{"suppress_tags": []string{"bad"}}, http.StatusOK, nil)
	})
	s = b.csPull(t, key, "")
	// .7 is now decided by the second rule (its scenario changes).
	require.Equal(t, []string{"Ip 198.51.100.7"}, values(s.New))
	require.Equal(t, "block tag worse", s.New[0].Scenario)
	require.Len(t, s.Deleted, 255)
	require.NotContains(t, values(s.Deleted), "Ip 198.51.100.7")

	// The widths are bounded: an expansion never yields more than 65,536 addresses.
	b.json(t, b.admin, http.MethodPut, "/api/v1/bouncers/cs", map[string]any{"rulesets": []string{"edge"},
		"crowdsec": map[string]any{"expand": "always", "v4_bits": 8, "v6_bits": 120}}, http.StatusBadRequest, nil)
	b.json(t, b.admin, http.MethodPut, "/api/v1/bouncers/cs", map[string]any{"rulesets": []string{"edge"},
		"crowdsec": map[string]any{"expand": "sometimes", "v4_bits": 24, "v6_bits": 120}}, http.StatusBadRequest, nil)
}

// TestCrowdSecHead: HEAD on both decision endpoints checks the key only.
func TestCrowdSecHead(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	key := b.createBouncer(t, "cs")
	for _, path := range []string{"/crowdsec/v1/decisions/stream", "/crowdsec/v1/decisions"} {
		status, body := b.csCall(t, key, http.MethodHead, path, nil)
		require.Equal(t, http.StatusOK, status, path)
		require.Empty(t, body)
		status, _ = b.csCall(t, "mnb_wrong", http.MethodHead, path, nil)
		require.Equal(t, http.StatusForbidden, status, path)
	}
}

// TestCrowdSecForbidden: any key problem answers 403 {"message":"access
// forbidden"}, as LAPI does.
func TestCrowdSecForbidden(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	for _, key := range []string{"", "bad", "mnb_wrong", b.admin} {
		for _, req := range []struct{ method, path string }{
			{http.MethodGet, "/crowdsec/v1/decisions/stream?startup=true"},
			{http.MethodGet, "/crowdsec/v1/decisions?ip=192.0.2.1"},
			{http.MethodPost, "/crowdsec/v1/usage-metrics"},
		} {
			status, body := b.csCall(t, key, req.method, req.path, strings.NewReader("{}"))
			require.Equal(t, http.StatusForbidden, status, "%s %s", req.method, req.path)
			require.JSONEq(t, `{"message":"access forbidden"}`, string(body))
		}
	}
}

// TestCrowdSecUsageMetrics: POST /v1/usage-metrics answers 201 and its
// counters add up on the bouncer's page and in /metrics.
func TestCrowdSecUsageMetrics(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	key := b.createBouncer(t, "cs")
	push := `{"remediation_components":[{"version":"v0.0.31","type":"crowdsec-firewall-bouncer","name":"cs",
	  "feature_flags":[],"os":{"name":"debian","version":"13"},
	  "metrics":[{"meta":{"window_size_seconds":900,"utc_now_timestamp":1764500000},"items":[
	    {"name":"dropped","value":12,"unit":"packet","labels":{"origin":"muninn","remediation":"ban"}},
	    {"name":"dropped","value":720,"unit":"byte","labels":{"origin":"muninn","remediation":"ban"}},
	    {"name":"active_decisions","value":3,"unit":"ip","labels":{"origin":"muninn","ip_type":"ipv4"}}]}]}],
	  "log_processors":null}`
	for range 2 {
		status, body := b.csCall(t, key, http.MethodPost, "/crowdsec/v1/usage-metrics", strings.NewReader(push))
		require.Equal(t, http.StatusCreated, status, "%s", body)
	}
	status, _ := b.csCall(t, key, http.MethodPost, "/crowdsec/v1/usage-metrics", strings.NewReader("{nope"))
	require.Equal(t, http.StatusBadRequest, status)

	type counter struct {
		Name        string  `json:"name"`
		Unit        string  `json:"unit"`
		Origin      string  `json:"origin"`
		Remediation string  `json:"remediation"`
		Value       float64 `json:"value"`
	}
	var list []struct {
		Usage []counter `json:"usage"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/bouncers", nil, http.StatusOK, &list)
	require.Equal(t, []counter{
		{Name: "dropped", Unit: "packet", Origin: "muninn", Remediation: "ban", Value: 24},
		{Name: "dropped", Unit: "byte", Origin: "muninn", Remediation: "ban", Value: 1440},
		{Name: "active_decisions", Unit: "ip", Origin: "muninn", Value: 6},
	}, list[0].Usage)

	status, metrics := b.do(t, "", http.MethodGet, "/metrics", "", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(metrics), `muninn_crowdsec_bouncer_usage_total{bouncer="cs",name="dropped",origin="muninn",remediation="ban",unit="packet"} 24`)
}

// TestCrowdSecSeen: every pull records last_seen, the User-Agent and the
// applied version, so a CrowdSec bouncer shows in GET /bouncers like
// muninn's own.
func TestCrowdSecSeen(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.7","source":"feed","tags":["bad"]}`+"\n")
	b.putRuleset(t, "ruleset edge\n  block tag bad\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	_, doc, _ := b.getRender(t, "edge", "")
	b.csPull(t, key, "?startup=true")
	var list []struct {
		LastSeen *time.Time `json:"last_seen"`
		Version  string     `json:"version"`
		Rulesets []struct {
			Applied int64 `json:"applied"`
			Current int64 `json:"current"`
		} `json:"rulesets"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/bouncers", nil, http.StatusOK, &list)
	require.NotNil(t, list[0].LastSeen)
	require.Equal(t, "crowdsec-firewall-bouncer/v0.0.31", list[0].Version)
	require.Equal(t, doc.Version, list[0].Rulesets[0].Applied)
	require.Equal(t, doc.Version, list[0].Rulesets[0].Current)
}

// TestCrowdSecDurationRenewal: a decision's duration is capped at ipset's
// limit, and every decision is sent again as new before half of it passed.
func TestCrowdSecDurationRenewal(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	b := setupRenderOn(t, storetest.Store(t), clock)
	b.ingest(t, `{"ip":"198.51.100.7","source":"feed","tags":["bad"]}`+"\n")
	b.putRuleset(t, "ruleset edge\n  block tag bad\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	b.getRender(t, "edge", "")

	s := b.csPull(t, key, "?startup=true")
	require.Equal(t, []string{"Ip 198.51.100.7"}, values(s.New))
	require.Equal(t, "596h31m23s", s.New[0].Duration)
	dur, err := time.ParseDuration(s.New[0].Duration)
	require.NoError(t, err)
	require.Equal(t, 2147483*time.Second, dur)
	sentAt := clock()

	renewed := false
	for !renewed && clock().Sub(sentAt) < dur/2 {
		advance(time.Hour)
		s = b.csPull(t, key, "")
		require.Empty(t, s.Deleted)
		if len(s.New) > 0 {
			require.Equal(t, []string{"Ip 198.51.100.7"}, values(s.New))
			renewed = true
		}
	}
	require.True(t, renewed, "no renewal within half the duration")
	require.Less(t, clock().Sub(sentAt), dur/2)
	// Renewed once per epoch, not on every pull.
	advance(time.Hour)
	require.Empty(t, b.csPull(t, key, "").New)
}

// csReplay holds what a CrowdSec bouncer holds after replaying a stream: the
// decisions by scope and value, as go-cs-bouncer's StreamBouncer hands them
// to a firewall bouncer (deleted first, then new).
type csReplay map[string]csDecision

func (r csReplay) apply(s csStream) {
	for _, d := range s.Deleted {
		delete(r, d.Scope+" "+d.Value)
	}
	for _, d := range s.New {
		r[d.Scope+" "+d.Value] = d
	}
}

func (r csReplay) set(t *testing.T) *netipx.IPSet {
	t.Helper()
	var sb netipx.IPSetBuilder
	for _, d := range r {
		p, err := api.ParsePrefix(d.Value)
		require.NoError(t, err)
		sb.AddPrefix(p)
	}
	set, err := sb.IPSet()
	require.NoError(t, err)
	return set
}

// denySet returns the deny list of ruleset name and the render version it is of.
func (b *renderBundle) denySet(t *testing.T, name string) (*netipx.IPSet, int64) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/api/v1/rulesets/"+name+"/deny", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.reader)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	version, err := strconv.ParseInt(resp.Header.Get("X-Muninn-Render-Version"), 10, 64)
	require.NoError(t, err, "X-Muninn-Render-Version %q", resp.Header.Get("X-Muninn-Render-Version"))
	var sb netipx.IPSetBuilder
	for _, line := range strings.Fields(string(body)) {
		sb.AddPrefix(netip.MustParsePrefix(line))
	}
	set, err := sb.IPSet()
	require.NoError(t, err)
	return set, version
}

// applied returns the version bouncer name last applied of its first ruleset.
func (b *renderBundle) applied(t *testing.T, name string) int64 {
	t.Helper()
	var list []struct {
		Name     string `json:"name"`
		Rulesets []struct {
			Applied int64 `json:"applied"`
		} `json:"rulesets"`
	}
	b.json(t, b.reader, http.MethodGet, "/api/v1/bouncers", nil, http.StatusOK, &list)
	for _, x := range list {
		if x.Name == name {
			return x.Rulesets[0].Applied
		}
	}
	t.Fatalf("no bouncer %s", name)
	return 0
}

// TestCrowdSecReplayMatchesDenyList replays the stream as a CrowdSec bouncer
// does through random ingests, overrides, expiries, guard changes and server
// restarts, with each pull served by one of two serve processes on the same
// database, and compares what it holds with the ruleset's deny list, address
// by address; a second bouncer with expansion always compares its Ip
// decisions too.
func TestCrowdSecReplayMatchesDenyList(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	procs := []*renderBundle{b, setupRenderOn(t, b.store, time.Now)}
	b.putRuleset(t, "ruleset edge\n  allow classification benign\n  block tag bad\n  block tag worse and cidr 203.0.113.0/25\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	keyIP := b.createBouncer(t, "csip", "edge")
	keyFresh := b.createBouncer(t, "fresh", "edge")
	b.json(t, b.admin, http.MethodPut, "/api/v1/bouncers/csip", map[string]any{"rulesets": []string{"edge"},
		"crowdsec": map[string]any{"expand": "always", "v4_bits": 24, "v6_bits": 120}}, http.StatusOK, nil)
	b.getRender(t, "edge", "")
	rng := rand.New(rand.NewPCG(11, 2026))
	randPrefix := func() string {
		nets := []string{"198.51.100.%d", "203.0.113.%d"}
		a := netip.MustParseAddr(fmt.Sprintf(nets[rng.IntN(len(nets))], rng.IntN(256)))
		bits := []int{32, 32, 32, 31, 30, 28, 25, 24}[rng.IntN(8)]
		if rng.IntN(6) == 0 {
			a = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", rng.IntN(512)))
			bits = []int{128, 127, 124, 120}[rng.IntN(4)]
		}
		return netip.PrefixFrom(a, bits).Masked().String()
	}
	replay, replayIP := csReplay{}, csReplay{}
	replay.apply(b.csPull(t, key, "?startup=true"))
	replayIP.apply(b.csPull(t, keyIP, "?startup=true"))
	expiring := false
	for step := range 40 {
		var what string
		b.changeVersion(t, "edge", func() {
			// Each step blocks a new marker address, so a new render
			// version follows.
			marker := fmt.Sprintf(`{"ip":"192.0.2.%d","source":"marker","tags":["bad"]}`, step+1)
			switch op := rng.IntN(10); {
			case op < 4:
				p := randPrefix()
				tag := []string{"bad", "worse"}[rng.IntN(2)]
				what = "ingest " + p + " " + tag
				b.ingest(t, fmt.Sprintf(`{"ip":%q,"source":"feed","tags":[%q]}`+"\n%s\n", p, tag, marker))
			case op < 6:
				p := netip.MustParsePrefix(randPrefix())
				body := map[string]any{"suppress_tags": []string{"bad"}}
				if rng.IntN(2) == 0 {
					body = map[string]any{"classification": "benign"}
				}
				what = fmt.Sprintf("override %s %v", p, body)
				b.json(t, b.writer, http.MethodPut, fmt.Sprintf("/api/v1/networks/%s/%d/override", p.Addr(), p.Bits()), body, http.StatusOK, nil)
				b.ingest(t, marker+"\n")
			case op < 7 && !expiring:
				// Expires in a second: a later step's render drops it.
				p := randPrefix()
				what = "expiring " + p
				expiring = true
				b.ingest(t, fmt.Sprintf(`{"ip":%q,"source":"short","tags":["bad"],"ttl":"1s"}`+"\n%s\n", p, marker))
			case op < 8:
				p := randPrefix()
				what = "guard " + p
				b.json(t, b.admin, http.MethodPut, "/api/v1/guard", map[string]any{"entries": []map[string]string{{"prefix": p, "reason": "test"}}}, http.StatusOK, nil)
				b.ingest(t, marker+"\n")
			case op < 9:
				// The second process restarts: a new one with nothing in memory.
				what = "restart"
				procs[1] = setupRenderOn(t, b.store, time.Now)
				b.ingest(t, marker+"\n")
			default:
				what = "marker"
				b.ingest(t, marker+"\n")
			}
		})
		// Pull until the bouncers hold the version the deny list is of (an
		// expiry or a second change may bring another version meanwhile).
		// A fresh bouncer's startup list is what the replay holds.
		var want *netipx.IPSet
		var fresh csReplay
		for {
			replay.apply(procs[rng.IntN(2)].csPull(t, key, ""))
			replayIP.apply(procs[rng.IntN(2)].csPull(t, keyIP, ""))
			fresh = csReplay{}
			fresh.apply(procs[rng.IntN(2)].csPull(t, keyFresh, "?startup=true"))
			var version int64
			want, version = b.denySet(t, "edge")
			if b.applied(t, "cs") == version && b.applied(t, "csip") == version && b.applied(t, "fresh") == version {
				break
			}
		}
		require.Equal(t, slices.Sorted(mapsKeys(fresh)), slices.Sorted(mapsKeys(replay)), "step %d (%s)", step, what)
		require.True(t, want.Equal(replay.set(t)), "step %d (%s): the replayed stream is not the deny list:\nwant %v\ngot  %v", step, what, want.Prefixes(), replay.set(t).Prefixes())
		require.True(t, want.Equal(replayIP.set(t)), "step %d (%s): the expanded stream is not the deny list", step, what)
		for _, d := range replayIP {
			if d.Scope == "Range" {
				p := netip.MustParsePrefix(d.Value)
				require.Less(t, p.Bits(), map[bool]int{true: 24, false: 120}[p.Addr().Is4()], "step %d: %s should be expanded", step, d.Value)
			}
		}
	}
}

func mapsKeys(m csReplay) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// csDurationClock returns a clock at the current time, moved past the next
// renewal epoch boundary when one is less than an hour away, so that a test
// that moves it by minutes sees no renewal of every decision.
func csDurationClock() *fakeClock {
	now := time.Now().UTC().Truncate(time.Second)
	epoch := int64(api.CrowdSecRenewEvery / time.Second)
	if next := (now.Unix()/epoch + 1) * epoch; next-now.Unix() < 3600 {
		now = time.Unix(next+1, 0).UTC()
	}
	return &fakeClock{now: now}
}

// csLine is one ingest line seen at seen, with a ttl unless "".
func csLine(ip, source, tag, ttl string, seen time.Time) string {
	o := map[string]any{"ip": ip, "source": source, "tags": []string{tag}, "seen_at": seen.Format(time.RFC3339)}
	if ttl != "" {
		o["ttl"] = ttl
	}
	b, _ := json.Marshal(o)
	return string(b) + "\n"
}

func durations(ds []csDecision) map[string]string {
	out := map[string]string{}
	for _, d := range ds {
		out[d.Scope+" "+d.Value] = d.Duration
	}
	return out
}

// TestCrowdSecDurations is deliverable 4 of issue 11: a decision's duration
// is the time left until its ban's end, in whole seconds rounded up (Go's
// duration format, as CrowdSec's LAPI writes it); a ban without an end, or
// with one beyond ipset's limit, carries the cap of 2147483 s.
func TestCrowdSecDurations(t *testing.T) {
	t.Parallel()
	clk := csDurationClock()
	b := setupRenderOn(t, storetest.Store(t), clk.Now)
	at := clk.Now()
	b.ingest(t, csLine("198.51.100.7", "a", "bad", "1h", at)+
		// No expiry.
		csLine("198.51.100.8", "a", "bad", "", at)+
		// Mixed: another assertion in the view lasts for good.
		csLine("198.51.100.9", "a", "bad", "1h", at)+csLine("198.51.100.9", "b", "other", "", at)+
		// A network and an address inside it: both views rest on both
		// assertions, so both bans end with the later one.
		csLine("198.51.100.16/28", "a", "bad", "2h", at)+csLine("198.51.100.20", "b", "bad", "30m", at)+
		// Beyond the cap.
		csLine("198.51.100.32", "a", "bad", "1000h", at)+
		// Inside a network the ruleset blocks by cidr alone: the ban
		// outlives the assertion.
		csLine("203.0.113.5", "a", "bad", "1h", at))
	b.putRuleset(t, "ruleset edge\n  block tag bad\n  block cidr 203.0.113.0/28\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	b.getRender(t, "edge", "")

	s := b.csPull(t, key, "?startup=true")
	want := map[string]string{
		"Ip 198.51.100.7":        "1h0m0s",
		"Ip 198.51.100.8":        "596h31m23s",
		"Ip 198.51.100.9":        "596h31m23s",
		"Range 198.51.100.16/28": "2h0m0s",
		"Ip 198.51.100.20":       "2h0m0s",
		"Ip 198.51.100.32":       "596h31m23s",
		"Range 203.0.113.0/30":   "596h31m23s",
		"Ip 203.0.113.4":         "596h31m23s",
		"Ip 203.0.113.5":         "596h31m23s",
		"Range 203.0.113.6/31":   "596h31m23s",
		"Range 203.0.113.8/29":   "596h31m23s",
	}
	require.Equal(t, want, durations(s.New))

	// Time passes: the durations shrink, and nothing is sent again.
	clk.Add(10*time.Minute + 500*time.Millisecond)
	require.Empty(t, b.csPull(t, key, "").New)
	var live []csDecision
	b.crowdsec(t, key, "/crowdsec/v1/decisions?ip=198.51.100.7", &live)
	require.Equal(t, map[string]string{"Ip 198.51.100.7": "50m0s"}, durations(live))
	s = b.csPull(t, key, "?startup=true")
	require.Equal(t, "50m0s", durations(s.New)["Ip 198.51.100.7"])
	require.Equal(t, "596h31m23s", durations(s.New)["Ip 198.51.100.8"])

	// A rule that still matches once the assertions expired (the ingested
	// prefixes keep their sightings: classification unknown) blocks for
	// good: every decision carries the cap.
	b.putRuleset(t, "ruleset unknown\n  block classification unknown and cidr 198.51.100.0/24\n", http.StatusCreated)
	b.getRender(t, "unknown", "")
	s = b.csPull(t, b.createBouncer(t, "cs2", "unknown"), "?startup=true")
	require.Equal(t, map[string]string{
		"Ip 198.51.100.7":        "596h31m23s",
		"Ip 198.51.100.8":        "596h31m23s",
		"Ip 198.51.100.9":        "596h31m23s",
		"Range 198.51.100.16/28": "596h31m23s",
		"Ip 198.51.100.20":       "596h31m23s",
		"Ip 198.51.100.32":       "596h31m23s",
	}, durations(s.New))
}

// TestCrowdSecDurationExtension: a source that re-asserts a ban with a later
// expiry has its decision sent again as new with the new duration at the
// next pull, and only that decision; a pull after that sends nothing.
func TestCrowdSecDurationExtension(t *testing.T) {
	t.Parallel()
	clk := csDurationClock()
	b := setupRenderOn(t, storetest.Store(t), clk.Now)
	at := clk.Now()
	b.ingest(t, csLine("198.51.100.7", "a", "bad", "1h", at)+csLine("198.51.100.8", "a", "bad", "1h", at))
	b.putRuleset(t, "ruleset edge\n  block tag bad\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	b.getRender(t, "edge", "")
	s := b.csPull(t, key, "?startup=true")
	require.Equal(t, map[string]string{"Ip 198.51.100.7": "1h0m0s", "Ip 198.51.100.8": "1h0m0s"}, durations(s.New))

	// 20 minutes later the source re-asserts 198.51.100.7 for two hours:
	// the render does not change, the ban's end does.
	clk.Add(20 * time.Minute)
	_, before, _ := b.getRender(t, "edge", "")
	b.ingest(t, csLine("198.51.100.7", "a", "bad", "2h", clk.Now()))
	require.NoError(t, b.ix.CatchUp(context.Background()))
	s = b.csPull(t, key, "")
	require.Equal(t, map[string]string{"Ip 198.51.100.7": "2h0m0s"}, durations(s.New))
	require.Empty(t, s.Deleted)
	_, after, _ := b.getRender(t, "edge", "")
	require.Equal(t, before.Version, after.Version)
	require.Empty(t, b.csPull(t, key, "").New)

	// A startup pull says the same.
	s = b.csPull(t, key, "?startup=true")
	require.Equal(t, map[string]string{"Ip 198.51.100.7": "2h0m0s", "Ip 198.51.100.8": "40m0s"}, durations(s.New))

	// A rule that blocks 198.51.100.8 for good makes its ban outlast the
	// assertion although its decision (rule 1's) stays: a change of the
	// rules sends every decision again with its duration.
	b.changeVersion(t, "edge", func() {
		b.putRuleset(t, "ruleset edge\n  block tag bad\n  block cidr 198.51.100.8/32\n", http.StatusOK)
	})
	s = b.csPull(t, key, "")
	require.Empty(t, s.Deleted)
	require.Equal(t, map[string]string{"Ip 198.51.100.7": "2h0m0s", "Ip 198.51.100.8": "596h31m23s"}, durations(s.New))
	require.Empty(t, b.csPull(t, key, "").New)
}

// TestCrowdSecDurationExtensionOtherProcess: the extension is sent again when
// the pull after it goes to another serve process on the same database (the
// cursor is the facts' change-feed sequence, the same in every process).
func TestCrowdSecDurationExtensionOtherProcess(t *testing.T) {
	t.Parallel()
	clk := csDurationClock()
	b := setupRenderOn(t, storetest.Store(t), clk.Now)
	at := clk.Now()
	b.ingest(t, csLine("198.51.100.7", "a", "bad", "1h", at)+csLine("198.51.100.8", "a", "bad", "1h", at))
	b.putRuleset(t, "ruleset edge\n  block tag bad\n", http.StatusCreated)
	key := b.createBouncer(t, "cs", "edge")
	b.getRender(t, "edge", "")
	other := setupRenderOn(t, b.store, clk.Now)
	other.getRender(t, "edge", "")
	// Both indexes on the same facts: a cursor older than the facts a
	// process started from names changes it cannot see (it would send
	// every decision).
	require.NoError(t, b.ix.CatchUp(context.Background()))
	require.NoError(t, other.ix.CatchUp(context.Background()))
	s := b.csPull(t, key, "?startup=true")
	require.Equal(t, map[string]string{"Ip 198.51.100.7": "1h0m0s", "Ip 198.51.100.8": "1h0m0s"}, durations(s.New))
	require.Empty(t, other.csPull(t, key, "").New)

	clk.Add(20 * time.Minute)
	b.ingest(t, csLine("198.51.100.8", "a", "bad", "3h", clk.Now()))
	require.NoError(t, other.ix.CatchUp(context.Background()))
	s = other.csPull(t, key, "")
	require.Equal(t, map[string]string{"Ip 198.51.100.8": "3h0m0s"}, durations(s.New))
	require.Empty(t, s.Deleted)
	require.NoError(t, b.ix.CatchUp(context.Background()))
	require.Empty(t, b.csPull(t, key, "").New)
}
