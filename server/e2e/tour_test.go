//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/csv"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ogen-go/ogen/ogenerrors"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/openapi"
	oc "github.com/muninn/muninn/server/e2e/ogenclient"
)

// credentials is the ogen client's SecuritySource: a bearer token or a bouncer
// key, and nothing for the scheme it does not hold.
type credentials struct{ token, key string }

// BearerAuth gives the token, when there is one.
func (c credentials) BearerAuth(context.Context, oc.OperationName) (oc.BearerAuth, error) {
	if c.token == "" {
		return oc.BearerAuth{}, ogenerrors.ErrSkipClientSecurity
	}
	return oc.BearerAuth{Token: c.token}, nil
}

// BouncerKey gives the bouncer key, when there is one.
func (c credentials) BouncerKey(context.Context, oc.OperationName) (oc.BouncerKey, error) {
	if c.key == "" {
		return oc.BouncerKey{}, ogenerrors.ErrSkipClientSecurity
	}
	return oc.BouncerKey{APIKey: c.key}, nil
}

// gunzipped records whether the last answer came gzip-compressed: Go's transport
// asks for gzip and inflates it itself when the caller did not set Accept-Encoding.
type gunzipped struct {
	last atomic.Bool
}

// RoundTrip sends r with the default transport and records how the answer came.
func (g *gunzipped) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	g.last.Store(err == nil && resp.Uncompressed)
	return resp, err
}

// answer checks that a call of the ogen client succeeded with an answer of type T
// and returns it: answer[*oc.View](t)(c.GetIP(ctx, params)).
func answer[T any](t *testing.T) func(res any, err error) T {
	return func(res any, err error) T {
		t.Helper()
		require.NoError(t, err)
		v, ok := res.(T)
		require.Truef(t, ok, "answer %T, want %T: %+v", res, *new(T), res)
		return v
	}
}

// readAll reads a streamed answer.
func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(b)
}

// tagNames lists tag facts in order as "name source prefix".
func tagNames(tags []oc.TagFact) []string {
	out := []string{}
	for _, f := range tags {
		out = append(out, f.Name+" "+f.Source+" "+f.Prefix)
	}
	return out
}

