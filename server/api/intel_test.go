package api_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/muninn/muninn/server/httpserver"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/stretchr/testify/require"
)

// intelData is nested and overlapping stored prefixes of both families.
const intelData = `{"ip":"198.51.100.0/24","source":"feed","tags":["scanner"],"classification":"suspicious"}
{"ip":"198.51.100.128/25","source":"honeypot","tags":["ssh-bruteforce"],"classification":"malicious"}
{"ip":"198.51.100.200","source":"cowrie","tags":["ssh-bruteforce"]}
{"ip":"203.0.113.9","source":"feed","classification":"benign"}
{"ip":"2001:db8::/48","source":"feed","tags":["scanner"],"classification":"malicious"}
{"ip":"2001:db8::7","source":"cowrie","tags":["telnet"]}
{"ip":"198.51.100.200","source":"sensor","note":"seen twice"}
`

type mmdbMuninn struct {
	Muninn struct {
		Classification string   `maxminddb:"classification"`
		Score          uint16   `maxminddb:"score"`
		Tags           []string `maxminddb:"tags"`
		Sources        []string `maxminddb:"sources"`
		FirstSeen      string   `maxminddb:"first_seen"`
		LastSeen       string   `maxminddb:"last_seen"`
		Note           string   `maxminddb:"note"`
		Network        string   `maxminddb:"network"`
		Sightings      uint64   `maxminddb:"sightings"`
	} `maxminddb:"muninn"`
}

// TestMMDBMatchesLookups reads the MMDB export back for random addresses
// in and around the stored prefixes and compares every record with GET
// /ips/{address}: the same view, or no record where the API answers 404.
// The record's network is the most specific stored prefix of the address,
// and its sightings are that network's, as GET /networks/{network} says.
func TestMMDBMatchesLookups(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, intelData)
	status, body, hdr := b.getText(t, "/api/v1/export/muninn.mmdb", "")
	require.Equal(t, http.StatusOK, status, body)
	etag := hdr.Get("ETag")
	require.NotEmpty(t, etag)
	db, err := maxminddb.OpenBytes([]byte(body))
	require.NoError(t, err)
	require.Equal(t, "muninn", db.Metadata.DatabaseType)

	rng := rand.New(rand.NewPCG(18, 2026))
	var addrs []netip.Addr
	for range 200 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.IntN(256))}))
		addrs = append(addrs, netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(16))}))
		a16 := netip.MustParseAddr("2001:db8::").As16()
		a16[5] = byte(rng.IntN(2)) // inside the /48 or next to it
		a16[15] = byte(rng.IntN(16))
		addrs = append(addrs, netip.AddrFrom16(a16))
	}
	found := 0
	for _, a := range addrs {
		var view struct {
			Classification string
			Tags           []struct{ Name string }
			Sources        []string
			FirstSeen      *time.Time `json:"first_seen"`
			LastSeen       *time.Time `json:"last_seen"`
			Note           *string
			Prefixes       []struct{ Prefix string }
		}
		st, raw := b.do(t, b.reader, http.MethodGet, "/api/v1/ips/"+a.String(), "", nil)
		res := db.Lookup(a)
		require.NoError(t, res.Err())
		if st == http.StatusNotFound {
			require.False(t, res.Found(), "%s: the API knows nothing, the MMDB has a record", a)
			continue
		}
		require.Equal(t, http.StatusOK, st, "%s", raw)
		require.NoError(t, json.Unmarshal(raw, &view))
		require.True(t, res.Found(), "%s: no MMDB record", a)
		found++
		var rec mmdbMuninn
		require.NoError(t, res.Decode(&rec))
		names := []string{}
		for _, tg := range view.Tags {
			if !slices.Contains(names, tg.Name) {
				names = append(names, tg.Name)
			}
		}
		slices.Sort(names)
		got := slices.Clone(rec.Muninn.Tags)
		slices.Sort(got)
		require.Equal(t, view.Classification, rec.Muninn.Classification, "%s", a)
		require.Equal(t, names, got, "%s", a)
		require.ElementsMatch(t, view.Sources, rec.Muninn.Sources, "%s", a)
		require.Equal(t, view.FirstSeen.UTC().Format(time.RFC3339), rec.Muninn.FirstSeen, "%s", a)
		require.Equal(t, view.LastSeen.UTC().Format(time.RFC3339), rec.Muninn.LastSeen, "%s", a)
		require.Equal(t, map[string]uint16{"malicious": 100, "suspicious": 60, "unknown": 20, "benign": 0}[view.Classification], rec.Muninn.Score)
		require.Equal(t, *cmp.Or(view.Note, new(string)), rec.Muninn.Note, "%s", a)
		require.NotEmpty(t, view.Prefixes, "%s", a)
		require.Equal(t, view.Prefixes[0].Prefix, rec.Muninn.Network, "%s", a)
		var network struct{ Sightings uint64 }
		b.json(t, b.reader, http.MethodGet, "/api/v1/networks/"+rec.Muninn.Network, nil, http.StatusOK, &network)
		require.Equal(t, network.Sightings, rec.Muninn.Sightings, "%s in %s", a, rec.Muninn.Network)
	}
	require.Greater(t, found, 300)

	// Cached: the same build again, 304 for its ETag; new data, a new build.
	status, _, hdr = b.getText(t, "/api/v1/export/muninn.mmdb", etag)
	require.Equal(t, http.StatusNotModified, status)
	require.Equal(t, etag, hdr.Get("ETag"))
	b.ingest(t, `{"ip":"192.0.2.1","source":"feed","tags":["scanner"]}`+"\n")
	status, body, hdr = b.getText(t, "/api/v1/export/muninn.mmdb", etag)
	require.Equal(t, http.StatusOK, status)
	require.NotEqual(t, etag, hdr.Get("ETag"))
	db, err = maxminddb.OpenBytes([]byte(body))
	require.NoError(t, err)
	require.True(t, db.Lookup(netip.MustParseAddr("192.0.2.1")).Found())
	status, _, _ = b.getText(t, "/api/v1/export/muninn.mmdb?x=1", "")
	require.Equal(t, http.StatusBadRequest, status)
}

