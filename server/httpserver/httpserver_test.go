package httpserver_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

type bundle struct {
	srv   *httptest.Server
	st    *store.Store
	reg   *prometheus.Registry
	admin string
}

func setup(t *testing.T, tweak func(*httpserver.Deps)) *bundle {
	t.Helper()
	st := storetest.Store(t)
	log := slog.New(slog.DiscardHandler)
	ix := indextest.Start(t, st, log, nil)
	reg := prometheus.NewRegistry()
	d := httpserver.Deps{Store: st, Index: ix, Logger: log, Now: time.Now, Registry: reg, MaxIngestBytes: 1 << 20}
	if tweak != nil {
		tweak(&d)
	}
	h, err := httpserver.New(d)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, secret, err := api.CreateToken(context.Background(), st, "t-admin", api.RoleAdmin, nil, "test")
	require.NoError(t, err)
	return &bundle{srv: srv, st: st, reg: reg, admin: secret}
}

func (b *bundle) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(b.srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// 3,000 random methods grew /metrics from 167 KB to 6.7 MB; every method
// outside HTTP's own is now counted as OTHER.
func TestMethodLabelIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for i := range 50 {
		req, err := http.NewRequest(fmt.Sprintf("RANDOM%d", i), b.srv.URL+"/healthz", nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	status, body := b.get(t, "/metrics")
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, body, `method="RANDOM`)
	require.Contains(t, body, `muninn_http_request_duration_seconds_count{method="OTHER",route="unmatched",status="405"} 50`)
}

type failingCollector struct{ desc *prometheus.Desc }

func (c failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.desc, fmt.Errorf("the database stalls"))
}

// /metrics answered 500 when the database stalled, losing every metric.
func TestMetricsSurviveAFailingCollector(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.reg.MustRegister(failingCollector{prometheus.NewDesc("muninn_test_failing", "Fails.", nil, nil)})
	b.get(t, "/healthz")
	status, body := b.get(t, "/metrics")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `muninn_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"} 1`)
}

// /readyz showed the database's own error (user, database, socket path) to
// anyone.
func TestReadyzSaysOnlyWhatIsNotReady(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	status, body := b.get(t, "/readyz")
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"database":"ok","schema":"ok"}`, body)
	b.st.Close()
	status, body = b.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.JSONEq(t, `{"database":"unreachable","schema":"unknown"}`, body)
}

// A body that stops coming used to hold its connection forever.
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *httpserver.Deps) { d.ReadTimeout = 200 * time.Millisecond })
	conn, err := net.Dial("tcp", b.srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "PUT /api/v1/tags/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"descr", b.admin)
	require.NoError(t, err)
	// A safety net for the test, not a measurement: the server answers or
	// hangs up long before it.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	_, err = io.ReadAll(conn)
	require.NoError(t, err, "the server closed the connection")
}

// Ingest's deadline moves while bytes keep coming: a body that takes longer
// than the read timeout in all, but never stalls that long, is read whole.
func TestIngestDeadlineExtendsWhileBytesFlow(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *httpserver.Deps) { d.ReadTimeout = time.Second })
	_, writer, err := api.CreateToken(context.Background(), b.st, "t-writer", api.RoleWriter, nil, "test")
	require.NoError(t, err)
	pr, pw := io.Pipe()
	go func() {
		tick := time.NewTicker(100 * time.Millisecond) // pacing: 30 lines over 3 s
		defer tick.Stop()
		for i := range 30 {
			<-tick.C
			if _, err := fmt.Fprintf(pw, `{"ip":"198.51.100.%d","tags":["slow"]}`+"\n", i+1); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/api/v1/ingest", pr)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+writer)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.JSONEq(t, `{"accepted":30,"rejected":0,"errors":[]}`, string(body))
}

// One client may hold at most perClient connections; closing one frees its
// slot.
func TestLimitListener(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := httpserver.LimitListener(raw, 2)
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	s1 := <-accepted
	dial()
	<-accepted
	third := dial()
	// The third is closed by the server as soon as it is accepted.
	require.NoError(t, third.SetReadDeadline(time.Now().Add(30*time.Second)))
	n, err := bufio.NewReader(third).ReadByte()
	require.ErrorIs(t, err, io.EOF, "read %v", n)
	require.NoError(t, s1.Close())
	dial()
	s4 := <-accepted
	require.NotNil(t, s4)
	require.True(t, strings.HasPrefix(s4.RemoteAddr().String(), "127.0.0.1:"))
}
