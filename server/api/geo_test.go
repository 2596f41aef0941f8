package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker"
	"github.com/muninn/muninn/worker/source/geo"
	"github.com/muninn/muninn/worker/source/geo/geotest"
)

// TestLookupGeoFromEveryLayout: each vendor's files, found by name in a
// geo directory and loaded by the worker's sync, answer the API's address
// view with the same country, continent and ASN.
func TestLookupGeoFromEveryLayout(t *testing.T) {
	t.Parallel()
	for _, l := range geotest.Layouts() {
		t.Run(l.Name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.ingest(t, `{"ip":"192.0.2.10","tags":["x"]}`+"\n"+`{"ip":"2001:db8::10","tags":["x"]}`)
			dir := t.TempDir()
			l.Write(t, dir)
			w, err := geo.NewDirWatcher(dir)
			require.NoError(t, err)
			require.Empty(t, w.Paths().Missing())
			ctx := context.Background()
			_, err = worker.SyncGeo(ctx, b.store, w.Current())
			require.NoError(t, err)
			require.NoError(t, b.ix.CatchUp(ctx))

			type answer struct {
				Geo struct {
					Country   string `json:"country"`
					Continent string `json:"continent"`
					Network   string `json:"network"`
				} `json:"geo"`
				ASN struct {
					Number       int64  `json:"number"`
					Organization string `json:"organization"`
				} `json:"asn"`
			}
			for addr, want := range map[string][5]any{
				"192.0.2.10":   {"DE", "EU", "192.0.2.0/24", int64(64500), "Example, Inc."},
				"2001:db8::10": {"JP", "AS", "2001:db8::/32", int64(64502), "Example V6"},
			} {
				var v answer
				b.json(t, b.reader, http.MethodGet, "/api/v1/ips/"+addr, nil, 200, &v)
				require.Equal(t, want, [5]any{v.Geo.Country, v.Geo.Continent, v.Geo.Network, v.ASN.Number, v.ASN.Organization}, addr)
			}
		})
	}
}
