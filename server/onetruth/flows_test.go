package onetruth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// flowAlertTag is the harness's MUNINN_FLOW_ALERT_TAGS: an address carrying
// it is a bad contact whatever its classification.
const flowAlertTag = "t5"

// flowLAN holds the inside hosts the flow check invents.
var flowLAN = netip.MustParsePrefix("10.0.0.0/24")

// flowPair is an inside host and an outside address it talked with.
type flowPair struct{ host, remote netip.Addr }

// flowTraffic is what the test wrote of one pair: bytes and the last hour.
type flowTraffic struct {
	bytes    int64
	lastHour time.Time
}

// flows writes one round of flow aggregates, as the collector does: each of
// a few inside hosts of flowLAN talked with some of the given addresses in
// the current 5-minute bucket. It records what it wrote in seen.
func (u *universe) flows(t require.TestingT, s *server, remotes []netip.Addr, seen map[flowPair]flowTraffic) {
	now := s.clock.now().UTC()
	bucket := now.Truncate(5 * time.Minute)
	var b store.FlowBatch
	hosts := map[netip.Addr]*store.FlowHostSeen{}
	for _, remote := range remotes {
		host := netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + u.r.IntN(6))})
		n := int64(40 + u.r.IntN(100000))
		b.Aggregates = append(b.Aggregates, store.FlowAggregate{Bucket: bucket, Host: host, Remote: remote, Port: 443, Proto: 6,
			Bytes: uint64(n), Packets: 1, Flows: 1})
		h := hosts[host]
		if h == nil {
			h = &store.FlowHostSeen{Address: host, Exporter: "gw", FirstSeen: now, LastSeen: now}
			hosts[host] = h
		}
		h.Bytes += uint64(n)
		h.Packets++
		h.Flows++
		k := flowPair{host, remote}
		tr := seen[k]
		tr.bytes += n
		tr.lastHour = bucket.Truncate(time.Hour)
		seen[k] = tr
	}
	for _, h := range hosts {
		b.Hosts = append(b.Hosts, *h)
	}
	_, err := s.st.FlowApply(context.Background(), b)
	require.NoError(t, err)
}

// flowBad is the model's rule for a bad contact, written apart from
// flow.Contact: a view malicious or suspicious, or carrying the alert tag.
func flowBad(v resolve.View) bool {
	return v.Classification == resolve.Malicious || v.Classification == resolve.Suspicious || slices.Contains(v.TagNames(), flowAlertTag)
}

// flowContactText is one contact as the checks compare it.
func flowContactText(host, remote, classification string, tags []string, bytes int64, lastHour time.Time) string {
	return fmt.Sprintf("%s → %s: %q tags %v, %d bytes, last hour %s", host, remote, classification, nonNil(tags), bytes, lastHour.UTC().Format(time.RFC3339))
}

// flowContactsOf returns the contacts the model expects within p (every pair
// written there whose address's view is bad now), as flowContactText.
func (c *checker) flowContactsOf(p netip.Prefix, seen map[flowPair]flowTraffic) []string {
	out := []string{}
	for k, tr := range seen {
		if !p.Contains(k.host) {
			continue
		}
		v := c.m.view(addrPrefix(k.remote))
		if !flowBad(v) {
			continue
		}
		out = append(out, flowContactText(k.host.String(), k.remote.String(), v.Classification, v.TagNames(), tr.bytes, tr.lastHour))
	}
	slices.Sort(out)
	return out
}

type apiFlowContact struct {
	Host           string    `json:"host"`
	Address        string    `json:"address"`
	LastHour       time.Time `json:"last_hour"`
	Classification string    `json:"classification"`
	Tags           []string  `json:"tags"`
	Bytes          int64     `json:"bytes"`
}

