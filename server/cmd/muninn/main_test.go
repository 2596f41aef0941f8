package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/server/config"
	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/pgembed"
	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/muninn/muninn/server/ui"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestTokenCommands(t *testing.T) {
	t.Parallel()
	env := envOf(map[string]string{"MUNINN_DATABASE_URL": storetest.URL(t), "MUNINN_LOG_LEVEL": "error"})
	ctx := context.Background()
	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"token", "create", "pipeline", "--role", "writer"}, env, &out, &out))
	require.True(t, strings.HasPrefix(out.String(), "mnn_"))
	require.ErrorContains(t, run(ctx, []string{"token", "create", "pipeline", "--role", "writer"}, env, &out, &out), "exists already")
	require.ErrorContains(t, run(ctx, []string{"token", "create", "x", "--role", "root"}, env, &out, &out), "--role")
	out.Reset()
	require.NoError(t, run(ctx, []string{"token", "list"}, env, &out, &out))
	require.Contains(t, out.String(), "pipeline\twriter")
	require.NoError(t, run(ctx, []string{"token", "revoke", "pipeline"}, env, &out, &out))
	out.Reset()
	require.NoError(t, run(ctx, []string{"token", "list"}, env, &out, &out))
	require.NotContains(t, out.String(), "pipeline")
	require.ErrorContains(t, run(ctx, []string{"token", "revoke", "pipeline"}, env, &out, &out), "no token")
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"--help"}, {"serve", "--help"}, {"token", "-h"}, {"migrate", "--help"}, {"version"}} {
		var out bytes.Buffer
		require.NoError(t, run(context.Background(), args, envOf(nil), &out, &out), "%v", args)
		require.NotEmpty(t, out.String())
	}
	require.Error(t, run(context.Background(), []string{"frobnicate"}, envOf(nil), &bytes.Buffer{}, &bytes.Buffer{}))
}

func TestBootstrapToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("generated and shown once", func(t *testing.T) {
		t.Parallel()
		st := storetest.Store(t)
		cfg := config.Config{DataDir: t.TempDir()}
		hint, err := bootstrapToken(ctx, st, cfg)
		require.NoError(t, err)
		secret, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin-token"))
		require.NoError(t, err)
		require.Contains(t, hint, strings.TrimSpace(string(secret)), "the first start shows the token")
		hint, err = bootstrapToken(ctx, st, cfg)
		require.NoError(t, err)
		require.NotContains(t, hint, strings.TrimSpace(string(secret)), "later starts do not")
	})
	t.Run("from MUNINN_ADMIN_TOKEN", func(t *testing.T) {
		t.Parallel()
		st := storetest.Store(t)
		cfg := config.Config{DataDir: t.TempDir(), AdminToken: "mnn_operator_chosen_secret_value"}
		hint, err := bootstrapToken(ctx, st, cfg)
		require.NoError(t, err)
		require.NotContains(t, hint, cfg.AdminToken)
		tok, err := st.TokenByHash(ctx, store.HashSecret(cfg.AdminToken))
		require.NoError(t, err)
		require.Equal(t, "admin", tok.Role)
		require.NoFileExists(t, filepath.Join(cfg.DataDir, "admin-token"))
	})
}

