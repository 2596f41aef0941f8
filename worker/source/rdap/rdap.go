// Package rdap finds who holds an IP network: RDAP (RFC 9083) through
// github.com/openrdap/rdap with a bundled IANA bootstrap, a per-registry rate
// limit and a cache keyed by network, and a whois (port 43) fallback with its
// own parsers for ARIN, RPSL (RIPE, APNIC, AFRINIC) and LACNIC answers.
package rdap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openrdap/rdap"
	"github.com/openrdap/rdap/bootstrap"
	"go4.org/netipx"
)

// ErrNotFound is returned (wrapped) when the registry has no network for the
// address (RDAP 404).
var ErrNotFound = errors.New("rdap: no network found")

// Sources of a Network.
const (
	SourceRDAP  = "rdap"
	SourceWhois = "whois"
)

// Network is what a registry says about the network holding an address.
type Network struct {
	// Prefixes cover the registry's start-end range exactly.
	Prefixes   []netip.Prefix
	Handle     string
	Name       string
	Org        string
	Country    string
	AbuseEmail string
	// Registry is the RIR that answered (arin, ripe, apnic, lacnic,
	// afrinic), or the RDAP server's host for other servers.
	Registry string
	// Source is SourceRDAP or SourceWhois.
	Source string
	// Raw is the RDAP response body; for whois, {"whois": "<text>"}.
	Raw json.RawMessage
}

// Config configures a Client. Zero values select the defaults.
type Config struct {
	// HTTP is the client for RDAP requests; default has a 15s timeout.
	HTTP *http.Client
	// BaseURL, when set, receives every RDAP query instead of the
	// bootstrapped server (tests, a local RDAP mirror). The registry name
	// still comes from the bootstrap.
	BaseURL *url.URL
	// BootstrapIPv4 and BootstrapIPv6 replace the bundled IANA bootstrap
	// files (same format).
	BootstrapIPv4, BootstrapIPv6 []byte
	// FallbackRegistry serves addresses the bootstrap does not cover.
	// Default arin.
	FallbackRegistry string
	// Rate is the number of queries per second allowed per registry
	// (RDAP and whois together); default 1. Burst defaults to 5.
	Rate  float64
	Burst int
	// CacheTTL is how long answers are kept; default 24h. CacheSize bounds
	// the number of cached prefixes; default 100,000.
	CacheTTL  time.Duration
	CacheSize int
	// Whois enables the port-43 fallback when RDAP fails for a reason
	// other than "not found".
	Whois bool
	// WhoisServers maps a registry to its whois host:port; missing
	// registries use DefaultWhoisServers.
	WhoisServers map[string]string
	// WhoisTimeout bounds one whois query; default 15s.
	WhoisTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Wait waits for the rate limiter; default a timer. Tests replace it
	// to advance a fake clock instead of sleeping.
	Wait func(ctx context.Context, d time.Duration) error
}

// DefaultWhoisServers are the RIRs' whois services.
var DefaultWhoisServers = map[string]string{
	RegistryAFRINIC: "whois.afrinic.net:43",
	RegistryAPNIC:   "whois.apnic.net:43",
	RegistryARIN:    "whois.arin.net:43",
	RegistryLACNIC:  "whois.lacnic.net:43",
	RegistryRIPE:    "whois.ripe.net:43",
}

// Client looks up networks. It is safe for concurrent use.
type Client struct {
	cfg   Config
	boot  *bootstrap.Client
	rdap  *rdap.Client
	cache *netCache

	mu       sync.Mutex
	limiters map[string]*limiter
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.FallbackRegistry == "" {
		cfg.FallbackRegistry = RegistryARIN
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 1
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 5
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 24 * time.Hour
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 100_000
	}
	if cfg.WhoisTimeout <= 0 {
		cfg.WhoisTimeout = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Wait == nil {
		cfg.Wait = sleepCtx
	}
	boot, err := newBootstrap(cfg.BootstrapIPv4, cfg.BootstrapIPv6)
	if err != nil {
		return nil, err
	}
	return &Client{
		cfg:      cfg,
		boot:     boot,
		rdap:     &rdap.Client{HTTP: cfg.HTTP, Bootstrap: boot, UserAgent: "muninn"},
		cache:    newNetCache(cfg.CacheTTL, cfg.CacheSize, cfg.Now),
		limiters: map[string]*limiter{},
	}, nil
}

func (c *Client) limiter(registry string) *limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.limiters[registry]
	if !ok {
		l = newLimiter(c.cfg.Rate, c.cfg.Burst, c.cfg.Now, c.cfg.Wait)
		c.limiters[registry] = l
	}
	return l
}