// apiFlowContacts reads the contacts of an API profile, checks their order
// (most recent first) and returns them as flowContactText, sorted.
func (c *checker) apiFlowContacts(what string, cs []apiFlowContact) []string {
	out := []string{}
	for i, fc := range cs {
		if i > 0 && fc.LastHour.After(cs[i-1].LastHour) {
			c.errorf("%s: contact %d (%s) is more recent than the one before it", what, i, fc.LastHour)
		}
		tags := slices.Sorted(slices.Values(fc.Tags))
		out = append(out, flowContactText(fc.Host, fc.Address, fc.Classification, tags, fc.Bytes, fc.LastHour))
	}
	slices.Sort(out)
	return out
}

var uiFlowContactRe = regexp.MustCompile(`<tr>\s*<td><a href="/ui/flows/hosts/[^"]+">([^<]+)</a></td><td><a href="/ui/ips/[^"]+">([^<]+)</a></td>\s*` +
	`<td><span class="[^"]*">([^<]*)</span></td><td>([^<]*)</td>\s*<td class="num">(\d+)</td><td>([^<]*)</td>`)

// uiFlowContacts reads the contacts table of a profile page.
func (c *checker) uiFlowContacts(b *browser, path string) []string {
	status, page := b.get(c.t, path)
	require.Equal(c.t, http.StatusOK, status, "%s: %s", path, page)
	section := page[strings.Index(page, `id="contacts"`):]
	section = section[:strings.Index(section, "</section>")]
	out := []string{}
	for _, m := range uiFlowContactRe.FindAllStringSubmatch(section, -1) {
		var tags []string
		if m[4] != "" {
			tags = strings.Split(html.UnescapeString(m[4]), ", ")
			slices.Sort(tags)
		}
		var n int64
		_, err := fmt.Sscan(m[5], &n)
		require.NoError(c.t, err)
		out = append(out, fmt.Sprintf("%s → %s: %q tags %v, %d bytes, last hour %s", m[1], m[2], html.UnescapeString(m[3]), nonNil(tags), n, m[6]))
	}
	slices.Sort(out)
	return out
}

// flows compares the contacts with bad addresses of every profile answer
// (the API's network and host profiles, the UI's subnet and host pages)
// with the model: the pairs written whose address's view is bad now.
func (c *checker) flows(b *browser, seen map[flowPair]flowTraffic) {
	want := c.flowContactsOf(flowLAN, seen)
	var pr struct {
		Contacts []apiFlowContact `json:"contacts"`
	}
	require.NoError(c.t, json.Unmarshal(c.s.mustGet(c.t, "/api/v1/flows/networks/"+flowLAN.String()), &pr))
	if got := c.apiFlowContacts("API network profile", pr.Contacts); !slices.Equal(got, want) {
		c.errorf("API profile of %s disagrees with the model:\n  model: %q\n  API:   %q", flowLAN, want, got)
	}
	// The UI shows times to the minute; compare it on the model's text
	// with the page's time format.
	wantUI := []string{}
	for _, w := range want {
		wantUI = append(wantUI, w[:strings.LastIndex(w, "last hour ")])
	}
	gotUI := c.uiFlowContacts(b, "/ui/flows/networks/"+flowLAN.String())
	for i := range gotUI {
		gotUI[i] = gotUI[i][:strings.LastIndex(gotUI[i], "last hour ")]
	}
	slices.Sort(wantUI)
	if !slices.Equal(gotUI, wantUI) {
		c.errorf("UI profile of %s disagrees with the model:\n  model: %q\n  UI:    %q", flowLAN, wantUI, gotUI)
	}
	hosts := map[netip.Addr]bool{}
	for k := range seen {
		hosts[k.host] = true
	}
	for h := range hosts {
		want := c.flowContactsOf(addrPrefix(h), seen)
		var hp struct {
			Profile struct {
				Contacts []apiFlowContact `json:"contacts"`
			} `json:"profile"`
		}
		require.NoError(c.t, json.Unmarshal(c.s.mustGet(c.t, "/api/v1/flows/hosts/"+h.String()), &hp))
		if got := c.apiFlowContacts("API host profile", hp.Profile.Contacts); !slices.Equal(got, want) {
			c.errorf("API profile of host %s disagrees with the model:\n  model: %q\n  API:   %q", h, want, got)
		}
	}
}
