//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// probingRuleset blocks the http-probing detection's tag on the HTTP port.
const probingRuleset = "ruleset probing\n  hook input\n  scope tcp dport 80\n  block tag http-probing\n"

// exploitScan is the attacker's scan: well-known exploit paths of the
// http-probing detection's defaults (server/sensor ExploitPath), none of
// which A's nginx serves (each answers 404).
var exploitScan = []string{"/.env", "/.git/config", "/wp-login.php", "/phpmyadmin/index.php",
	"/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php"}

// nginxLab is the web half of the sensor proof: a server; host A
// (192.0.2.1) runs Debian's nginx on port 80 writing its access log in the
// combined format, which A's bouncer watches (format nginx) and spools to
// POST /events with its key; host B (192.0.2.2) runs only a bouncer and a
// listener on port 80; the client namespace is the attacker, requesting with
// Debian's curl. Both bouncers enforce probingRuleset.
type nginxLab struct {
	srv       *server
	net       *network
	a, b      *host
	accessLog string
	spool     *bouncer.Spool
}

func requireNginxTools(tb testing.TB) {
	tb.Helper()
	requireRoot(tb)
	for _, bin := range []string{"/usr/sbin/nginx", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				tb.Fatalf("CI must run this: %s is missing (make deps installs nginx and curl)", bin)
			}
			tb.Skipf("needs %s (make deps)", bin)
		}
	}
}

