package api

import (
	"compress/gzip"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A small answer (an empty CrowdSec stream delta) goes out as is even when
// the client takes gzip; a larger one is compressed (by a reused compressor)
// and inflates to the same bytes; a body compressed in advance is sent
// compressed whatever its size.
func TestCachedJSONGzip(t *testing.T) {
	t.Parallel()
	small := []byte(`{"new":[],"deleted":[]}`)
	rec := httptest.NewRecorder()
	require.NoError(t, cachedJSON{body: small, gzip: true}.visit(rec))
	require.Empty(t, rec.Header().Get("Content-Encoding"))
	require.Equal(t, "23", rec.Header().Get("Content-Length"))
	require.Equal(t, string(small), rec.Body.String())

	large := []byte(`{"new":[` + strings.Repeat(`{"value":"198.51.100.1","type":"ban"},`, 100) + `{}],"deleted":[]}`)
	for range 3 { // the pooled compressor is reset between uses
		rec = httptest.NewRecorder()
		require.NoError(t, cachedJSON{body: large, gzip: true}.visit(rec))
		require.Equal(t, "gzip", rec.Header().Get("Content-Encoding"))
		require.Less(t, rec.Body.Len(), len(large))
		zr, err := gzip.NewReader(rec.Body)
		require.NoError(t, err)
		got, err := io.ReadAll(zr)
		require.NoError(t, err)
		require.Equal(t, string(large), string(got))
	}

	rec = httptest.NewRecorder()
	require.NoError(t, cachedJSON{body: large, gzip: false}.visit(rec))
	require.Empty(t, rec.Header().Get("Content-Encoding"))
	require.Equal(t, string(large), rec.Body.String())

	pre := []byte("\x1f\x8b precompressed")
	rec = httptest.NewRecorder()
	require.NoError(t, cachedJSON{body: small, gz: pre, gzip: true}.visit(rec))
	require.Equal(t, "gzip", rec.Header().Get("Content-Encoding"))
	require.Equal(t, string(pre), rec.Body.String())
}
