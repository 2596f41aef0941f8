package api

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Client is who sent a request, as far as the server can tell.
type Client struct {
	// Addr is the client's address: the peer's, or when the peer is a
	// trusted proxy, the nearest untrusted address of X-Forwarded-For.
	Addr netip.Addr
	// TLS says the request reached the server over TLS, directly or through
	// a trusted proxy that says so (X-Forwarded-Proto: https).
	TLS bool
}

type clientAddrKey struct{}

// WithClientAddr returns ctx carrying the address of the request's client
// (ClientOf's Addr); the HTTP layer sets it for every request.
func WithClientAddr(ctx context.Context, a netip.Addr) context.Context {
	return context.WithValue(ctx, clientAddrKey{}, a)
}

// clientAddr is the client address WithClientAddr put in ctx (invalid when
// none was).
func clientAddr(ctx context.Context) netip.Addr {
	a, _ := ctx.Value(clientAddrKey{}).(netip.Addr)
	return a
}

// ClientOf tells who sent r. X-Forwarded-For and X-Forwarded-Proto are read
// only from a peer inside trusted: anyone else could forge them (to escape a
// rate limit, or to pin it on someone else).
func ClientOf(r *http.Request, trusted []netip.Prefix) Client {
	c := Client{TLS: r.TLS != nil}
	peer, ok := peerAddr(r)
	if !ok {
		return c
	}
	c.Addr = peer
	if !inPrefixes(c.Addr, trusted) {
		return c
	}
	if proto := lastListValue(r.Header.Values("X-Forwarded-Proto")); strings.EqualFold(proto, "https") {
		c.TLS = true
	}
	// Walk the hops from the nearest: every trusted proxy appends the address
	// it heard from, so the first untrusted one is the client.
	hops := listValues(r.Header.Values("X-Forwarded-For"))
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			break // garbage from beyond the proxies: keep the last good hop
		}
		c.Addr = a.Unmap().WithZone("")
		if !inPrefixes(c.Addr, trusted) {
			break
		}
	}
	return c
}

// FromTrustedProxy reports whether r's peer (not X-Forwarded-For) is inside
// trusted: only then may the server believe what the request's headers say
// about earlier hops (client address, scheme, request id).
func FromTrustedProxy(r *http.Request, trusted []netip.Prefix) bool {
	peer, ok := peerAddr(r)
	return ok && inPrefixes(peer, trusted)
}

// peerAddr is the address of r's peer, unmapped and without a zone.
func peerAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return peer.Unmap().WithZone(""), true
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// listValues splits comma-separated header values into their trimmed items.
func listValues(values []string) []string {
	var out []string
	for _, v := range values {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

func lastListValue(values []string) string {
	l := listValues(values)
	if len(l) == 0 {
		return ""
	}
	return l[len(l)-1]
}
