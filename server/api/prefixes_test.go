package api_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"
)

// getText GETs path as the reader with an optional If-None-Match.
func (b *renderBundle) getText(t *testing.T, path, inm string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.reader)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body), resp.Header
}

// TestPrefixListParams covers the text outputs of named lists and deny
// lists: family, the guard (and guard=false), unknown parameters, ETag and 304.
func TestPrefixListParams(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.0/24","source":"feed","tags":["bad"]}
{"ip":"2001:db8::/48","source":"feed","tags":["bad"]}
`)
	b.json(t, b.admin, http.MethodPut, "/api/v1/guard", map[string]any{"entries": []map[string]string{{"prefix": "198.51.100.128/25", "reason": "office"}}}, http.StatusOK, nil)
	b.json(t, b.admin, http.MethodPut, "/api/v1/lists/bad", map[string]string{"selector": "tag bad"}, http.StatusOK, nil)
	b.putRuleset(t, "ruleset edge\n  block list bad\n", http.StatusCreated)

	for _, base := range []string{"/api/v1/lists/bad/prefixes", "/api/v1/rulesets/edge/deny"} {
		for query, want := range map[string]string{
			"":                       "198.51.100.0/25\n2001:db8::/48\n",
			"?family=4":              "198.51.100.0/25\n",
			"?family=6":              "2001:db8::/48\n",
			"?family=4&format=nginx": "# muninn " + map[bool]string{true: "list", false: "deny"}[strings.HasPrefix(base, "/api/v1/lists")] + "/" + map[bool]string{true: "bad", false: "edge"}[strings.HasPrefix(base, "/api/v1/lists")] + ": 1 prefix\n198.51.100.0/25 1;\n",
			"?format=json&family=6":  `{"name":"` + map[bool]string{true: "bad", false: "edge"}[strings.HasPrefix(base, "/api/v1/lists")] + `","v4":[],"v6":["2001:db8::/48"]}` + "\n",
		} {
			status, body, hdr := b.getText(t, base+query, "")
			require.Equal(t, http.StatusOK, status, "%s%s: %s", base, query, body)
			require.Equal(t, want, body, "%s%s", base, query)
			require.Equal(t, strconv.Itoa(strings.Count(want, "/")-strings.Count(want, "# muninn")), hdr.Get("X-Muninn-Prefixes"), "%s%s", base, query)
		}
		// The ETag names the body: 304 for it, a new one for another body.
		_, _, hdr := b.getText(t, base+"?family=4", "")
		etag := hdr.Get("ETag")
		require.NotEmpty(t, etag)
		status, body, hdr := b.getText(t, base+"?family=4", etag)
		require.Equal(t, http.StatusNotModified, status)
		require.Empty(t, body)
		require.Equal(t, etag, hdr.Get("ETag"))
		status, _, hdr = b.getText(t, base+"?family=6", etag)
		require.Equal(t, http.StatusOK, status)
		require.NotEqual(t, etag, hdr.Get("ETag"))
		// Unknown and invalid parameters answer 400 with the field.
		for query, field := range map[string]string{"?famly=4": "famly", "?family=5": "family", "?format=xml": "format", "?since=1": "since"} {
			status, body, _ := b.getText(t, base+query, "")
			require.Equal(t, http.StatusBadRequest, status, "%s%s", base, query)
			require.Contains(t, body, `"field":"`+field+`"`, "%s%s", base, query)
		}
	}
	// guard=false keeps the guarded half in a named list (not in a deny list: no such parameter).
	status, body, _ := b.getText(t, "/api/v1/lists/bad/prefixes?guard=false", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "198.51.100.0/24\n2001:db8::/48\n", body)
	status, _, _ = b.getText(t, "/api/v1/rulesets/edge/deny?guard=false", "")
	require.Equal(t, http.StatusBadRequest, status)

	// A change of the data changes the answer and its ETag.
	_, _, hdr := b.getText(t, "/api/v1/lists/bad/prefixes", "")
	b.ingest(t, `{"ip":"203.0.113.0/24","source":"feed","tags":["bad"]}`+"\n")
	status, body, hdr2 := b.getText(t, "/api/v1/lists/bad/prefixes", hdr.Get("ETag"))
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "198.51.100.0/25\n203.0.113.0/24\n2001:db8::/48\n", body)
	require.NotEqual(t, hdr.Get("ETag"), hdr2.Get("ETag"))
}

// TestDefaultBlockAdvice: a default-block ruleset's deny list says how many
// prefixes it holds and points at /allow, its complement.
func TestDefaultBlockAdvice(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.0/24","source":"feed","tags":["good"]}`+"\n")
	b.putRuleset(t, "ruleset gate\n  default block\n  allow tag good\n", http.StatusCreated)
	status, deny, dh := b.getText(t, "/api/v1/rulesets/gate/deny?format=plain", "")
	require.Equal(t, http.StatusOK, status, deny)
	status, allow, ah := b.getText(t, "/api/v1/rulesets/gate/allow", "")
	require.Equal(t, http.StatusOK, status, allow)
	nDeny, nAllow := dh.Get("X-Muninn-Prefixes"), ah.Get("X-Muninn-Prefixes")
	advice := "ruleset gate has default block: its deny list is the complement of what it allows (" + nDeny +
		" prefixes); a router that can allow a list and drop the rest should use /api/v1/rulesets/gate/allow (" + nAllow + " prefixes)"
	require.Equal(t, advice, dh.Get("X-Muninn-Advice"))
	require.Equal(t, advice, ah.Get("X-Muninn-Advice"))
	require.True(t, strings.HasPrefix(deny, "# "+advice+"\n# muninn deny/gate: "+nDeny+" prefixes\n"), deny[:200])
	require.Equal(t, dh.Get("X-Muninn-Render-Version"), ah.Get("X-Muninn-Render-Version"))

	// The two lists partition the address space; the allowed /24 and the
	// guard (never blocked) are in the allow list.
	set := func(text string) *netipx.IPSet {
		var sb netipx.IPSetBuilder
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			if !strings.HasPrefix(line, "#") {
				sb.AddPrefix(netip.MustParsePrefix(line))
			}
		}
		s, err := sb.IPSet()
		require.NoError(t, err)
		return s
	}
	d, a := set(deny), set(allow)
	require.False(t, d.Overlaps(a))
	var all netipx.IPSetBuilder
	all.AddSet(d)
	all.AddSet(a)
	full, err := all.IPSet()
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, full.Prefixes())
	require.True(t, a.ContainsPrefix(netip.MustParsePrefix("198.51.100.0/24")))
	require.True(t, a.Contains(netip.MustParseAddr("127.0.0.1")), "the guard is never blocked")
	require.Equal(t, strconv.Itoa(len(a.Prefixes())), nAllow)
	require.Less(t, len(a.Prefixes()), len(d.Prefixes()))

	// A ruleset without default block has no advice.
	b.putRuleset(t, "ruleset plainrs\n  block tag good\n", http.StatusCreated)
	status, body, hdr := b.getText(t, "/api/v1/rulesets/plainrs/deny?format=plain", "")
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, hdr.Get("X-Muninn-Advice"))
	require.Equal(t, "# muninn deny/plainrs: 1 prefix\n198.51.100.0/24\n", body)
}

