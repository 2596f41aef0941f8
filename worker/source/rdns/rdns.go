// Package rdns looks up reverse DNS (PTR) names through a configurable
// resolver, with a positive and a negative cache.
package rdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ErrNotFound is returned (wrapped) when an address has no PTR record. It is
// cached for Config.NegativeTTL.
var ErrNotFound = errors.New("rdns: no PTR record")

// Config configures a Resolver. Zero values select the defaults.
type Config struct {
	// Server is the resolver's host:port, e.g. "127.0.0.53:53". Empty uses
	// the servers in /etc/resolv.conf.
	Server string
	// Timeout bounds one lookup, retries included. Default 2s.
	Timeout time.Duration
	// TTL is how long names are cached. Default 1h.
	TTL time.Duration
	// NegativeTTL is how long "no PTR record" is cached. Default 10m.
	NegativeTTL time.Duration
	// MaxEntries bounds the cache. Default 100,000.
	MaxEntries int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

type entry struct {
	names   []string
	missing bool
	expires time.Time
}

// Resolver answers PTR lookups. It is safe for concurrent use.
type Resolver struct {
	cfg      Config
	resolver *net.Resolver

	mu    sync.Mutex
	cache map[netip.Addr]entry
}

// New returns a Resolver for cfg.
func New(cfg Config) *Resolver {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Hour
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = 10 * time.Minute
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Resolver{cfg: cfg, cache: map[netip.Addr]entry{}}
	res := &net.Resolver{PreferGo: true}
	if cfg.Server != "" {
		// The Go resolver still reads resolv.conf for its retry settings;
		// every query it sends goes to cfg.Server whatever server it picked.
		var d net.Dialer
		res.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, cfg.Server)
		}
	}
	r.resolver = res
	return r
}

// Lookup returns the PTR names of addr without trailing dots. An address with
// no PTR record yields an error wrapping ErrNotFound. Failures other than
// "not found" (timeouts, SERVFAIL) are not cached.
func (r *Resolver) Lookup(ctx context.Context, addr netip.Addr) ([]string, error) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return nil, errors.New("rdns: lookup: invalid address")
	}
	now := r.cfg.Now()
	r.mu.Lock()
	e, ok := r.cache[addr]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		if e.missing {
			return nil, fmt.Errorf("rdns: lookup %s: %w", addr, ErrNotFound)
		}
		return e.names, nil
	}

	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	names, err := r.resolver.LookupAddr(ctx, addr.String())
	var dnsErr *net.DNSError
	switch {
	case err == nil && len(names) > 0:
		for i, n := range names {
			names[i] = strings.TrimSuffix(n, ".")
		}
		r.store(addr, entry{names: names, expires: now.Add(r.cfg.TTL)})
		return names, nil
	case err == nil, errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		r.store(addr, entry{missing: true, expires: now.Add(r.cfg.NegativeTTL)})
		return nil, fmt.Errorf("rdns: lookup %s: %w", addr, ErrNotFound)
	default:
		return nil, fmt.Errorf("rdns: lookup %s: %w", addr, err)
	}
}

func (r *Resolver) store(addr netip.Addr, e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= r.cfg.MaxEntries {
		now := r.cfg.Now()
		for k, v := range r.cache {
			if !now.Before(v.expires) {
				delete(r.cache, k)
			}
		}
		// Still full: drop arbitrary entries (map order) rather than keep an
		// LRU list; a cache miss only costs one more query.
		for k := range r.cache {
			if len(r.cache) < r.cfg.MaxEntries {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[addr] = e
}