// Lookup returns the network holding addr, from the cache when a cached
// network contains it.
func (c *Client) Lookup(ctx context.Context, addr netip.Addr) (*Network, error) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return nil, errors.New("rdap: lookup: invalid address")
	}
	if n, ok := c.cache.get(addr); ok {
		return n, nil
	}
	registry, base, err := c.route(addr)
	if err != nil {
		return nil, err
	}
	if err := c.limiter(registry).Wait(ctx); err != nil {
		return nil, fmt.Errorf("rdap: lookup %s: rate limit: %w", addr, err)
	}
	n, err := c.queryRDAP(ctx, addr, registry, base)
	if err != nil && c.cfg.Whois && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
		// The whois query counts against the same registry budget.
		if werr := c.limiter(registry).Wait(ctx); werr != nil {
			return nil, fmt.Errorf("rdap: lookup %s: rate limit: %w", addr, werr)
		}
		var werr error
		n, werr = c.queryWhois(ctx, addr, registry)
		if werr != nil {
			return nil, errors.Join(err, werr)
		}
		err = nil
	}
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(n.Prefixes, func(p netip.Prefix) bool { return p.Contains(addr) }) {
		return nil, fmt.Errorf("rdap: lookup %s: answer %v does not contain the address", addr, n.Prefixes)
	}
	c.cache.put(n)
	return n, nil
}

func (c *Client) queryRDAP(ctx context.Context, addr netip.Addr, registry string, base *url.URL) (*Network, error) {
	req := rdap.NewIPRequest(net.IP(addr.AsSlice())).WithContext(ctx)
	req.Server = base
	resp, err := c.rdap.Do(req)
	if err != nil {
		var ce *rdap.ClientError
		if errors.As(err, &ce) && ce.Type == rdap.ObjectDoesNotExist {
			return nil, fmt.Errorf("rdap: query %s at %s: %w", addr, registry, ErrNotFound)
		}
		return nil, fmt.Errorf("rdap: query %s at %s: %w", addr, registry, err)
	}
	ipn, ok := resp.Object.(*rdap.IPNetwork)
	if !ok {
		return nil, fmt.Errorf("rdap: query %s at %s: answer is %T, not an ip network", addr, registry, resp.Object)
	}
	n, err := fromIPNetwork(ipn)
	if err != nil {
		return nil, fmt.Errorf("rdap: query %s at %s: %w", addr, registry, err)
	}
	n.Registry, n.Source = registry, SourceRDAP
	if len(resp.HTTP) > 0 {
		n.Raw = json.RawMessage(resp.HTTP[len(resp.HTTP)-1].Body)
	}
	return n, nil
}

// rangePrefixes turns a start-end range into the CIDRs covering it exactly.
func rangePrefixes(start, end string) ([]netip.Prefix, error) {
	s, err1 := netip.ParseAddr(strings.TrimSpace(start))
	e, err2 := netip.ParseAddr(strings.TrimSpace(end))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("range %q-%q: %w", start, end, err)
	}
	r := netipx.IPRangeFrom(s.Unmap(), e.Unmap())
	if !r.IsValid() {
		return nil, fmt.Errorf("range %s-%s is not valid", s, e)
	}
	return r.Prefixes(), nil
}

func fromIPNetwork(ipn *rdap.IPNetwork) (*Network, error) {
	prefixes, err := rangePrefixes(ipn.StartAddress, ipn.EndAddress)
	if err != nil {
		return nil, err
	}
	n := &Network{Prefixes: prefixes, Handle: ipn.Handle, Name: ipn.Name, Country: ipn.Country}
	n.Org = orgOf(ipn.Entities)
	n.AbuseEmail = abuseOf(ipn.Entities)
	return n, nil
}

func hasRole(e rdap.Entity, role string) bool {
	return slices.ContainsFunc(e.Roles, func(r string) bool { return strings.EqualFold(r, role) })
}

// orgOf names the registrant: its vCard org, else its fn.
func orgOf(entities []rdap.Entity) string {
	for _, e := range entities {
		if hasRole(e, "registrant") && e.VCard != nil {
			if o := e.VCard.Org(); o != "" {
				return o
			}
			if fn := e.VCard.Name(); fn != "" {
				return fn
			}
		}
	}
	return ""
}

// abuseOf finds the e-mail of an entity with the abuse role, searching nested
// entities too (RIRs hang the abuse contact under the registrant).
func abuseOf(entities []rdap.Entity) string {
	for _, e := range entities {
		if hasRole(e, "abuse") && e.VCard != nil {
			if m := e.VCard.Email(); m != "" {
				return m
			}
		}
	}
	for _, e := range entities {
		if m := abuseOf(e.Entities); m != "" {
			return m
		}
	}
	return ""
}