// TestTour walks the README's curl tour with a client that ogen generated from
// openapi/openapi.yaml, the contract the server serves: if an operation does not do
// what the contract says, this client, which nobody wrote by hand, cannot use it.
// No root needed. The steps share one server and run in the README's order.
func TestTour(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testLogger(t))
	ctx := t.Context()
	transport := &gunzipped{}
	admin, err := oc.NewClient(srv.url+"/api/v1", credentials{token: srv.admin}, oc.WithClient(&http.Client{Transport: transport}))
	require.NoError(t, err)

	t.Run("served contract", func(t *testing.T) {
		// The client was generated from this very file.
		served, err := admin.GetOpenAPI(ctx)
		require.NoError(t, err)
		require.Equal(t, string(openapi.Spec), readAll(t, served.Data))
	})

	t.Run("tokens", func(t *testing.T) {
		created := answer[*oc.TokenCreated](t)(admin.CreateToken(ctx, &oc.TokenInput{Name: "cowrie-pipeline", Role: oc.RoleWriter}))
		require.Equal(t, "cowrie-pipeline", created.Name)
		require.Equal(t, oc.RoleWriter, created.Role)
		require.True(t, strings.HasPrefix(created.Token, "mnn_"), created.Token)
		list := answer[*oc.ListTokensOKApplicationJSON](t)(admin.ListTokens(ctx))
		names := map[string]oc.Role{}
		for _, tok := range *list {
			names[tok.Name] = tok.Role
		}
		require.Equal(t, map[string]oc.Role{"admin": oc.RoleAdmin, "writer": oc.RoleWriter, "cowrie-pipeline": oc.RoleWriter}, names)
		// The new token works until it is revoked.
		pipeline, err := oc.NewClient(srv.url+"/api/v1", credentials{token: created.Token})
		require.NoError(t, err)
		answer[*oc.ListTagsOKApplicationJSON](t)(pipeline.ListTags(ctx))
		answer[*oc.DeleteTokenNoContent](t)(admin.DeleteToken(ctx, oc.DeleteTokenParams{ID: created.ID}))
		unauthorized := answer[*oc.ListTagsUnauthorized](t)(pipeline.ListTags(ctx))
		require.Equal(t, http.StatusUnauthorized, unauthorized.Status)
	})

	t.Run("ingest NDJSON", func(t *testing.T) {
		body := strings.Join([]string{
			`{"ip":"198.51.100.7","source":"cowrie","tags":["ssh-bruteforce"],"classification":"malicious"}`,
			`{"ip":"203.0.113.0/24","source":"netflow","tags":["scanner"],"ttl":"24h","note":"swept port 22"}`,
			`{"ip":"198.51.100.300"}`,
		}, "\n") + "\n"
		res := answer[*oc.IngestResult](t)(admin.Ingest(ctx, &oc.IngestReqApplicationXNdjson{Data: strings.NewReader(body)}, oc.IngestParams{}))
		require.Equal(t, &oc.IngestResult{Accepted: 2, Rejected: 1, Errors: []oc.IngestError{
			{Line: 3, Field: oc.NewOptString("/ip"), Reason: `"198.51.100.300" is not an IP address`},
		}}, res)
	})

	t.Run("ingest JSON array", func(t *testing.T) {
		req := oc.IngestReqApplicationJSON{
			{IP: "198.51.100.8", Source: oc.NewOptString("cowrie"), Tags: []string{"ssh-bruteforce"},
				Classification: oc.NewOptClassification(oc.ClassificationMalicious)},
			{IP: "2001:db8::7", Source: oc.NewOptString("cowrie"), Classification: oc.NewOptClassification(oc.ClassificationMalicious),
				TTL: oc.NewOptObservationTTL(oc.NewFloat64ObservationTTL(86400))},
			{IP: "not-an-address", Source: oc.NewOptString("cowrie")},
		}
		res := answer[*oc.IngestResult](t)(admin.Ingest(ctx, &req, oc.IngestParams{}))
		require.Equal(t, &oc.IngestResult{Accepted: 2, Rejected: 1, Errors: []oc.IngestError{
			{Line: 3, Field: oc.NewOptString("/ip"), Reason: `"not-an-address" is not an IP address`},
		}}, res)
	})

	t.Run("lookups", func(t *testing.T) {
		ip := answer[*oc.View](t)(admin.GetIP(ctx, oc.GetIPParams{Address: "203.0.113.9"}))
		require.Equal(t, "203.0.113.9", ip.Address.Value)
		require.Equal(t, oc.ClassificationUnknown, ip.Classification)
		require.Equal(t, []string{"scanner ingest:netflow 203.0.113.0/24"}, tagNames(ip.Tags))
		require.Equal(t, []string{"ingest:netflow"}, ip.Sources)
		require.Equal(t, "swept port 22", ip.Note.Value)
		require.Len(t, ip.Prefixes, 1)
		require.Equal(t, "203.0.113.0/24", ip.Prefixes[0].Prefix)

		network := answer[*oc.View](t)(admin.GetNetwork(ctx, oc.GetNetworkParams{Address: "203.0.113.0", Bits: 24}))
		require.Equal(t, "203.0.113.0/24", network.Network.Value)
		require.Equal(t, []string{"scanner ingest:netflow 203.0.113.0/24"}, tagNames(network.Tags))

		bad := answer[*oc.View](t)(admin.GetIP(ctx, oc.GetIPParams{Address: "198.51.100.7"}))
		require.Equal(t, oc.ClassificationMalicious, bad.Classification)
		require.Equal(t, []string{"ssh-bruteforce ingest:cowrie 198.51.100.7/32"}, tagNames(bad.Tags))

		unknown := answer[*oc.GetIPNotFound](t)(admin.GetIP(ctx, oc.GetIPParams{Address: "192.0.2.1"}))
		require.Equal(t, http.StatusNotFound, unknown.Status)
	})

	t.Run("overrides", func(t *testing.T) {
		v := answer[*oc.View](t)(admin.PutIPOverride(ctx, &oc.Override{
			Classification: oc.NewOptClassification(oc.ClassificationBenign),
			SuppressTags:   []string{"scanner"},
			Note:           oc.NewOptString("our monitoring host"),
			ExpiresAt:      oc.NewOptDateTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)),
		}, oc.PutIPOverrideParams{Address: "203.0.113.9"}))
		require.Equal(t, oc.ClassificationBenign, v.Classification)
		require.Equal(t, []string{}, tagNames(v.Tags))
		require.Equal(t, []string{"scanner ingest:netflow 203.0.113.0/24"}, tagNames(v.SuppressedTags))
		require.Equal(t, "our monitoring host", v.Note.Value)

		n := answer[*oc.View](t)(admin.PutNetworkOverride(ctx, &oc.Override{AddTags: []string{"reviewed"}},
			oc.PutNetworkOverrideParams{Address: "203.0.113.0", Bits: 24}))
		require.ElementsMatch(t, []string{"scanner ingest:netflow 203.0.113.0/24", "reviewed manual:admin 203.0.113.0/24"}, tagNames(n.Tags))

		answer[*oc.DeleteIPOverrideNoContent](t)(admin.DeleteIPOverride(ctx, oc.DeleteIPOverrideParams{Address: "203.0.113.9"}))
		v = answer[*oc.View](t)(admin.GetIP(ctx, oc.GetIPParams{Address: "203.0.113.9"}))
		require.Equal(t, oc.ClassificationUnknown, v.Classification)
		require.ElementsMatch(t, []string{"scanner ingest:netflow 203.0.113.0/24", "reviewed manual:admin 203.0.113.0/24"}, tagNames(v.Tags))
	})

	t.Run("search with a cursor", func(t *testing.T) {
		scanners := answer[*oc.SearchPage](t)(admin.SearchIPs(ctx, oc.SearchIPsParams{
			Tag: oc.NewOptString("scanner"), Within: oc.NewOptString("203.0.113.0/24"), Limit: oc.NewOptInt(100)}))
		require.Len(t, scanners.Items, 1)
		require.Equal(t, "203.0.113.0/24", scanners.Items[0].Prefix)
		require.False(t, scanners.NextCursor.Set, "one page")

		// Three malicious prefixes from ingest, two to a page, in the order they were stored.
		filter := oc.SearchIPsParams{Source: oc.NewOptString("ingest:*"),
			Classification: oc.NewOptClassification(oc.ClassificationMalicious), Limit: oc.NewOptInt(2)}
		first := answer[*oc.SearchPage](t)(admin.SearchIPs(ctx, filter))
		require.Equal(t, []string{"198.51.100.7/32", "198.51.100.8/32"}, searchPrefixes(first))
		require.True(t, first.NextCursor.Set)
		filter.Cursor = first.NextCursor
		second := answer[*oc.SearchPage](t)(admin.SearchIPs(ctx, filter))
		require.Equal(t, []string{"2001:db8::7/128"}, searchPrefixes(second))
		require.False(t, second.NextCursor.Set, "the last page")
	})

	t.Run("tags", func(t *testing.T) {
		tag := answer[*oc.Tag](t)(admin.PutTag(ctx, &oc.TagInput{Description: oc.NewOptString("touched a honeypot port"),
			Color: oc.NewOptString("#c0392b"), DefaultTTL: oc.NewOptString("168h")}, oc.PutTagParams{Name: "honeypot"}))
		require.Equal(t, "honeypot", tag.Name)
		require.Equal(t, "touched a honeypot port", tag.Description)
		require.Equal(t, "#c0392b", tag.Color)
		require.Equal(t, "168h0m0s", tag.DefaultTTL.Value)
		require.Equal(t, map[string]int64{"honeypot": 0, "reviewed": 1, "scanner": 1, "ssh-bruteforce": 2}, tagCounts(t, admin))
		answer[*oc.DeleteTagNoContent](t)(admin.DeleteTag(ctx, oc.DeleteTagParams{Name: "honeypot"}))
		require.Equal(t, map[string]int64{"reviewed": 1, "scanner": 1, "ssh-bruteforce": 2}, tagCounts(t, admin))
	})

	t.Run("audit", func(t *testing.T) {
		page := answer[*oc.AuditPage](t)(admin.ListAudit(ctx, oc.ListAuditParams{Actor: oc.NewOptString("admin"),
			Object: oc.NewOptString("prefix/203.0.113.9/32")}))
		var actions []string
		for _, e := range page.Items {
			require.Equal(t, "admin", e.Actor)
			require.Equal(t, "prefix/203.0.113.9/32", e.Object)
			actions = append(actions, e.Action)
		}
		require.Equal(t, []string{"override.delete", "override.put"}, actions, "newest first")
	})

	t.Run("exports", func(t *testing.T) {
		malicious := oc.NewOptClassification(oc.ClassificationMalicious)
		csvOut := answer[*oc.ExportCSVOK](t)(admin.ExportCSV(ctx, oc.ExportCSVParams{Classification: malicious}))
		rows, err := csv.NewReader(csvOut.Data).ReadAll()
		require.NoError(t, err)
		require.Equal(t, []string{"prefix", "classification", "tags", "sources", "note", "country", "asn", "as_org",
			"first_seen", "last_seen", "sightings", "passive_dns"}, rows[0], "the columns of ExportRow, in order")
		var csvRows []string
		for _, r := range rows[1:] {
			csvRows = append(csvRows, strings.Join(append(r[:4:4], r[10]), " "))
		}
		require.Equal(t, []string{"198.51.100.7/32 malicious ssh-bruteforce ingest:cowrie 1",
			"198.51.100.8/32 malicious ssh-bruteforce ingest:cowrie 1", "2001:db8::7/128 malicious  ingest:cowrie 1"}, csvRows)

		ingested := oc.NewOptString("ingest:*")
		all := answer[*oc.ExportJSONOKApplicationJSON](t)(admin.ExportJSON(ctx, oc.ExportJSONParams{Source: ingested}))
		var prefixes []string
		for _, it := range *all {
			prefixes = append(prefixes, it.Prefix+" "+string(it.Classification)+" "+strings.Join(it.Tags, ","))
		}
		// Rows are effective views in address order.
		require.Equal(t, []string{"198.51.100.7/32 malicious ssh-bruteforce", "198.51.100.8/32 malicious ssh-bruteforce",
			"203.0.113.0/24 unknown reviewed,scanner", "2001:db8::7/128 malicious "}, prefixes)

		nd := answer[*oc.ExportNDJSONOK](t)(admin.ExportNDJSON(ctx, oc.ExportNDJSONParams{Tag: oc.NewOptString("scanner")}))
		var lines []string
		sc := bufio.NewScanner(nd.Data)
		for sc.Scan() {
			var item oc.SearchItem
			require.NoError(t, item.UnmarshalJSON(sc.Bytes()))
			lines = append(lines, item.Prefix)
		}
		require.NoError(t, sc.Err())
		require.Equal(t, []string{"203.0.113.0/24"}, lines)

		ch := answer[*oc.ExportClickHouseOK](t)(admin.ExportClickHouse(ctx, oc.ExportClickHouseParams{Source: ingested}))
		tsv := strings.Split(strings.TrimSuffix(readAll(t, ch.Data), "\n"), "\n")
		require.Equal(t, "prefix\tclassification\tscore\ttags\tasn\tas_org\tcountry\trdns\tfirst_seen\tlast_seen\tsources", tsv[0])
		var chRows []string
		for _, line := range tsv[1:] {
			f := strings.Split(line, "\t")
			require.Len(t, f, 11, line)
			chRows = append(chRows, strings.Join([]string{f[0], f[1], f[2], f[3], f[10]}, " "))
		}
		require.Equal(t, []string{"198.51.100.7/32 malicious 100 ssh-bruteforce ingest:cowrie",
			"198.51.100.8/32 malicious 100 ssh-bruteforce ingest:cowrie",
			"203.0.113.0/24 unknown 20 reviewed,scanner ingest:netflow,manual:admin", "2001:db8::7/128 malicious 100  ingest:cowrie"}, chRows)
	})

	const edge = "ruleset edge\n  hook input\n  scope tcp dport 22,443\n  honeypot tcp 23\n  block tag scanner\n"
	var rendered oc.Render
	t.Run("rulesets", func(t *testing.T) {
		created := answer[*oc.PutRulesetCreated](t)(admin.PutRuleset(ctx, &oc.PutRulesetReqTextPlain{Data: strings.NewReader(edge)},
			oc.PutRulesetParams{Name: "edge"}))
		require.Equal(t, "edge", created.Name)
		require.Equal(t, edge, created.Text)
		p := created.Policy
		require.Equal(t, "edge", p.Name)
		require.Equal(t, oc.HookInput, p.Hook)
		require.Equal(t, oc.PolicyScopeProtocolTCP, p.Scope.Value.Protocol.Value)
		require.Equal(t, []oc.PortRange{oc.NewIntPortRange(22), oc.NewIntPortRange(443)}, p.Scope.Value.Dports.Value)
		require.Equal(t, []int{23}, p.Honeypot.Value.TCP.Value)
		require.Len(t, p.Rules, 1)
		require.Equal(t, oc.ActionBlock, p.Rules[0].Action)
		require.Len(t, p.Rules[0].Conds, 1)
		cond := p.Rules[0].Conds[0]
		require.Equal(t, oc.ConditionKindTag, cond.Kind)
		require.False(t, cond.Not.Value)
		require.Equal(t, []string{"scanner"}, cond.Values)
		// The JSON form builds the same ruleset under another name.
		policy := created.Policy
		policy.Name = "edge-json"
		fromJSON := answer[*oc.PutRulesetCreated](t)(admin.PutRuleset(ctx, &policy, oc.PutRulesetParams{Name: "edge-json"}))
		require.Equal(t, strings.Replace(edge, "edge", "edge-json", 1), fromJSON.Text)
		got := answer[*oc.Ruleset](t)(admin.GetRuleset(ctx, oc.GetRulesetParams{Name: "edge"}))
		require.Equal(t, edge, got.Text)
		answer[*oc.DeleteRulesetNoContent](t)(admin.DeleteRuleset(ctx, oc.DeleteRulesetParams{Name: "edge-json"}))
		list := answer[*oc.ListRulesetsOKApplicationJSON](t)(admin.ListRulesets(ctx))
		require.Len(t, *list, 1)
		require.Equal(t, "edge", (*list)[0].Name)
	})

	t.Run("render, ETag and long poll", func(t *testing.T) {
		full := answer[*oc.RenderHeaders](t)(admin.GetRulesetRender(ctx, oc.GetRulesetRenderParams{Name: "edge"}))
		require.True(t, transport.last.Load(), "the cached render is served gzip-compressed")
		rendered = full.Response
		require.Equal(t, "edge", rendered.Ruleset)
		require.Equal(t, oc.RenderHookInput, rendered.Hook)
		require.Equal(t, oc.Scope{Protocol: oc.ScopeProtocolTCP, Dports: []uint16{22, 443}, Iifnames: []string{}}, rendered.Scope)
		require.Equal(t, oc.Honeypot{TCP: []uint16{23}, UDP: []uint16{}}, rendered.Honeypot)
		require.Len(t, rendered.Rules, 1)
		require.Equal(t, []string{"203.0.113.0/24"}, rendered.Rules[0].V4)
		require.Equal(t, "block tag scanner", rendered.Rules[0].Text)
		require.Equal(t, `"`+rendered.Hash+`"`, full.ETag.Value)
		answer[*oc.GetRulesetRenderNotModified](t)(admin.GetRulesetRender(ctx, oc.GetRulesetRenderParams{Name: "edge", IfNoneMatch: full.ETag}))

		// A long poll from the current version is answered by the next change, as a delta.
		polled := make(chan *oc.RenderHeaders, 1)
		go func() {
			res, err := admin.GetRulesetRender(ctx, oc.GetRulesetRenderParams{Name: "edge",
				Since: oc.NewOptInt64(rendered.Version), Wait: oc.NewOptString("30s")})
			if err != nil {
				t.Errorf("long poll: %v", err)
			}
			r, _ := res.(*oc.RenderHeaders)
			polled <- r
		}()
		answer[*oc.View](t)(admin.PutIPOverride(ctx, &oc.Override{AddTags: []string{"scanner"}}, oc.PutIPOverrideParams{Address: "198.51.100.99"}))
		delta := <-polled
		require.NotNil(t, delta, "the long poll answers with a render")
		require.Greater(t, delta.Response.Version, rendered.Version)
		require.True(t, delta.Response.Delta.Value)
		require.Equal(t, rendered.Version, delta.Response.BaseVersion.Value)
		require.Len(t, delta.Response.Rules, 1)
		require.Equal(t, []string{"198.51.100.99/32"}, delta.Response.Rules[0].AddV4)
		require.Empty(t, delta.Response.Rules[0].DelV4)
		rendered.Version = delta.Response.Version
	})

	t.Run("explain", func(t *testing.T) {
		ex := answer[*oc.Explanation](t)(admin.ExplainRuleset(ctx, oc.ExplainRulesetParams{Name: "edge", IP: "203.0.113.7"}))
		require.Equal(t, "203.0.113.7", ex.Addr)
		require.True(t, ex.Blocked)
		require.Equal(t, oc.ExplanationActionBlock, ex.Action)
		require.Equal(t, 1, ex.Rule)
		require.Len(t, ex.Rules, 1)
		require.True(t, ex.Rules[0].Matched)
		require.Equal(t, "block tag scanner", ex.Rules[0].Text)
		require.Equal(t, []string{"ingest:netflow", "manual:admin"}, ex.Facts.Sources)
	})

	t.Run("deny list and named lists", func(t *testing.T) {
		// The deny list is the current render's; X-Muninn-Render-Version names it.
		txt := answer[*oc.PrefixTextTextPlainHeaders](t)(admin.GetRulesetDeny(ctx, oc.GetRulesetDenyParams{Name: "edge"}))
		require.Equal(t, "198.51.100.99/32\n203.0.113.0/24\n", readAll(t, txt.Response.Data))
		require.True(t, txt.ETag.Set, "a deny list carries an ETag")
		require.True(t, txt.XMuninnRenderVersion.Set, "a deny list names its render")
		js := answer[*oc.PrefixTextApplicationJSONHeaders](t)(admin.GetRulesetDeny(ctx, oc.GetRulesetDenyParams{Name: "edge",
			Format: oc.NewOptPrefixFormat(oc.PrefixFormatJSON)}))
		require.Equal(t, oc.PrefixList{Name: "edge", V4: []string{"198.51.100.99/32", "203.0.113.0/24"}, V6: []string{}}, js.Response)

		list := answer[*oc.NamedList](t)(admin.PutList(ctx, &oc.NamedListInput{Selector: "classification malicious"}, oc.PutListParams{Name: "bad"}))
		require.Equal(t, "bad", list.Name)
		ltxt := answer[*oc.GetListPrefixesOKTextPlainHeaders](t)(admin.GetListPrefixes(ctx, oc.GetListPrefixesParams{Name: "bad"}))
		require.Equal(t, "198.51.100.7/32\n198.51.100.8/32\n2001:db8::7/128\n", readAll(t, ltxt.Response.Data))
		require.True(t, ltxt.ETag.Set, "a named list carries an ETag")
		ljs := answer[*oc.PrefixListHeaders](t)(admin.GetListPrefixes(ctx, oc.GetListPrefixesParams{Name: "bad",
			Format: oc.NewOptListFormat(oc.ListFormatJSON)}))
		require.Equal(t, oc.PrefixList{Name: "bad", V4: []string{"198.51.100.7/32", "198.51.100.8/32"}, V6: []string{"2001:db8::7/128"}}, ljs.Response)
		lcsv := answer[*oc.GetListPrefixesOKTextCsvHeaders](t)(admin.GetListPrefixes(ctx, oc.GetListPrefixesParams{Name: "bad",
			Format: oc.NewOptListFormat(oc.ListFormatCsv)}))
		require.Equal(t, "prefix,family\n198.51.100.7/32,ipv4\n198.51.100.8/32,ipv4\n2001:db8::7/128,ipv6\n", readAll(t, lcsv.Response.Data))
	})

	t.Run("bouncers and the bouncer protocol", func(t *testing.T) {
		created := answer[*oc.BouncerCreated](t)(admin.CreateBouncer(ctx, &oc.BouncerInput{Name: "fw1", Rulesets: []string{"edge"}}))
		require.Equal(t, "fw1", created.Name)
		require.Equal(t, []string{"edge"}, created.Rulesets)
		require.True(t, strings.HasPrefix(created.Key, "mnb_"), created.Key)
		fw1, err := oc.NewClient(srv.url+"/api/v1", credentials{key: created.Key})
		require.NoError(t, err)

		renders := answer[*oc.RenderResponse](t)(fw1.GetBouncerRender(ctx, oc.GetBouncerRenderParams{}))
		require.Len(t, renders.Rulesets, 1)
		require.Equal(t, "edge", renders.Rulesets[0].Ruleset)
		require.Equal(t, rendered.Version, renders.Rulesets[0].Version)
		require.Equal(t, []string{"198.51.100.99/32", "203.0.113.0/24"}, renders.Rulesets[0].Rules[0].V4)
		answer[*oc.GetBouncerRenderNotModified](t)(fw1.GetBouncerRender(ctx, oc.GetBouncerRenderParams{
			Since: oc.NewOptString(`{"edge":` + strconv.FormatInt(rendered.Version, 10) + `}`), Wait: oc.NewOptString("1ms")}))

		answer[*oc.PostBouncerHeartbeatNoContent](t)(fw1.PostBouncerHeartbeat(ctx, &oc.Heartbeat{Hostname: "fw1.example",
			Version: "tour", Applied: oc.HeartbeatApplied{"edge": rendered.Version},
			Counters: []oc.RuleCounter{{Ruleset: "edge", RuleID: 1, Packets: 10, Bytes: 600}}}))
		accepted := answer[*oc.ReportAccepted](t)(fw1.PostBouncerReports(ctx, &oc.Report{Honeypot: []oc.HoneypotHit{
			{IP: "198.51.100.23", Ruleset: "edge", Port: 23, Protocol: oc.HoneypotHitProtocolTCP, SeenAt: time.Now().UTC()}}}))
		require.Equal(t, 1, accepted.Accepted)
		hit := answer[*oc.View](t)(admin.GetIP(ctx, oc.GetIPParams{Address: "198.51.100.23"}))
		require.Equal(t, []string{"honeypot bouncer:fw1 198.51.100.23/32"}, tagNames(hit.Tags))

		bouncers := answer[*oc.ListBouncersOKApplicationJSON](t)(admin.ListBouncers(ctx))
		require.Len(t, *bouncers, 1)
		b := (*bouncers)[0]
		require.Equal(t, "fw1", b.Name)
		require.Equal(t, "fw1.example", b.Hostname.Value)
		require.Equal(t, "tour", b.Version.Value)
		require.Equal(t, []oc.RuleCounter{{Ruleset: "edge", RuleID: 1, Packets: 10, Bytes: 600}}, b.Counters)
		require.Len(t, b.Rulesets, 1)
		require.Equal(t, rendered.Version, b.Rulesets[0].Applied)

		// The key reaches the bouncer endpoints only.
		asBearer, err := oc.NewClient(srv.url+"/api/v1", credentials{token: created.Key})
		require.NoError(t, err)
		refused := answer[*oc.ListTagsUnauthorized](t)(asBearer.ListTags(ctx))
		require.Equal(t, http.StatusUnauthorized, refused.Status)
	})

	t.Run("feeds", func(t *testing.T) {
		list := "# tour feed\n198.51.100.128/26\n203.0.113.200\n"
		feedSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, list)
		}))
		t.Cleanup(feedSrv.Close)

		catalog := answer[*oc.CatalogList](t)(admin.ListFeedCatalog(ctx))
		var names []string
		for _, f := range catalog.Feeds {
			names = append(names, f.Name)
		}
		require.Contains(t, names, "firehol_level1")

		// A ruleset on the feed's tag: its next render shows the refresh is applied.
		watch := answer[*oc.PutRulesetCreated](t)(admin.PutRuleset(ctx, &oc.PutRulesetReqTextPlain{
			Data: strings.NewReader("ruleset feedwatch\n  hook input\n  block tag tourfeed\n")}, oc.PutRulesetParams{Name: "feedwatch"}))
		require.Equal(t, "feedwatch", watch.Name)
		before := answer[*oc.RenderHeaders](t)(admin.GetRulesetRender(ctx, oc.GetRulesetRenderParams{Name: "feedwatch"}))
		require.Empty(t, before.Response.Rules[0].V4)

		feed := answer[*oc.PutFeedCreated](t)(admin.PutFeed(ctx, &oc.FeedInput{URL: feedSrv.URL + "/tour.netset", Format: oc.FeedFormatList,
			Tag: oc.NewOptString("tourfeed"), Classification: oc.NewOptFeedInputClassification(oc.FeedInputClassificationMalicious),
			Schedule: oc.NewOptString("1h"), Enabled: oc.NewOptBool(false)}, oc.PutFeedParams{Name: "tourfeed"}))
		require.Equal(t, "tourfeed", feed.Name)
		// Disabled, so only the refresh asked for below runs (the schedule skips it).
		require.False(t, feed.Enabled)

		refresh := answer[*oc.RefreshAccepted](t)(admin.RefreshFeed(ctx, oc.RefreshFeedParams{Name: "tourfeed"}))
		require.False(t, refresh.Duplicate)
		require.Positive(t, refresh.JobID)
		after := answer[*oc.RenderHeaders](t)(admin.GetRulesetRender(ctx, oc.GetRulesetRenderParams{Name: "feedwatch",
			Since: oc.NewOptInt64(before.Response.Version), Wait: oc.NewOptString("60s")}))
		require.Equal(t, []string{"198.51.100.128/26", "203.0.113.200/32"}, after.Response.Rules[0].AddV4)

		runs := answer[*oc.FeedRunList](t)(admin.ListFeedRuns(ctx, oc.ListFeedRunsParams{Name: "tourfeed"}))
		require.Len(t, runs.Runs, 1)
		run := runs.Runs[0]
		require.Equal(t, oc.FeedRunStatusOk, run.Status)
		require.Equal(t, [5]int64{3, 2, 2, 0, 0}, [5]int64{run.Lines, run.Entries, run.Added, run.Removed, run.Rejected})
		feeds := answer[*oc.FeedList](t)(admin.ListFeeds(ctx))
		require.Len(t, feeds.Feeds, 1)
		require.Equal(t, int64(2), feeds.Feeds[0].Entries)
		v := answer[*oc.View](t)(admin.GetIP(ctx, oc.GetIPParams{Address: "203.0.113.200"}))
		require.Equal(t, oc.ClassificationMalicious, v.Classification)
		require.Contains(t, tagNames(v.Tags), "tourfeed feed:tourfeed 203.0.113.200/32")
	})

	t.Run("jobs", func(t *testing.T) {
		jobs := answer[*oc.JobSummary](t)(admin.GetJobs(ctx, oc.GetJobsParams{}))
		var refreshes int64
		for _, c := range jobs.Counts {
			if c.Kind == "feed_refresh" {
				refreshes += c.Count
			}
		}
		require.Equal(t, int64(1), refreshes, "%+v", jobs.Counts)
		require.Empty(t, jobs.Failures)
	})
}

// searchPrefixes lists the prefixes of a search page in order.
func searchPrefixes(p *oc.SearchPage) []string {
	out := []string{}
	for _, it := range p.Items {
		out = append(out, it.Prefix)
	}
	return out
}

// tagCounts lists every tag with the number of prefixes carrying it.
func tagCounts(t *testing.T, c *oc.Client) map[string]int64 {
	t.Helper()
	list := answer[*oc.ListTagsOKApplicationJSON](t)(c.ListTags(t.Context()))
	out := map[string]int64{}
	for _, tag := range *list {
		out[tag.Name] = tag.Prefixes
	}
	return out
}