// TestNginxGeoIP2ReadsMMDB: nginx's geoip2 module (Debian
// libnginx-mod-http-geoip2) loads the MMDB export and answers a request
// with a header taken from the record of the client address (from
// X-Forwarded-For through the realip module).
func TestNginxGeoIP2ReadsMMDB(t *testing.T) {
	t.Parallel()
	nginx := needBinary(t, "nginx")
	const module = "/usr/lib/nginx/modules/ngx_http_geoip2_module.so"
	if _, err := os.Stat(module); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("libnginx-mod-http-geoip2 is needed under CI: make deps")
		}
		t.Skip("libnginx-mod-http-geoip2 is not installed")
	}
	b := setupRender(t)
	b.ingest(t, intelData)
	status, body, _ := b.getText(t, "/api/v1/export/muninn.mmdb", "")
	require.Equal(t, http.StatusOK, status)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "muninn.mmdb"), []byte(body), 0o644))
	sock := filepath.Join(dir, "nginx.sock")
	conf := fmt.Sprintf(`load_module %[3]s;
daemon off;
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
  geoip2 %[1]s/muninn.mmdb {
    $muninn_class default=none muninn classification;
    $muninn_tag default=none muninn tags 0;
  }
  server {
    listen unix:%[2]s;
    location / {
      add_header X-Muninn-Class $muninn_class always;
      add_header X-Muninn-Tag $muninn_tag always;
      return 200 "ok\n";
    }
  }
}
`, dir, sock, module)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644))
	c := startDaemon(t, exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr"), sock)
	for client, want := range map[string][2]string{
		"198.51.100.200": {"malicious", "scanner"}, // the /32 inside the /25 inside the /24 (tags sorted: scanner first)
		"198.51.100.7":   {"suspicious", "scanner"},
		"2001:db8::9":    {"malicious", "scanner"},
		"192.0.2.1":      {"none", "none"},
	} {
		req, err := http.NewRequest(http.MethodGet, "http://nginx/", nil)
		require.NoError(t, err)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := c.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want[0], resp.Header.Get("X-Muninn-Class"), client)
		require.Equal(t, want[1], resp.Header.Get("X-Muninn-Tag"), client)
	}
}

