package rdap

import (
	"net/netip"
	"sync"
	"time"
)

// netCache keys answers by the networks they describe, so a lookup for any
// address inside a cached network is a hit. Caveat: a registry answers with
// the most specific network for the queried address; a later address in a
// more specific sub-assignment of a cached network gets the wider answer
// until it expires.
type netCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[netip.Prefix]cacheEntry
}

type cacheEntry struct {
	net     *Network
	expires time.Time
}

func newNetCache(ttl time.Duration, max int, now func() time.Time) *netCache {
	return &netCache{ttl: ttl, max: max, now: now, entries: map[netip.Prefix]cacheEntry{}}
}

// get returns the cached network holding addr, most specific first.
func (c *netCache) get(addr netip.Addr) (*Network, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) == 0 {
		return nil, false
	}
	for bits := addr.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(addr, bits).Masked()
		if e, ok := c.entries[p]; ok {
			if now.Before(e.expires) {
				return e.net, true
			}
			delete(c.entries, p)
		}
	}
	return nil, false
}

func (c *netCache) put(n *Network) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries)+len(n.Prefixes) > c.max {
		for p, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, p)
			}
		}
		// Still full: drop arbitrary entries; a miss costs one query.
		for p := range c.entries {
			if len(c.entries)+len(n.Prefixes) <= c.max {
				break
			}
			delete(c.entries, p)
		}
	}
	for _, p := range n.Prefixes {
		c.entries[p] = cacheEntry{net: n, expires: now.Add(c.ttl)}
	}
}
