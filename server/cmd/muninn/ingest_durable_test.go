package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/pgembed"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

// TestMain lets a test run this package's main as a child process (`muninn
// serve` that a test can kill -9): with MUNINN_TEST_MAIN_ARGS set, the test
// binary is muninn with those arguments.
func TestMain(m *testing.M) {
	if args := os.Getenv("MUNINN_TEST_MAIN_ARGS"); args != "" {
		os.Args = append([]string{"muninn"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const durableToken = "durable-test-admin-token-0123456789"

// ingestStream posts requests of per lines (distinct /32s numbered from 1)
// one after another until stop is closed, and records which addresses were
// acknowledged: every line of a 200, and the lines before stopped_at_line of
// a 503 (none of it when the 503 came before the body was read). Any other
// answer is a test failure; a transport error (the server
// died) ends the stream. It runs on its own goroutine: failures are
// reported with t.Errorf.
type ingestStream struct {
	mu      sync.Mutex
	acked   []netip.Prefix
	oks     int
	errs503 int
	next    int
}

func durableAddr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
}

func (s *ingestStream) okCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oks
}

func (s *ingestStream) run(t *testing.T, base string, per int, stop <-chan struct{}) {
	client := &http.Client{Timeout: time.Minute}
	for {
		select {
		case <-stop:
			return
		default:
		}
		first := s.next + 1
		var body strings.Builder
		for i := first; i < first+per; i++ {
			fmt.Fprintf(&body, `{"ip":"%s","source":"durable","tags":["scanner"]}`+"\n", durableAddr(i).Addr())
		}
		s.next += per
		req, err := http.NewRequest(http.MethodPost, base+"/api/v1/ingest", strings.NewReader(body.String()))
		if err != nil {
			t.Error(err)
			return
		}
		req.Header.Set("Authorization", "Bearer "+durableToken)
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := client.Do(req)
		if err != nil {
			return
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return
		}
		s.mu.Lock()
		switch resp.StatusCode {
		case http.StatusOK:
			for i := first; i < first+per; i++ {
				s.acked = append(s.acked, durableAddr(i))
			}
			s.oks++
		case http.StatusServiceUnavailable:
			var p struct {
				StoppedAtLine int `json:"stopped_at_line"`
			}
			// Without stopped_at_line (the credential could not be checked)
			// nothing of the request was stored.
			p.StoppedAtLine = 1
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" || json.Unmarshal(raw, &p) != nil || p.StoppedAtLine < 1 {
				s.mu.Unlock()
				t.Errorf("ingest: HTTP 503 with %s: %s", ct, raw)
				return
			}
			for i := first; i < first+p.StoppedAtLine-1; i++ {
				s.acked = append(s.acked, durableAddr(i))
			}
			s.errs503++
		default:
			s.mu.Unlock()
			t.Errorf("ingest: HTTP %d: %s", resp.StatusCode, raw)
			return
		}
		s.mu.Unlock()
	}
}

// requireStored merges what is left in the observation log and checks that
// every acknowledged prefix is stored.
func requireStored(t *testing.T, url string, acked []netip.Prefix) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, url, 4, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.Flush(ctx))
	found := map[netip.Prefix]bool{}
	require.NoError(t, st.LoadPrefixes(ctx, time.Now(), acked, func(p resolve.Prefix) error {
		found[p.Prefix] = true
		return nil
	}))
	missing := 0
	for _, p := range acked {
		if !found[p] {
			missing++
		}
	}
	require.Zero(t, missing, "of %d acknowledged observations, %d are not stored", len(acked), missing)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// childServe starts `muninn serve` (this test binary, see TestMain) on
// dbURL, with env (NAME=value) added, and returns once /readyz answers 200.
func childServe(t *testing.T, dbURL, addr string, env ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "MUNINN_TEST_MAIN_ARGS=serve", "MUNINN_DATABASE_URL="+dbURL, "MUNINN_LISTEN="+addr,
		"MUNINN_ADMIN_TOKEN="+durableToken, "MUNINN_DATA_DIR="+t.TempDir(), "MUNINN_WORKERS=false")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitReady(t, "http://"+addr)
	return cmd
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "serve at %s did not become ready: %v", base, err)
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestIngestSurvivesKill9: `muninn serve` is killed with SIGKILL while a
// client streams ingest requests; after a restart every observation it
// acknowledged is stored, and the restarted server answers lookups for them.
func TestIngestSurvivesKill9(t *testing.T) {
	t.Parallel()
	ingestSurvivesKill9(t)
}

