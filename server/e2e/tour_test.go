//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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

func (c credentials) BearerAuth(context.Context, oc.OperationName) (oc.BearerAuth, error) {
	if c.token == "" {
		return oc.BearerAuth{}, ogenerrors.ErrSkipClientSecurity
	}
	return oc.BearerAuth{Token: c.token}, nil
}

func (c credentials) BouncerKey(context.Context, oc.OperationName) (oc.BouncerKey, error) {
	if c.key == "" {
		return oc.BouncerKey{}, ogenerrors.ErrSkipClientSecurity
	}
	return oc.BouncerKey{APIKey: c.key}, nil
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

// tagNames lists the names of tag facts in order.
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
	admin, err := oc.NewClient(srv.url+"/api/v1", credentials{token: srv.admin})
	require.NoError(t, err)

	t.Run("served contract", func(t *testing.T) {
		// The client was generated from this very file.
		want, err := openapi.Files.ReadFile("openapi.yaml")
		require.NoError(t, err)
		resp, err := http.Get(srv.url + "/api/v1/openapi.yaml")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, string(want), readAll(t, resp.Body))
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
		unauthorized := answer[*oc.Problem](t)(pipeline.ListTags(ctx))
		require.Equal(t, http.StatusUnauthorized, unauthorized.Status)
	})

	t.Run("ingest NDJSON", func(t *testing.T) {
		body := strings.Join([]string{
			`{"ip":"198.51.100.7","source":"cowrie","tags":["ssh-bruteforce"],"classification":"malicious"}`,
			`{"ip":"203.0.113.0/24","source":"netflow","tags":["scanner"],"ttl":"24h","note":"swept port 22"}`,
			`{"ip":"198.51.100.300"}`,
		}, "\n") + "\n"
		res := answer[*oc.IngestResult](t)(admin.Ingest(ctx, &oc.IngestReqApplicationXNdjson{Data: strings.NewReader(body)}))
		require.Equal(t, &oc.IngestResult{Accepted: 2, Rejected: 1, Errors: []oc.IngestError{
			{Line: 3, Field: oc.NewOptString("ip"), Reason: `"198.51.100.300" is not an IP address`},
		}}, res)
	})

	t.Run("ingest JSON array", func(t *testing.T) {
		body := `[{"ip":"198.51.100.8","source":"cowrie","tags":["ssh-bruteforce"],"classification":"malicious"},` +
			`{"ip":"2001:db8::7","source":"cowrie","classification":"malicious"},` +
			`{"ip":"not-an-address","source":"cowrie"}]`
		req := oc.IngestReqApplicationJSON(body)
		res := answer[*oc.IngestResult](t)(admin.Ingest(ctx, &req))
		require.Equal(t, &oc.IngestResult{Accepted: 2, Rejected: 1, Errors: []oc.IngestError{
			{Line: 3, Field: oc.NewOptString("ip"), Reason: `"not-an-address" is not an IP address`},
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
		require.Len(t, rows, 4, "a header and three rows")
		require.Equal(t, "prefix", rows[0][0])
		require.Equal(t, []string{"198.51.100.7/32", "198.51.100.8/32", "2001:db8::7/128"}, []string{rows[1][0], rows[2][0], rows[3][0]})

		all := answer[*oc.ExportJSONOKApplicationJSON](t)(admin.ExportJSON(ctx, oc.ExportJSONParams{}))
		var items []oc.SearchItem
		require.NoError(t, json.Unmarshal([]byte(*all), &items))
		require.Len(t, items, 4)

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

		ch := answer[*oc.ExportClickHouseOK](t)(admin.ExportClickHouse(ctx, oc.ExportClickHouseParams{}))
		tsv := strings.Split(strings.TrimSuffix(readAll(t, ch.Data), "\n"), "\n")
		require.Equal(t, "prefix\tclassification\tscore\ttags\tasn\tas_org\tcountry\trdns\tfirst_seen\tlast_seen\tsources", tsv[0])
		require.Len(t, tsv, 5)
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

var _ = httptest.NewServer