// needBinary returns the path of a daemon the test runs; missing, it skips,
// or fails under CI (make deps installs it).
func needBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is needed under CI: make deps", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

// unixClient is an HTTP client that reaches a server on a unix socket.
func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

// startDaemon runs cmd until the test ends and waits until its unix socket
// answers HTTP (or the daemon exits, which fails the test).
func startDaemon(t *testing.T, cmd *exec.Cmd, sock string) *http.Client {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	c := unixClient(sock)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited: %v\n%s", cmd.Path, err, out.String())
		default:
		}
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			return c
		}
		require.True(t, time.Now().Before(deadline), "%s did not listen: %s", cmd.Path, out.String())
		<-time.After(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// status sends GET / with the client address in X-Forwarded-For.
func statusFor(t *testing.T, c *http.Client, client string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://proxy/", nil)
	require.NoError(t, err)
	req.Header.Set("X-Forwarded-For", client)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestProxiesLoadDenyList: real nginx (geo include, client address from
// X-Forwarded-For through the realip module) and HAProxy (map_ip over the
// X-Forwarded-For address) load the deny list as served and refuse a listed
// source, IPv4 and IPv6, while an unlisted one passes. Both listen on unix
// sockets in a temporary directory.
func TestProxiesLoadDenyList(t *testing.T) {
	t.Parallel()
	nginx := needBinary(t, "nginx")
	haproxy := needBinary(t, "haproxy")
	b := setupRender(t)
	b.ingest(t, `{"ip":"198.51.100.0/24","source":"feed","tags":["bad"]}
{"ip":"2001:db8:1::/48","source":"feed","tags":["bad"]}
`)
	b.putRuleset(t, "ruleset edge\n  block tag bad\n", http.StatusCreated)
	fetch := func(format string) string {
		status, body, _ := b.getText(t, "/api/v1/rulesets/edge/deny?format="+format, "")
		require.Equal(t, http.StatusOK, status, body)
		return body
	}
	cases := map[string]int{"198.51.100.7": http.StatusForbidden, "2001:db8:1::9": http.StatusForbidden,
		"192.0.2.1": http.StatusOK, "2001:db8:2::1": http.StatusOK}

	t.Run("nginx", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "deny.conf"), []byte(fetch("nginx")), 0o644))
		sock := filepath.Join(dir, "nginx.sock")
		conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr;
events {}
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  set_real_ip_from unix:;
  real_ip_header X-Forwarded-For;
  geo $muninn_deny {
    default 0;
    include %[1]s/deny.conf;
  }
  server {
    listen unix:%[2]s;
    location / {
      if ($muninn_deny) { return 403; }
      return 200 "ok\n";
    }
  }
}
`, dir, sock)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644))
		c := startDaemon(t, exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr"), sock)
		for client, want := range cases {
			require.Equal(t, want, statusFor(t, c, client), "nginx, client %s", client)
		}
	})
	t.Run("haproxy", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "deny.map"), []byte(fetch("haproxy")), 0o644))
		sock := filepath.Join(dir, "haproxy.sock")
		conf := fmt.Sprintf(`global
  pidfile %[1]s/haproxy.pid
defaults
  mode http
  timeout client 5s
  timeout server 5s
  timeout connect 5s
frontend fe
  bind unix@%[2]s
  http-request deny deny_status 403 if { req.hdr_ip(x-forwarded-for,-1),map_ip(%[1]s/deny.map) -m found }
  http-request return status 200 content-type text/plain string "ok"
`, dir, sock)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(conf), 0o644))
		c := startDaemon(t, exec.Command(haproxy, "-db", "-f", filepath.Join(dir, "haproxy.cfg")), sock)
		for client, want := range cases {
			require.Equal(t, want, statusFor(t, c, client), "haproxy, client %s", client)
		}
	})
}