// TestIngestSurvivesKill9AnsweredWhenDurable is TestIngestSurvivesKill9 with
// answers that do not wait for the merge (MUNINN_INGEST_VISIBLE_WITHIN): the
// server dies with acknowledged observations still in the log, unmerged.
func TestIngestSurvivesKill9AnsweredWhenDurable(t *testing.T) {
	t.Parallel()
	ingestSurvivesKill9(t, "MUNINN_INGEST_VISIBLE_WITHIN=1h")
}

func ingestSurvivesKill9(t *testing.T, env ...string) {
	url := storetest.URL(t)
	addr := freeAddr(t)
	cmd := childServe(t, url, addr, env...)
	var s ingestStream
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); s.run(t, "http://"+addr, 2000, stop) }()
	deadline := time.Now().Add(time.Minute)
	for s.okCount() < 3 {
		require.True(t, time.Now().Before(deadline), "no acknowledgements")
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	<-done
	close(stop)
	require.GreaterOrEqual(t, len(s.acked), 3*2000)

	childServe(t, url, addr, env...)
	requireStored(t, url, s.acked)
	// The restarted server's index sees them too.
	last := s.acked[len(s.acked)-1].Addr().String()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/ips/"+last, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+durableToken)
	for {
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var v struct {
			Sources []string `json:"sources"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
		resp.Body.Close()
		if len(v.Sources) > 0 {
			require.Equal(t, []string{"ingest:durable"}, v.Sources)
			break
		}
		require.True(t, time.Now().Before(deadline.Add(time.Minute)), "the restarted server never showed %s", last)
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestIngestSurvivesPostgresRestart: PostgreSQL (a throwaway cluster) is
// stopped and started again while a client streams ingest requests to
// serve. Requests during the outage are answered 503 problem+json saying how
// far they were stored; every observation acknowledged (200, or before the
// 503's stopped_at_line) is stored once PostgreSQL is back.
func TestIngestSurvivesPostgresRestart(t *testing.T) {
	t.Parallel()
	ingestSurvivesPostgresRestart(t, nil)
}

// TestIngestSurvivesPostgresRestartAnsweredWhenDurable is
// TestIngestSurvivesPostgresRestart with answers that do not wait for the
// merge (MUNINN_INGEST_VISIBLE_WITHIN): merges fail during the outage, the
// lag grows past the bound and answers wait (and fail with 503) again.
func TestIngestSurvivesPostgresRestartAnsweredWhenDurable(t *testing.T) {
	t.Parallel()
	ingestSurvivesPostgresRestart(t, map[string]string{"MUNINN_INGEST_VISIBLE_WITHIN": "1s"})
}

func ingestSurvivesPostgresRestart(t *testing.T, extra map[string]string) {
	dir := embeddedDataDir(t)
	ctx := context.Background()
	cl, err := pgembed.Start(ctx, pgembed.Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Stop(context.Background()) })
	env := map[string]string{"MUNINN_DATABASE_URL": cl.URL(), "MUNINN_LISTEN": "127.0.0.1:0",
		"MUNINN_ADMIN_TOKEN": durableToken, "MUNINN_DATA_DIR": t.TempDir(), "MUNINN_WORKERS": "false"}
	maps.Copy(env, extra)
	srv := startServe(t, env)
	var s ingestStream
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); s.run(t, "http://"+srv.addr, 2000, stop) }()
	deadline := time.Now().Add(2 * time.Minute)
	waitOKs := func(n int) {
		for s.okCount() < n {
			require.True(t, time.Now().Before(deadline), "stuck at %d acknowledgements", s.okCount())
			time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
		}
	}
	waitOKs(3)
	require.NoError(t, cl.Stop(ctx))
	cl, err = pgembed.Start(ctx, pgembed.Options{Dir: dir})
	require.NoError(t, err)
	waitOKs(s.okCount() + 3)
	close(stop)
	<-done
	t.Logf("%d acknowledged, %d answers 503 during the restart", len(s.acked), s.errs503)
	requireStored(t, cl.URL(), s.acked)
}
