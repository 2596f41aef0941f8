package rdap

import (
	"embed"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/openrdap/rdap/bootstrap"
	"github.com/openrdap/rdap/bootstrap/cache"
)

// bundled holds a snapshot of the IANA RDAP bootstrap registries for IP
// addresses (RFC 9224), in IANA's file format, so lookups never fetch the
// registry at run time. The snapshot maps the five RIRs' major blocks: every
// /8 IANA allocated or assigned to a RIR or administered by one as legacy
// space, and the RIRs' IPv6 allocations. It is hand-maintained; refresh it
// from IANA's ipv4.json/ipv6.json when a RIR gets new space. An address the
// snapshot does not cover goes to Config.FallbackRegistry.
//
//go:embed bootstrap/ipv4.json bootstrap/ipv6.json
var bundled embed.FS

// staticCache serves the bundled registry files to openrdap's bootstrap
// client and never reports them stale, so it never downloads.
type staticCache struct {
	files map[string][]byte
}

func (s *staticCache) Load(filename string) ([]byte, error) {
	if b, ok := s.files[filename]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("rdap: bootstrap file %s not bundled", filename)
}

func (s *staticCache) Save(string, []byte) error {
	return errors.New("rdap: bootstrap cache is read-only")
}

func (s *staticCache) State(filename string) cache.FileState {
	if _, ok := s.files[filename]; ok {
		return cache.Good
	}
	return cache.Absent
}

func (s *staticCache) SetTimeout(time.Duration) {}

func newBootstrap(ipv4, ipv6 []byte) (*bootstrap.Client, error) {
	var err error
	if ipv4 == nil {
		if ipv4, err = bundled.ReadFile("bootstrap/ipv4.json"); err != nil {
			return nil, fmt.Errorf("rdap: read bundled bootstrap: %w", err)
		}
	}
	if ipv6 == nil {
		if ipv6, err = bundled.ReadFile("bootstrap/ipv6.json"); err != nil {
			return nil, fmt.Errorf("rdap: read bundled bootstrap: %w", err)
		}
	}
	b := &bootstrap.Client{Cache: &staticCache{files: map[string][]byte{"ipv4.json": ipv4, "ipv6.json": ipv6}}}
	// Parse now so a broken file fails New, not the first lookup.
	if b.IPv4() == nil || b.IPv6() == nil {
		return nil, errors.New("rdap: bootstrap registry does not parse")
	}
	return b, nil
}

// Registry names used for rate limiting, whois servers and Network.Registry.
const (
	RegistryAFRINIC = "afrinic"
	RegistryAPNIC   = "apnic"
	RegistryARIN    = "arin"
	RegistryLACNIC  = "lacnic"
	RegistryRIPE    = "ripe"
)

// registryOfHost names the RIR behind an RDAP base URL host; other hosts are
// named by themselves.
func registryOfHost(host string) string {
	for _, r := range []string{RegistryAFRINIC, RegistryAPNIC, RegistryARIN, RegistryLACNIC, RegistryRIPE} {
		if strings.Contains(host, "."+r+".") || strings.HasPrefix(host, r+".") {
			return r
		}
	}
	return host
}

// rdapBaseURLs are the RIRs' RDAP services, for the fallback registry.
var rdapBaseURLs = map[string]string{
	RegistryAFRINIC: "https://rdap.afrinic.net/rdap/",
	RegistryAPNIC:   "https://rdap.apnic.net/",
	RegistryARIN:    "https://rdap.arin.net/registry/",
	RegistryLACNIC:  "https://rdap.lacnic.net/rdap/",
	RegistryRIPE:    "https://rdap.db.ripe.net/",
}

// route picks the registry and RDAP base URL for addr.
func (c *Client) route(addr netip.Addr) (string, *url.URL, error) {
	rt := bootstrap.IPv4
	if addr.Is6() {
		rt = bootstrap.IPv6
	}
	ans, err := c.boot.Lookup(&bootstrap.Question{RegistryType: rt, Query: addr.String()})
	if err != nil {
		return "", nil, fmt.Errorf("rdap: bootstrap %s: %w", addr, err)
	}
	var base *url.URL
	for _, u := range ans.URLs {
		if base == nil || (u.Scheme == "https" && base.Scheme != "https") {
			base = u
		}
	}
	registry := c.cfg.FallbackRegistry
	if base != nil {
		registry = registryOfHost(base.Hostname())
	} else if raw, ok := rdapBaseURLs[registry]; ok {
		base, _ = url.Parse(raw)
	} else {
		return "", nil, fmt.Errorf("rdap: bootstrap %s: no registry covers it", addr)
	}
	if c.cfg.BaseURL != nil {
		base = c.cfg.BaseURL
	}
	return registry, base, nil
}
