//go:build linux

package docker

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
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/muninn/muninn/bouncer/nft/netnstest"
	"github.com/muninn/muninn/server/store/storetest"
)

// capNetAdmin is CAP_NET_ADMIN's bit in /proc/PID/status masks.
const capNetAdmin = 1 << 12

// TestUnitsRunAsDocumented installs both services the way README.md says
// (files with exactly the owners and modes of its "Files and permissions"
// table; the bouncer through docker/install-bouncer.sh), then runs each unit's
// ExecStart as systemd would (see emulate: its user, capabilities, state
// directory, credentials and environment file, chrooted into the emulated
// host, inside a network namespace the test creates): muninn serve with
// native TLS on a test database, then the bouncer against it. The bouncer must
// enforce the ruleset in nftables, report its version and keep its state; both
// must stop with exit 0 on SIGTERM. A variant of the bouncer unit that reads
// the root-only key itself (the old DynamicUser unit) must fail with
// "permission denied", which shows the emulation catches the mistake.
func TestUnitsRunAsDocumented(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t)
	bin := buildBinaries(t, "1.4.0")
	files := readmeFiles(t)
	root := t.TempDir()
	require.NoError(t, os.Chmod(root, 0o755))
	ns := netnstest.New(t)
	serverUID, bouncerUID := unusedID(t, 64000), unusedID(t, 61184)
	ids := map[string]uint32{"root": 0, "muninn": serverUID}
	dbURL := forwardDatabase(t, ns, storetest.URL(t))
	caPEM, certPEM, keyPEM := testCertificate(t)

	// The server host, as the README's table says.
	place := func(path string, content []byte) {
		f, ok := files[path]
		require.True(t, ok, "README's files table lacks %s", path)
		placeDocumented(t, root, f, content, content == nil, ids)
	}
	place("/usr/local/bin/muninn", readFile(t, filepath.Join(bin, "muninn")))
	place("/etc/systemd/system/muninn.service", readFile(t, "muninn.service"))
	place("/etc/muninn", nil)
	place("/etc/muninn/muninn.env", []byte("# the operator's settings\nMUNINN_DATABASE_URL="+dbURL+
		"\nMUNINN_LISTEN=127.0.0.1:8443\nMUNINN_TLS_CERT=/etc/muninn/tls/cert.pem\nMUNINN_TLS_KEY=/etc/muninn/tls/key.pem\n"+
		"MUNINN_RDAP=false\nMUNINN_RDNS=false\nMUNINN_LOG_FORMAT=json\n"))
	place("/etc/muninn/tls", nil)
	place("/etc/muninn/tls/key.pem", keyPEM)
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/muninn/tls/cert.pem"), certPEM, 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "tmp"), 0o1777)) // PrivateTmp=yes gives it one

	srvUnit := emulate(t, filepath.Join(root, "etc/systemd/system/muninn.service"), root, serverUID)
	requireDocumented(t, root, files["/var/lib/muninn"], "muninn", "muninn", serverUID)
	srv := start(t, ns, srvUnit)
	srv.waitExec(t, "muninn")
	require.Equal(t, procStatus{uid: ids4(serverUID), gid: ids4(serverUID), noNewPrivs: true}, statusOf(t, srv.cmd.Process.Pid),
		"muninn serve runs as its user without any capability (CapabilityBoundingSet= empty) and with no_new_privs")

	api := &client{t: t, base: "https://127.0.0.1:8443", hc: nsClient(ns, caPEM)}
	waitFor(t, srv, 90*time.Second, "muninn serve ready", func() bool {
		status, _ := api.try("GET", "/readyz", "", "", nil)
		return status == http.StatusOK
	})
	// The first start kept the admin token where the README says, as it says.
	requireDocumented(t, root, files["/var/lib/muninn/admin-token"], "muninn", "muninn", serverUID)
	api.token = strings.TrimSpace(string(readFile(t, filepath.Join(root, "var/lib/muninn/admin-token"))))
	api.must("PUT", "/api/v1/rulesets/edge", "text/plain", "ruleset edge\n  hook input\n  scope tcp dport 22\n  block tag scanner\n", http.StatusCreated)
	api.must("POST", "/api/v1/ingest", "application/x-ndjson", `{"ip":"198.51.100.7","source":"test","tags":["scanner"]}`+"\n", http.StatusOK)
	var created struct{ Key string }
	require.NoError(t, json.Unmarshal(api.must("POST", "/api/v1/bouncers", "application/json", `{"name":"web1","rulesets":["edge"]}`, http.StatusCreated), &created))

	// The bouncer host: docker/install-bouncer.sh with the key on stdin.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, caPEM, 0o644))
	install := exec.Command("./install-bouncer.sh", "--server", "https://127.0.0.1:8443", "--ca-file", ca, "--binary", filepath.Join(bin, "muninn-bouncer"))
	install.Env = append(os.Environ(), "DESTDIR="+root)
	install.Stdin = strings.NewReader(created.Key + "\n")
	out, err := install.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "systemctl daemon-reload && systemctl enable --now muninn-bouncer")
	for _, p := range []string{"/usr/local/bin/muninn-bouncer", "/etc/systemd/system/muninn-bouncer.service", "/etc/muninn",
		"/etc/muninn/bouncer.yaml", "/etc/muninn/bouncer.key", "/etc/muninn/ca.pem"} {
		requireDocumented(t, root, files[p], "bouncer", "bouncer", bouncerUID)
	}
	require.Equal(t, created.Key+"\n", string(readFile(t, filepath.Join(root, "etc/muninn/bouncer.key"))))

	unitPath := filepath.Join(root, "etc/systemd/system/muninn-bouncer.service")
	bnc := emulate(t, unitPath, root, bouncerUID)
	requireDocumented(t, root, files["/var/lib/muninn-bouncer"], "bouncer", "bouncer", bouncerUID)
	b := start(t, ns, bnc)
	b.waitExec(t, "muninn-bouncer")
	require.Equal(t, procStatus{uid: ids4(bouncerUID), gid: ids4(bouncerUID), eff: capNetAdmin, prm: capNetAdmin, amb: capNetAdmin, bnd: capNetAdmin, noNewPrivs: true},
		statusOf(t, b.cmd.Process.Pid), "the bouncer runs as its dynamic user holding CAP_NET_ADMIN only, with no_new_privs")
	waitFor(t, b, 60*time.Second, "the bouncer applied edge and reported it", func() bool {
		var bs []struct {
			Name     string
			Version  string
			Rulesets []struct{ Applied, Current int64 }
		}
		_, body := api.try("GET", "/api/v1/bouncers", "", "", nil)
		if json.Unmarshal(body, &bs) != nil || len(bs) != 1 || len(bs[0].Rulesets) != 1 {
			return false
		}
		r := bs[0].Rulesets[0]
		return bs[0].Version == "1.4.0" && r.Current > 0 && r.Applied == r.Current
	})
	blocked := false
	for _, set := range ns.AddrSets(t, "table", "inet", "muninn") {
		blocked = blocked || set.Contains(netip.MustParseAddr("198.51.100.7"))
	}
	require.True(t, blocked, "198.51.100.7 is in a set of the bouncer's table")
	fi, err := os.Stat(filepath.Join(root, "var/lib/muninn-bouncer/renders.json"))
	require.NoError(t, err, "the bouncer kept its state")
	require.Equal(t, bouncerUID, fi.Sys().(*syscall.Stat_t).Uid)
	require.Equal(t, 0, b.stop(t), "the bouncer's clean stop exits 0\n%s", b.out.String())
	ns.Exec(t, "nft", "list", "table", "inet", "muninn") // the rules stay in place

	// The old unit: the dynamic user reads the root-only key itself.
	old := strings.Replace(strings.Replace(string(readFile(t, unitPath)), "LoadCredential=", "#", 1),
		"${CREDENTIALS_DIRECTORY}/bouncer.key", "/etc/muninn/bouncer.key", 1)
	oldPath := filepath.Join(root, "etc/systemd/system/old-bouncer.service")
	require.NoError(t, os.WriteFile(oldPath, []byte(old), 0o644))
	o := start(t, ns, emulate(t, oldPath, root, bouncerUID))
	require.NotEqual(t, 0, o.wait(t), "the old unit must fail")
	require.Contains(t, o.out.String(), "permission denied")

	require.Equal(t, 0, srv.stop(t), "muninn serve's clean stop exits 0\n%s", srv.out.String())
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildBinaries builds muninn and muninn-bouncer (static, version set as a
// release would) once per test binary and returns their directory.
func buildBinaries(tb testing.TB, version string) string {
	tb.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "muninn-packaging-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+version, "-o", buildDir+"/",
			"./server/cmd/muninn", "./bouncer/cmd/muninn-bouncer")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	require.NoError(tb, buildErr)
	return buildDir
}