// TestAdminCommandsOnEmbeddedDatabase runs an admin command on the embedded
// cluster while it is stopped (the command starts and stops it) and while a
// server owns it (the command connects to its socket and leaves it running).
func TestAdminCommandsOnEmbeddedDatabase(t *testing.T) {
	if _, err := pgembed.FindBinDir(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run this: make deps installs PostgreSQL: %v", err)
		}
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	dir, err := os.MkdirTemp("", "muninn-cli-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755)) // the postgres user must reach it when we run as root
	t.Cleanup(func() { os.RemoveAll(dir) })
	env := envOf(map[string]string{"MUNINN_DATA_DIR": dir, "MUNINN_LOG_LEVEL": "error"})
	ctx := context.Background()
	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"token", "create", "offline", "--role", "reader"}, env, &out, &out))
	_, running := pgembed.RunningURL(dir)
	require.False(t, running, "the command stopped the cluster it started")

	// Own it as serve does: the lock, then the cluster.
	lock, err := pgembed.LockDataDir(dir, "muninn serve")
	require.NoError(t, err)
	t.Cleanup(func() { _ = lock.Release() })
	cl, err := pgembed.Start(ctx, pgembed.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Stop(context.Background()) })
	out.Reset()
	require.NoError(t, run(ctx, []string{"token", "list"}, env, &out, &out))
	require.Contains(t, out.String(), "offline")
	_, running = pgembed.RunningURL(dir)
	require.True(t, running, "the command left the server's cluster running")
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// served is a `muninn serve` running in the test process.
type served struct {
	addr string
	hub  *render.Hub
	// scheme and client reach it: http and http.DefaultClient unless a test
	// sets them (TLS).
	scheme string
	client *http.Client
	stop   func() (error, time.Duration) // cancels serve, waits, returns its result once
}

// startServe runs serve on env until the test ends (or stop) and returns once
// it answers.
func startServe(t *testing.T, env map[string]string) *served {
	t.Helper()
	cfg, err := config.FromEnv(envOf(env))
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{scheme: "http", client: http.DefaultClient}
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- serve(ctx, cfg, log, io.Discard, serveOptions{http: true, started: func(a net.Addr, h *render.Hub) {
			s.addr, s.hub = a.String(), h
			close(started)
		}})
	}()
	var once sync.Once
	var res error
	var took time.Duration
	s.stop = func() (error, time.Duration) {
		once.Do(func() {
			start := time.Now()
			cancel()
			res = <-errc
			took = time.Since(start)
		})
		return res, took
	}
	t.Cleanup(func() { _, _ = s.stop() })
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("serve ended before it answered: %v", err)
	}
	return s
}