// setupNginxLab builds the lab; sources are the client addresses to add.
func setupNginxLab(tb testing.TB, sources ...string) *nginxLab {
	tb.Helper()
	requireNginxTools(tb)
	log := testLogger(tb)
	l := &nginxLab{srv: startServer(tb, log), net: newNetwork(tb, 2)}
	l.a, l.b = l.net.hosts[0], l.net.hosts[1]
	l.net.addSources(tb, sources...)
	l.b.listen(tb, 80)
	l.srv.putRuleset(tb, probingRuleset)
	keyA := l.srv.createBouncer(tb, "host-a", "probing")
	keyB := l.srv.createBouncer(tb, "host-b", "probing")

	// nginx on A: one server serving an empty site but its index page, the
	// access log in nginx's predefined combined format.
	dir := tb.TempDir()
	www := filepath.Join(dir, "www")
	require.NoError(tb, os.MkdirAll(www, 0o755))
	require.NoError(tb, os.WriteFile(filepath.Join(www, "index.html"), []byte("ok\n"), 0o644))
	l.accessLog = filepath.Join(dir, "access.log")
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
  access_log %[2]s combined;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[3]s:80;
    root %[4]s;
  }
}
`, dir, l.accessLog, l.a.v4, www)
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	nginx := exec.CommandContext(ctx, "ip", "netns", "exec", l.a.Name, "/usr/sbin/nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	var out strings.Builder
	nginx.Stdout, nginx.Stderr = &out, &out
	require.NoError(tb, nginx.Start())
	tb.Cleanup(func() { cancel(); _ = nginx.Wait() })
	// nginx is up once its port accepts (from a source no test uses).
	const probe = "198.51.100.250"
	l.net.addSources(tb, probe)
	eventually(tb, settle, func() bool { return l.net.connect(tb, l.a, probe, 80, time.Second) }, "nginx did not start: %s", &out)

	// A's bouncer: the syncer, and the watch: entry the daemon's main runs
	// (a Watcher adding to the spool, the spool sending with the key), with
	// the defaults of the daemon (250 ms poll, 1 s backoff).
	stateA := tb.TempDir()
	startBouncer(tb, l.a, bouncer.NewClient(l.srv.url, keyA, nil), stateA, log).waitApplied(tb, "probing")
	spool, err := bouncer.OpenSpool(filepath.Join(stateA, "spool"), 0, log)
	require.NoError(tb, err)
	l.spool = spool
	events := bouncer.NewClient(l.srv.url, keyA, nil)
	w := bouncer.Watch{Path: l.accessLog, Format: "nginx", Host: "host-a"}
	wctx, wcancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() {
		_ = (&bouncer.Watcher{Watch: w, PosFile: bouncer.PosFileFor(stateA, w.Source()), Send: spool.Add}).Run(wctx)
		done <- struct{}{}
	}()
	go func() { _ = spool.Run(wctx, events.SendEvents, 0); done <- struct{}{} }()
	tb.Cleanup(func() { wcancel(); <-done; <-done })

	startBouncer(tb, l.b, bouncer.NewClient(l.srv.url, keyB, nil), tb.TempDir(), log).waitApplied(tb, "probing")
	return l
}

// get requests paths from A's nginx with Debian's curl in the client
// namespace, from src, over one keep-alive connection (as a scanner does),
// the paths as they are (--path-as-is), and returns the statuses.
func (l *nginxLab) get(tb testing.TB, src string, paths ...string) []string {
	tb.Helper()
	args := []string{"netns", "exec", l.net.cli.Name, "curl", "-q", "-s", "--noproxy", "*", "--path-as-is", "--interface", src,
		"--max-time", "10", "-w", "%{http_code}\n"}
	for _, p := range paths {
		args = append(args, "-o", "/dev/null", "http://"+l.a.v4+p)
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	require.NoError(tb, err, "curl from %s: %s", src, out)
	return strings.Fields(string(out))
}

// kinds counts src's stored events by kind, all from A's bouncer in format nginx.
func (l *nginxLab) kinds(tb testing.TB, src string) map[string]int {
	tb.Helper()
	lines, err := l.srv.st.SensorLinesOf(context.Background(), netip.MustParseAddr(src), 1000)
	require.NoError(tb, err)
	out := map[string]int{}
	for _, line := range lines {
		require.Equal(tb, "host-a", line.Host)
		require.Equal(tb, "nginx", line.Format)
		out[line.Kind] += line.Count
	}
	return out
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestNginxExploitScanBlockedEverywhere is the web sensor proof: an attacker
// asks A's nginx for its index page (200, no event) and 19 missing pages
// (404 each) — the server stores 19 http-404 events from A's bouncer and tags
// nothing (http-probing needs 20 4xx in a minute); then it scans five
// well-known exploit paths over one connection — one event of kind
// http-exploit-path is enough: the detection fires, the attacker's address is
// in both bouncers' kernel sets with tag http-probing from source
// sensor:http-probing, and its next TCP connects to B and to A's nginx are
// dropped while another address still connects to both.
func TestNginxExploitScanBlockedEverywhere(t *testing.T) {
	t.Parallel()
	const attacker, bystander = "203.0.113.81", "203.0.113.91"
	l := setupNginxLab(t, attacker, bystander)
	require.True(t, l.net.connect(t, l.b, attacker, 80, settle), "B is open before the attack")

	missing := make([]string, 19)
	for i := range missing {
		missing[i] = fmt.Sprintf("/missing-%02d.html", i)
	}
	require.Equal(t, append([]string{"200"}, repeat("404", 19)...), l.get(t, attacker, append([]string{"/"}, missing...)...))
	eventually(t, settle, func() bool { return l.kinds(t, attacker)["http-404"] == 19 }, "the 19 not-founds never reached the server")
	require.Equal(t, map[string]int{"http-404": 19}, l.kinds(t, attacker))
	require.Empty(t, l.srv.ipTags(t, attacker), "19 not-founds tag nothing")
	require.True(t, l.net.connect(t, l.b, attacker, 80, settle), "B is open after 19 not-founds")

	// The scan is answered in full: its five requests take milliseconds,
	// the way to the kernel at least the watcher's poll and the render's
	// debounce (100 ms).
	require.Equal(t, repeat("404", len(exploitScan)), l.get(t, attacker, exploitScan...))
	start := time.Now()
	addr := netip.MustParseAddr(attacker)
	eventually(t, settle, func() bool { return hashSetHas(t, l.b, "probing", 1, addr) }, "%s never reached B's set", attacker)
	t.Logf("%s in B's kernel set %s after the scan", attacker, time.Since(start).Round(time.Millisecond))
	eventually(t, settle, func() bool { return hashSetHas(t, l.a, "probing", 1, addr) }, "%s never reached A's set", attacker)
	require.Equal(t, map[string][]string{"http-probing": {"sensor:http-probing"}}, l.srv.ipTags(t, attacker))
	eventually(t, settle, func() bool { return l.kinds(t, attacker)["http-exploit-path"] == len(exploitScan) }, "the scan's events never all reached the server")
	require.Equal(t, map[string]int{"http-404": 19, "http-exploit-path": 5}, l.kinds(t, attacker))

	require.False(t, l.net.connect(t, l.b, attacker, 80, dropped), "the attacker's connect to B is dropped")
	require.False(t, l.net.connect(t, l.a, attacker, 80, dropped), "the attacker's connect to A's nginx is dropped")
	require.True(t, l.net.connect(t, l.b, bystander, 80, settle), "another address still connects to B")
	require.Equal(t, []string{"200"}, l.get(t, bystander, "/"), "another address still gets A's page")
	require.Empty(t, l.srv.ipTags(t, bystander))
	// The bystander's request is a new log line: the spool drains it.
	eventually(t, settle, func() bool { batches, _ := l.spool.Pending(); return batches == 0 }, "the spool never drained")
	require.Equal(t, int64(0), l.spool.Dropped())
}