// unusedID returns an id at or above from that names no user or group here.
func unusedID(tb testing.TB, from uint32) uint32 {
	tb.Helper()
	for id := from + uint32(os.Getpid()%500); id < from+2000; id++ {
		s := fmt.Sprint(id)
		_, uerr := user.LookupId(s)
		_, gerr := user.LookupGroupId(s)
		if uerr != nil && gerr != nil {
			return id
		}
	}
	tb.Fatal("no unused id")
	return 0
}

// proc is a service's running process.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	code int
}

// start starts the service's process inside ns (forked from a thread in it).
func start(tb testing.TB, ns *netnstest.NS, s *service) *proc {
	tb.Helper()
	p := &proc{out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = s.command(tb)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	var err error
	ns.Do(tb, func() { err = p.cmd.Start() })
	require.NoError(tb, err, "start %s", s.name)
	go func() {
		defer close(p.done)
		err := p.cmd.Wait()
		p.code = 0
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -1
		}
	}()
	tb.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		tb.Logf("%s output:\n%s", s.name, p.out.String())
	})
	return p
}

// waitExec waits until the launcher has exec'd the service's binary named
// name (its privileges are final from then on).
func (p *proc) waitExec(tb testing.TB, name string) {
	tb.Helper()
	waitFor(tb, p, 10*time.Second, "exec of "+name, func() bool {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.cmd.Process.Pid))
		return err == nil && strings.TrimSpace(string(comm)) == name
	})
}

