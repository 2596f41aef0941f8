package httpserver_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/httpserver"
)

// logLines is a log sink the test reads line by line: the access log line is
// written after the answer has gone out, so a test waits for it.
type logLines struct {
	lines chan []byte
	all   chan []byte // every line, for the no-secret checks
}

func (l *logLines) Write(p []byte) (int, error) {
	line := bytes.Clone(p)
	l.lines <- line
	l.all <- line
	return len(p), nil
}

func captureLog(level slog.Level) (*slog.Logger, *logLines) {
	l := &logLines{lines: make(chan []byte, 1000), all: make(chan []byte, 1000)}
	return slog.New(httpserver.LogHandler(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: level}))), l
}

// access waits for the access log line of the request with id.
func (l *logLines) access(t *testing.T, id string) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second) // a safety net, not a synchronisation
	for {
		select {
		case line := <-l.lines:
			var m map[string]any
			require.NoError(t, json.Unmarshal(line, &m), "%s", line)
			if m["msg"] == "Served a request." && m["request_id"] == id {
				return m
			}
		case <-deadline:
			t.Fatalf("no access log line for request %s", id)
		}
	}
}

// drained is every line logged so far.
func (l *logLines) drained() string {
	var sb strings.Builder
	for {
		select {
		case line := <-l.all:
			sb.Write(line)
		default:
			return sb.String()
		}
	}
}

func do(t *testing.T, method, url, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// The access log was debug-only and never named the request: every request
// is now one info line with its id (also in X-Request-Id), method, route
// pattern (no address), status, duration, bytes, client and caller, and every
// 4xx/5xx says why; the bearer token appears nowhere in the log.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	log, lines := captureLog(slog.LevelInfo)
	b := setup(t, func(d *httpserver.Deps) { d.Logger = log })
	auth := map[string]string{"Authorization": "Bearer " + b.admin}

	resp, body := do(t, http.MethodPut, b.srv.URL+"/api/v1/tags/scanner?secret=q", `{"description":"Port scanners"}`,
		map[string]string{"Authorization": "Bearer " + b.admin, "Content-Type": "application/json", "Cookie": "muninn_session=c00kie"})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	id := resp.Header.Get("X-Request-Id")
	require.Regexp(t, `^[0-9a-f]{32}$`, id)
	m := lines.access(t, id)
	require.Greater(t, m["duration_ms"], 0.0)
	delete(m, "duration_ms")
	delete(m, "time")
	require.Equal(t, map[string]any{"level": "INFO", "msg": "Served a request.", "request_id": id, "method": "PUT",
		"route": "/api/v1/tags/{name}", "status": 200.0, "bytes": float64(len(body)), "client": "127.0.0.1",
		"principal": "token:t-admin"}, m)

	// A 404 of a lookup: the route, not the address; the problem's detail as reason.
	resp, body = do(t, http.MethodGet, b.srv.URL+"/api/v1/networks/192.0.2.0/24", "", auth)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, body)
	m = lines.access(t, resp.Header.Get("X-Request-Id"))
	require.Equal(t, "/api/v1/networks/{address}/{bits}", m["route"])
	require.Equal(t, 404.0, m["status"])
	require.Equal(t, "INFO", m["level"])
	var p struct{ Detail string }
	require.NoError(t, json.Unmarshal([]byte(body), &p))
	require.Equal(t, "nothing is known about 192.0.2.0/24", p.Detail)
	require.Equal(t, p.Detail, m["reason"])

	// A 400 with field errors names them.
	resp, body = do(t, http.MethodPut, b.srv.URL+"/api/v1/tags/scanner", `{"description":7}`,
		map[string]string{"Authorization": "Bearer " + b.admin, "Content-Type": "application/json"})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	m = lines.access(t, resp.Header.Get("X-Request-Id"))
	var bad struct {
		Detail string
		Errors []struct{ Field, Reason string }
	}
	require.NoError(t, json.Unmarshal([]byte(body), &bad))
	require.NotEmpty(t, bad.Errors)
	require.Equal(t, bad.Detail+"; "+bad.Errors[0].Field+": "+bad.Errors[0].Reason, m["reason"])

	// A wrong token: 401 with the reason, no principal, and the token nowhere.
	resp, body = do(t, http.MethodGet, b.srv.URL+"/api/v1/tags", "", map[string]string{"Authorization": "Bearer mnn_wrongsecret"})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
	m = lines.access(t, resp.Header.Get("X-Request-Id"))
	require.Equal(t, "/api/v1/tags", m["route"])
	require.NotContains(t, m, "principal")
	require.NoError(t, json.Unmarshal([]byte(body), &p))
	require.Equal(t, p.Detail, m["reason"])

	// An unknown endpoint: route "unmatched".
	resp, _ = do(t, http.MethodGet, b.srv.URL+"/nowhere", "", nil)
	m = lines.access(t, resp.Header.Get("X-Request-Id"))
	require.Equal(t, "unmatched", m["route"])
	require.Equal(t, "no such endpoint: /nowhere", m["reason"])

	all := lines.drained()
	// (The 404's reason names the address, as its answer does; the route does not.)
	for _, secret := range []string{b.admin, "mnn_wrongsecret", "c00kie", "secret=q", "Bearer"} {
		require.NotContains(t, all, secret)
	}
}

// Probes and scrapes are logged at debug only.
func TestAccessLogProbesAtDebug(t *testing.T) {
	t.Parallel()
	log, lines := captureLog(slog.LevelDebug)
	b := setup(t, func(d *httpserver.Deps) { d.Logger = log })
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, _ := do(t, http.MethodGet, b.srv.URL+path, "", nil)
		m := lines.access(t, resp.Header.Get("X-Request-Id"))
		require.Equal(t, "DEBUG", m["level"], path)
		require.Equal(t, path, m["route"])
	}
}

// An incoming X-Request-Id is kept only from a trusted proxy, and only when
// it is short printable ASCII.
func TestRequestIDFromTrustedProxyOnly(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		trusted []netip.Prefix
		sent    string
		kept    bool
	}{
		{"untrusted peer", nil, "abc-123", false},
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "abc-123", true},
		{"trusted proxy, a space", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "abc 123", false},
		{"trusted proxy, too long", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, strings.Repeat("a", 129), false},
		{"trusted proxy, 128 bytes", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, strings.Repeat("a", 128), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			log, lines := captureLog(slog.LevelInfo)
			b := setup(t, func(d *httpserver.Deps) { d.Logger, d.TrustedProxies = log, c.trusted })
			resp, _ := do(t, http.MethodGet, b.srv.URL+"/api/v1/tags", "", map[string]string{"X-Request-Id": c.sent})
			id := resp.Header.Get("X-Request-Id")
			if c.kept {
				require.Equal(t, c.sent, id)
			} else {
				require.Regexp(t, `^[0-9a-f]{32}$`, id)
			}
			require.Equal(t, 401.0, lines.access(t, id)["status"])
		})
	}
}
