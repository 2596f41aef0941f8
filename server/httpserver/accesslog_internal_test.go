package httpserver

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"
)

// A long poll that ends without news (304 after wait) is logged at debug; one
// that delivers, and a 304 without wait (a conditional GET), at info; a 5xx
// at warn with its plain-text reason.
func TestAccessLogLevels(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := chi.NewRouter()
	r.Use(requestID(nil), accessLog(log, nil))
	r.Get("/api/v1/rulesets/{name}/render", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("since") {
		case "1":
			w.WriteHeader(http.StatusNotModified)
		case "2":
			http.Error(w, "the database is away\nmore", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte(`{}`))
		}
	})
	for _, c := range []struct {
		query, level, reason string
		status               float64
	}{
		{"?since=1&wait=30s", "DEBUG", "", 304},
		{"?since=1", "INFO", "", 304},
		{"?since=0&wait=30s", "INFO", "", 200},
		{"?since=2&wait=30s", "WARN", "the database is away", 503},
	} {
		buf.Reset()
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/api/v1/rulesets/edge/render"+c.query, nil))
		var m map[string]any
		require.NoError(t, json.Unmarshal(buf.Bytes(), &m), c.query)
		require.Equal(t, c.level, m["level"], c.query)
		require.Equal(t, c.status, m["status"], c.query)
		require.Equal(t, "/api/v1/rulesets/{name}/render", m["route"], c.query)
		if c.reason == "" {
			require.NotContains(t, m, "reason", c.query)
		} else {
			require.Equal(t, c.reason, m["reason"], c.query)
		}
	}
}
