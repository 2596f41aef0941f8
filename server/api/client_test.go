package api_test

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api"
)

func TestClientOf(t *testing.T) {
	t.Parallel()
	proxies := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28"), netip.MustParsePrefix("2001:db8:1::/48")}
	for _, c := range []struct {
		name, peer string
		xff, proto []string
		tls        bool
		trusted    []netip.Prefix
		addr       string
		overTLS    bool
	}{
		{name: "direct", peer: "198.51.100.7:4242", addr: "198.51.100.7"},
		{name: "direct TLS", peer: "198.51.100.7:4242", tls: true, addr: "198.51.100.7", overTLS: true},
		{name: "forged headers from an untrusted peer", peer: "198.51.100.7:4242", xff: []string{"203.0.113.9"}, proto: []string{"https"},
			trusted: proxies, addr: "198.51.100.7"},
		{name: "through a trusted proxy", peer: "192.0.2.1:4242", xff: []string{"203.0.113.9"}, proto: []string{"https"}, trusted: proxies,
			addr: "203.0.113.9", overTLS: true},
		{name: "a client's forged hop before the real one", peer: "192.0.2.1:4242", xff: []string{"10.9.9.9, 203.0.113.9"}, trusted: proxies,
			addr: "203.0.113.9"},
		{name: "two trusted proxies, two headers", peer: "[2001:db8:1::5]:4242", xff: []string{"203.0.113.9", "192.0.2.2"}, trusted: proxies,
			addr: "203.0.113.9"},
		{name: "garbage beyond the proxies", peer: "192.0.2.1:4242", xff: []string{"not-an-ip, 192.0.2.3"}, trusted: proxies, addr: "192.0.2.3"},
		{name: "mapped peer", peer: "[::ffff:198.51.100.7]:4242", addr: "198.51.100.7"},
		{name: "proxy says http", peer: "192.0.2.1:4242", proto: []string{"https, http"}, trusted: proxies, addr: "192.0.2.1"},
	} {
		r, err := http.NewRequest(http.MethodGet, "http://muninn.example/ui/login", nil)
		require.NoError(t, err)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		for _, v := range c.proto {
			r.Header.Add("X-Forwarded-Proto", v)
		}
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		got := api.ClientOf(r, c.trusted)
		require.Equal(t, api.Client{Addr: netip.MustParseAddr(c.addr), TLS: c.overTLS}, got, c.name)
	}
}
