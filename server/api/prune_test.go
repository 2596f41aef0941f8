package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// Deleting an override left an empty /32 in search, exports and the network
// page: the prefix row itself goes in the delete's transaction.
func TestDeleteOverridePrunesThePrefix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	count := func() int {
		var n int
		require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM prefixes WHERE prefix = '192.0.2.77/32'`).Scan(&n))
		return n
	}
	b.json(t, b.writer, http.MethodPut, "/api/v1/ips/192.0.2.77/override", map[string]any{"classification": "malicious", "note": "scanner"}, http.StatusOK, nil)
	require.Equal(t, 1, count())
	b.json(t, b.writer, http.MethodDelete, "/api/v1/ips/192.0.2.77/override", nil, http.StatusNoContent, nil)
	require.Equal(t, 0, count(), "the prefix row is gone")
	b.json(t, b.reader, http.MethodGet, "/api/v1/networks/192.0.2.77/32", nil, http.StatusNotFound, nil)
	b.json(t, b.reader, http.MethodGet, "/api/v1/ips/192.0.2.77", nil, http.StatusNotFound, nil)
	js, nd, csvRows, ch := b.exports(t, "")
	require.Empty(t, js)
	require.Empty(t, nd)
	require.Len(t, csvRows, 1, "the header only")
	require.Len(t, ch, 1, "the header only")
}