// call sends one request to the served process and returns status and body.
func (s *served) call(t *testing.T, method, path string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.scheme+"://"+s.addr+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// embeddedDataDir is a data dir the postgres user can reach when the tests
// run as root (t.TempDir's parents are 0700).
func embeddedDataDir(t *testing.T) string {
	t.Helper()
	if _, err := pgembed.FindBinDir(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run this: make deps installs PostgreSQL: %v", err)
		}
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	dir, err := os.MkdirTemp("", "muninn-cli-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func postmasterPID(t *testing.T, dir string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "pg", "data", "postmaster.pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.SplitN(string(raw), "\n", 2)[0])
	require.NoError(t, err)
	return pid
}

// TestSecondServeOnSameDataDir: a second serve or worker on the data dir of a
// running serve refuses at once, naming the first one's pid, and leaves its
// embedded PostgreSQL alone; then the first one's PostgreSQL is killed and
// the supervisor brings it back, which /readyz reflects.
func TestSecondServeOnSameDataDir(t *testing.T) {
	t.Parallel()
	dir := embeddedDataDir(t)
	env := map[string]string{"MUNINN_DATA_DIR": dir, "MUNINN_LISTEN": "127.0.0.1:0", "MUNINN_WORKERS": "false",
		"MUNINN_RDAP": "false", "MUNINN_RDNS": "false", "MUNINN_LOG_LEVEL": "error",
		"MUNINN_ADMIN_TOKEN": "mnn_test_admin_token_0123456789"}
	first := startServe(t, env)
	pid := postmasterPID(t, dir)
	code, body := first.call(t, http.MethodGet, "/readyz", nil, "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"database":"ok","schema":"ok"}`, body)

	want := "pgembed: the data dir " + dir + " is in use by another muninn (pid " + strconv.Itoa(os.Getpid()) +
		", muninn serve), which owns its embedded PostgreSQL: stop it first, or give this one another MUNINN_DATA_DIR; nothing was changed"
	for _, cmd := range []string{"serve", "worker"} {
		var out bytes.Buffer
		err := run(context.Background(), []string{cmd}, envOf(env), &out, &out)
		require.EqualError(t, err, want, cmd)
		require.Empty(t, out.String(), "%s printed nothing", cmd)
	}
	require.Equal(t, pid, postmasterPID(t, dir), "the embedded PostgreSQL was not restarted")
	code, body = first.call(t, http.MethodGet, "/readyz", nil, "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"database":"ok","schema":"ok"}`, body)

	// An admin command still works through the running cluster.
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"token", "list"}, envOf(env), &out, &out))
	require.Contains(t, out.String(), "\tadmin\tadmin\t")

	// Kill the postmaster: the supervisor starts a new one and /readyz is
	// ready again, on the same data.
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.Eventually(t, func() bool {
		raw, err := os.ReadFile(filepath.Join(dir, "pg", "data", "postmaster.pid"))
		if err != nil || strings.HasPrefix(string(raw), strconv.Itoa(pid)+"\n") {
			return false
		}
		code, _ := first.call(t, http.MethodGet, "/readyz", nil, "")
		return code == http.StatusOK
	}, 2*time.Minute, 50*time.Millisecond)
	code, body = first.call(t, http.MethodGet, "/api/v1/tokens", map[string]string{"Authorization": "Bearer " + env["MUNINN_ADMIN_TOKEN"]}, "")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"name":"admin"`)

	err, took := first.stop()
	require.NoError(t, err)
	t.Logf("shutdown took %v", took)
	_, running := pgembed.RunningURL(dir)
	require.False(t, running, "serve stopped its cluster on the way out")
	// The lock is free again.
	l, err := pgembed.LockDataDir(dir, "test")
	require.NoError(t, err)
	require.NoError(t, l.Release())
}

// TestShutdownWithParkedLongPolls: SIGTERM (here: the context) with bouncer
// and ruleset long polls parked ends serve without error, the polls
// answering 304 at once rather than at their 5-minute deadline.
func TestShutdownWithParkedLongPolls(t *testing.T) {
	t.Parallel()
	const admin = "mnn_test_admin_token_0123456789"
	s := startServe(t, map[string]string{"MUNINN_DATABASE_URL": storetest.URL(t), "MUNINN_DATA_DIR": t.TempDir(),
		"MUNINN_LISTEN": "127.0.0.1:0", "MUNINN_WORKERS": "true", "MUNINN_RDAP": "false", "MUNINN_RDNS": "false",
		"MUNINN_ADMIN_TOKEN": admin})
	auth := map[string]string{"Authorization": "Bearer " + admin}
	code, body := s.call(t, http.MethodPut, "/api/v1/rulesets/edge", map[string]string{"Authorization": "Bearer " + admin, "Content-Type": "text/plain"},
		"ruleset edge\n  hook input\n  scope tcp dport 22\n  block tag scanner\n")
	require.Equal(t, http.StatusCreated, code, body)
	code, body = s.call(t, http.MethodPost, "/api/v1/bouncers", map[string]string{"Authorization": "Bearer " + admin, "Content-Type": "application/json"},
		`{"name":"fw1","rulesets":["edge"]}`)
	require.Equal(t, http.StatusCreated, code, body)
	var created struct{ Key string }
	require.NoError(t, json.Unmarshal([]byte(body), &created))
	code, body = s.call(t, http.MethodGet, "/api/v1/rulesets/edge/render", auth, "")
	require.Equal(t, http.StatusOK, code, body)
	var rendered struct{ Version int64 }
	require.NoError(t, json.Unmarshal([]byte(body), &rendered))
	v := strconv.FormatInt(rendered.Version, 10)

	type result struct {
		code int
		took time.Duration
	}
	const polls = 4
	results := make(chan result, polls)
	poll := func(path string, hdr map[string]string) {
		start := time.Now()
		code, _ := s.call(t, http.MethodGet, path, hdr, "")
		results <- result{code, time.Since(start)}
	}
	for range polls / 2 {
		go poll("/api/v1/bouncer/render?wait=5m&since="+url.QueryEscape(`{"edge":`+v+`}`), map[string]string{"X-Api-Key": created.Key})
		go poll("/api/v1/rulesets/edge/render?wait=5m&since="+v, auth)
	}
	require.Eventually(t, func() bool { return s.hub.Parked() == polls }, time.Minute, 10*time.Millisecond)

	err, took := s.stop()
	require.NoError(t, err, "serve ends without error with long polls parked")
	t.Logf("shutdown with %d parked long polls took %v", polls, took)
	for range polls {
		r := <-results
		require.Equal(t, http.StatusNotModified, r.code)
		require.Less(t, r.took, 4*time.Minute, "the poll ended because of the shutdown, not its 5-minute deadline")
	}
}

// TestUserCommands: list, passwd, role, disable, enable, delete; a changed
// password, a disabled or a deleted user ends the user's sessions at once (the
// UI's session check is store.SessionByHash), and a deleted name can be
// created again.
func TestUserCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := storetest.URL(t)
	cfg, err := config.FromEnv(envOf(map[string]string{"MUNINN_DATABASE_URL": dbURL}))
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(ctx, dbURL, 4, log)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	cmd := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		err := user(ctx, cfg, log, args, strings.NewReader(stdin), &out)
		return out.String(), err
	}
	login := func(secret string) {
		t.Helper()
		u, err := st.UserByName(ctx, "alice")
		require.NoError(t, err)
		now := time.Now()
		require.NoError(t, st.CreateSession(ctx, store.HashSecret(secret), u.ID, "csrf", now, now.Add(time.Hour), "192.0.2.1", "test"))
	}
	session := func(secret string) (store.Session, error) {
		return st.SessionByHash(ctx, store.HashSecret(secret), time.Now())
	}

	out, err := cmd("correct horse battery\n", "create", "alice", "--role", "writer")
	require.NoError(t, err)
	require.Equal(t, "created user alice (writer); log in at http://127.0.0.1:8080/ui/\n", out)
	login("s1")
	out, err = cmd("", "list")
	require.NoError(t, err)
	us, err := st.Users(ctx)
	require.NoError(t, err)
	require.Len(t, us, 1)
	require.Equal(t, "alice\twriter\tactive\tcreated "+us[0].CreatedAt.UTC().Format(time.RFC3339)+"\tlast login "+us[0].LastLoginAt.UTC().Format(time.RFC3339)+"\n", out)

	out, err = cmd("", "role", "alice", "admin")
	require.NoError(t, err)
	require.Equal(t, "alice is now admin\n", out)
	s, err := session("s1")
	require.NoError(t, err, "a role change keeps the session")
	require.Equal(t, "admin", s.User.Role, "and applies to it at once")

	out, err = cmd("a new long password\n", "passwd", "alice")
	require.NoError(t, err)
	require.Equal(t, "changed the password of alice; their sessions have ended\n", out)
	_, err = session("s1")
	require.ErrorIs(t, err, store.ErrNotFound)
	u, err := st.UserByName(ctx, "alice")
	require.NoError(t, err)
	require.True(t, ui.CheckPassword(u.PasswordHash, "a new long password"))

	login("s2")
	out, err = cmd("", "disable", "alice")
	require.NoError(t, err)
	require.Equal(t, "disabled alice; their sessions have ended\n", out)
	_, err = session("s2")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = st.UserByName(ctx, "alice")
	require.ErrorIs(t, err, store.ErrNotFound, "a disabled user cannot log in")
	out, err = cmd("", "list")
	require.NoError(t, err)
	require.Regexp(t, `^alice\tadmin\tdisabled since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\tcreated `, out)

	out, err = cmd("", "enable", "alice")
	require.NoError(t, err)
	require.Equal(t, "enabled alice\n", out)
	login("s3")
	_, err = session("s3")
	require.NoError(t, err)
	out, err = cmd("", "delete", "alice")
	require.NoError(t, err)
	require.Equal(t, "deleted alice and their sessions\n", out)
	_, err = session("s3")
	require.ErrorIs(t, err, store.ErrNotFound)
	out, err = cmd("", "list")
	require.NoError(t, err)
	require.Empty(t, out)
	out, err = cmd("correct horse battery\n", "create", "alice", "--role", "reader")
	require.NoError(t, err, "a deleted user's name can be used again")
	require.Equal(t, "created user alice (reader); log in at http://127.0.0.1:8080/ui/\n", out)

	_, err = cmd("", "role", "bob", "admin")
	require.EqualError(t, err, `user role: no user named "bob"`)
	_, err = cmd("", "delete", "bob")
	require.EqualError(t, err, `user delete: no user named "bob"`)
	_, err = cmd("", "role", "alice", "root")
	require.EqualError(t, err, `user role: the role must be reader, writer or admin, not "root"`)
	_, err = cmd("short\n", "passwd", "alice")
	require.EqualError(t, err, "user passwd: the password on stdin must be at least 8 characters")
	_, err = cmd("", "frobnicate")
	require.ErrorContains(t, err, `user: unknown subcommand "frobnicate"`)

	// Every change is in the audit log.
	rows, err := st.Pool().Query(ctx, `SELECT action FROM audit WHERE object LIKE 'user/%' ORDER BY id`)
	require.NoError(t, err)
	actions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"user.create", "user.role", "user.password", "user.disable", "user.enable", "user.delete", "user.create"}, actions)
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "muninn test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for 127.0.0.1 with serial to certFile and its key
// to keyFile, with modification time mod.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string, mod time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	require.NoError(t, os.Chtimes(certFile, mod, mod))
	require.NoError(t, os.Chtimes(keyFile, mod, mod))
}

// servedSerial opens a new TLS connection and returns the serial number of
// the certificate the server presents.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	require.NoError(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestTLSServeAndBouncerCA: serve speaks HTTPS with MUNINN_TLS_CERT/KEY; a
// bouncer client trusting the test CA (its ca_file) syncs, one without it is
// refused; a renewed certificate is served without a restart, and a broken
// renewal keeps the previous one.
func TestTLSServeAndBouncerCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca := newTestCA(t)
	require.NoError(t, os.WriteFile(caFile, ca.pem, 0o644))
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	ca.issue(t, 10, certFile, keyFile, start)

	const admin = "mnn_test_admin_token_0123456789"
	s := startServe(t, map[string]string{"MUNINN_DATABASE_URL": storetest.URL(t), "MUNINN_DATA_DIR": t.TempDir(),
		"MUNINN_LISTEN": "127.0.0.1:0", "MUNINN_WORKERS": "false", "MUNINN_RDAP": "false", "MUNINN_RDNS": "false",
		"MUNINN_ADMIN_TOKEN": admin, "MUNINN_TLS_CERT": certFile, "MUNINN_TLS_KEY": keyFile})
	hc, err := bouncer.HTTPClient(caFile)
	require.NoError(t, err)
	s.scheme, s.client = "https", hc
	code, body := s.call(t, http.MethodPut, "/api/v1/rulesets/edge", map[string]string{"Authorization": "Bearer " + admin, "Content-Type": "text/plain"},
		"ruleset edge\n  hook input\n  scope tcp dport 22\n  block tag scanner\n")
	require.Equal(t, http.StatusCreated, code, body)
	code, body = s.call(t, http.MethodPost, "/api/v1/bouncers", map[string]string{"Authorization": "Bearer " + admin, "Content-Type": "application/json"},
		`{"name":"fw1","rulesets":["edge"]}`)
	require.Equal(t, http.StatusCreated, code, body)
	var created struct{ Key string }
	require.NoError(t, json.Unmarshal([]byte(body), &created))

	// The bouncer with the CA syncs (waiting up to 20 s for the first render).
	c := bouncer.NewClient("https://"+s.addr, created.Key, hc)
	ctx := t.Context()
	resp, notModified, err := c.Render(ctx, map[string]int64{"edge": 0}, 20*time.Second)
	require.NoError(t, err)
	require.False(t, notModified)
	require.Len(t, resp.Rulesets, 1)
	require.Equal(t, "edge", resp.Rulesets[0].Ruleset)
	require.NoError(t, c.Heartbeat(ctx, bouncer.Heartbeat{Hostname: "fw1", Version: "test", Applied: map[string]int64{"edge": resp.Rulesets[0].Version}}))

	// Without it, the server's certificate is not trusted.
	plain, err := bouncer.HTTPClient("")
	require.NoError(t, err)
	_, _, err = bouncer.NewClient("https://"+s.addr, created.Key, plain).Render(ctx, nil, 0)
	var unknown x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknown)
	_, err = bouncer.HTTPClient(keyFile)
	require.EqualError(t, err, "bouncer: ca file "+keyFile+": no PEM certificate in it")

	// Renewal: new files, newer mtime: the next handshake gets the new certificate.
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	require.Equal(t, int64(10), servedSerial(t, s.addr, roots))
	ca.issue(t, 11, certFile, keyFile, start.Add(time.Minute))
	require.Equal(t, int64(11), servedSerial(t, s.addr, roots))
	// A broken renewal (half-written file) keeps the previous certificate.
	require.NoError(t, os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ntruncated"), 0o644))
	require.NoError(t, os.Chtimes(certFile, start.Add(2*time.Minute), start.Add(2*time.Minute)))
	require.Equal(t, int64(11), servedSerial(t, s.addr, roots))
	ca.issue(t, 12, certFile, keyFile, start.Add(3*time.Minute))
	require.Equal(t, int64(12), servedSerial(t, s.addr, roots))

	err, _ = s.stop()
	require.NoError(t, err)
}

func TestTLSConfig(t *testing.T) {
	t.Parallel()
	_, err := config.FromEnv(envOf(map[string]string{"MUNINN_TLS_CERT": "/etc/muninn/cert.pem"}))
	require.EqualError(t, err, "config: MUNINN_TLS_CERT and MUNINN_TLS_KEY: set both (PEM files) or neither")
	cfg, err := config.FromEnv(envOf(map[string]string{"MUNINN_TLS_CERT": "/etc/muninn/cert.pem", "MUNINN_TLS_KEY": "/etc/muninn/key.pem", "MUNINN_LISTEN": "0.0.0.0:8443"}))
	require.NoError(t, err)
	require.Equal(t, "https://0.0.0.0:8443", cfg.BaseURL)
	_, err = httpserver.NewCertReloader("/nonexistent/cert.pem", "/nonexistent/key.pem", slog.New(slog.DiscardHandler))
	require.EqualError(t, err, "httpserver: tls: certificate: stat /nonexistent/cert.pem: no such file or directory")
}

// A flow setting's mistake is reported before any database is opened (the
// URL below leads nowhere: reaching it would be a different error).
func TestFlowConfigCheckedFirst(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"flows"}, map[string]string{"MUNINN_FLOW_LISTEN": "ipfix://:2055"}, "config: MUNINN_FLOW_LISTEN"},
		{[]string{"flows"}, map[string]string{"MUNINN_FLOW_CLICKHOUSE_URL": "ftp://clickhouse:9000/db"}, "config: MUNINN_FLOW_CLICKHOUSE_*"},
		{[]string{"flows"}, map[string]string{"MUNINN_FLOW_CLICKHOUSE_URL": "clickhouse://clickhouse:9000/db", "MUNINN_FLOW_CLICKHOUSE_TABLE": "a;b"}, "config: MUNINN_FLOW_CLICKHOUSE_*"},
		{[]string{"serve"}, map[string]string{"MUNINN_FLOW_LISTEN": "netflow://2055"}, "config: MUNINN_FLOW_LISTEN"},
	} {
		env := map[string]string{"MUNINN_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", "MUNINN_DATA_DIR": t.TempDir()}
		for k, v := range c.env {
			env[k] = v
		}
		err := run(context.Background(), c.args, envOf(env), &bytes.Buffer{}, &bytes.Buffer{})
		require.ErrorContains(t, err, c.want, "%v %v", c.args, c.env)
	}
}