// TestZeekAndSuricataFiles pins the Zeek intel file and the Suricata iprep
// and dataset files against the documented formats, line by line.
func TestZeekAndSuricataFiles(t *testing.T) {
	t.Parallel()
	b := setupRender(t)
	b.ingest(t, intelData)
	get := func(path string) string {
		status, body, _ := b.getText(t, path, "")
		require.Equal(t, http.StatusOK, status, "%s: %s", path, body)
		return body
	}
	zeek := get("/api/v1/export/zeek-intel.txt")
	lines := strings.Split(strings.TrimSuffix(zeek, "\n"), "\n")
	require.Equal(t, "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\tmeta.url", lines[0])
	require.Equal(t, []string{
		"198.51.100.0/24\tIntel::SUBNET\tmuninn\tsuspicious score=60 tags=scanner\t-",
		"198.51.100.128/25\tIntel::SUBNET\tmuninn\tmalicious score=100 tags=scanner,ssh-bruteforce\t-",
		"198.51.100.200\tIntel::ADDR\tmuninn\tmalicious score=100 tags=scanner,ssh-bruteforce\t-",
		"2001:db8::/48\tIntel::SUBNET\tmuninn\tmalicious score=100 tags=scanner\t-",
		"2001:db8::7\tIntel::ADDR\tmuninn\tmalicious score=100 tags=scanner,telnet\t-",
	}, lines[1:])
	for _, l := range lines[1:] {
		require.Len(t, strings.Split(l, "\t"), 5, "every row has the header's five TAB-separated fields")
	}

	cats := get("/api/v1/export/suricata/iprep/categories.txt")
	require.Equal(t, "1,scanner,scanner\n2,ssh-bruteforce,ssh-bruteforce\n3,telnet,telnet\n", cats)
	rep := get("/api/v1/export/suricata/iprep/reputation.list")
	require.Equal(t, "198.51.100.0/24,1,76\n"+
		"198.51.100.128/25,1,127\n198.51.100.128/25,2,127\n"+
		"198.51.100.200/32,1,127\n198.51.100.200/32,2,127\n"+
		"2001:db8::/48,1,127\n"+
		"2001:db8::7/128,1,127\n2001:db8::7/128,3,127\n", rep)
	require.Equal(t, "198.51.100.200\n2001:db8::7\n", get("/api/v1/export/suricata/dataset.lst"))
	require.Equal(t, "2001:db8::7\n", get("/api/v1/export/suricata/dataset.lst?within=2001:db8::/32"))
	status, _, _ := b.getText(t, "/api/v1/export/zeek-intel.txt?classification=evil", "")
	require.Equal(t, http.StatusBadRequest, status)

	// A new tag that sorts first takes the next id: the others keep theirs
	// (a running Suricata's categories stay right).
	b.ingest(t, `{"ip":"203.0.113.7","source":"feed","tags":["abuse"],"classification":"malicious"}`+"\n")
	require.Equal(t, "1,scanner,scanner\n2,ssh-bruteforce,ssh-bruteforce\n3,telnet,telnet\n4,abuse,abuse\n",
		get("/api/v1/export/suricata/iprep/categories.txt"))
	require.Equal(t, "198.51.100.0/24,1,76\n"+
		"198.51.100.128/25,1,127\n198.51.100.128/25,2,127\n"+
		"198.51.100.200/32,1,127\n198.51.100.200/32,2,127\n"+
		"203.0.113.7/32,4,127\n"+
		"2001:db8::/48,1,127\n"+
		"2001:db8::7/128,1,127\n2001:db8::7/128,3,127\n", get("/api/v1/export/suricata/iprep/reputation.list"))
}

// TestZeekIntelLinks: with MUNINN_BASE_URL set, meta.url is the address or
// network page under it.
func TestZeekIntelLinks(t *testing.T) {
	t.Parallel()
	b := setupRenderWith(t, storetest.Store(t), func(d *httpserver.Deps) { d.BaseURL = "https://muninn.example/" })
	b.ingest(t, `{"ip":"198.51.100.7","source":"feed","tags":["scanner"],"classification":"malicious"}
{"ip":"2001:db8::/48","source":"feed","tags":["x"]}
`)
	status, body, _ := b.getText(t, "/api/v1/export/zeek-intel.txt", "")
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\tmeta.url\n"+
		"198.51.100.7\tIntel::ADDR\tmuninn\tmalicious score=100 tags=scanner\thttps://muninn.example/ui/ips/198.51.100.7\n"+
		"2001:db8::/48\tIntel::SUBNET\tmuninn\tunknown score=20 tags=x\thttps://muninn.example/ui/networks/2001:db8::/48\n", body)
}