// wait waits for the process to exit (at most a minute) and returns its code.
func (p *proc) wait(tb testing.TB) int {
	tb.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(time.Minute):
		tb.Fatalf("the process did not exit:\n%s", p.out.String())
		return 0
	}
}

// stop sends SIGTERM, as systemctl stop does, and returns the exit code.
func (p *proc) stop(tb testing.TB) int {
	tb.Helper()
	require.NoError(tb, p.cmd.Process.Signal(syscall.SIGTERM))
	return p.wait(tb)
}

// waitFor polls cond every 50 ms until it holds; it fails tb after d or when
// the process exits first.
func waitFor(tb testing.TB, p *proc, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.After(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-p.done:
			tb.Fatalf("waiting for %s: the process exited with %d:\n%s", what, p.code, p.out.String())
		case <-deadline:
			tb.Fatalf("waiting for %s: not after %v:\n%s", what, d, p.out.String())
		case <-tick.C:
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a process's output and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dialIn dials addr from inside the namespace behind fd.
func dialIn(ctx context.Context, fd int, network, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(orig)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return nil, err
	}
	defer func() {
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			panic(err) // never leave a thread in a test namespace
		}
	}()
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// nsClient is an HTTP client whose connections start inside ns, trusting ca.
func nsClient(ns *netnstest.NS, ca []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, ns.FD, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
}

// client calls the API of the server in the namespace.
type client struct {
	t     testing.TB
	base  string
	token string
	hc    *http.Client
}

func (c *client) try(method, path, contentType, body string, _ []byte) (int, []byte) {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	require.NoError(c.t, err)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *client) must(method, path, contentType, body string, want int) []byte {
	c.t.Helper()
	status, b := c.try(method, path, contentType, body, nil)
	require.Equal(c.t, want, status, "%s %s: %s", method, path, b)
	return b
}

// forwardDatabase makes the test database reachable from inside ns at a
// loopback port there (the namespace has no other way out) and returns the
// URL the server uses: a listener in ns whose connections the test relays to
// the database's own address, TCP or Unix socket.
func forwardDatabase(tb testing.TB, ns *netnstest.NS, dbURL string) string {
	tb.Helper()
	cfg, err := pgconn.ParseConfig(dbURL)
	require.NoError(tb, err)
	network, addr := "tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	if strings.HasPrefix(cfg.Host, "/") {
		network, addr = "unix", filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	}
	var ln net.Listener
	ns.Do(tb, func() { ln, err = net.Listen("tcp", "127.0.0.1:0") })
	require.NoError(tb, err)
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer in.Close()
				up, err := net.Dial(network, addr)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, in); _ = up.(interface{ CloseWrite() error }).CloseWrite() }()
				_, _ = io.Copy(in, up)
			})
		}
	})
	u := url.URL{Scheme: "postgres", User: url.UserPassword(cfg.User, cfg.Password), Host: ln.Addr().String(),
		Path: "/" + cfg.Database, RawQuery: "sslmode=disable"}
	return u.String()
}

// testCertificate returns a CA certificate and a server certificate for
// 127.0.0.1 signed by it, with the server's key, all PEM.
func testCertificate(tb testing.TB) (caPEM, certPEM, keyPEM []byte) {
	tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "muninn test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(tb, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	require.NoError(tb, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(tb, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// ids4 is how /proc/PID/status lists one id as real, effective, saved and fs id.
func ids4(id uint32) string { return fmt.Sprintf("%d %d %d %d", id, id, id, id) }
