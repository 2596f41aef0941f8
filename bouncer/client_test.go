package bouncer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/bouncer/apiclient"
)

// roundTrip encodes in, decodes it strictly into the generated model gen, and decodes
// the model's encoding back into out: the wire types and the contract must agree on
// every field, in both directions.
func roundTrip[W, G any](t *testing.T, in W) W {
	t.Helper()
	raw, err := json.Marshal(in)
	require.NoError(t, err)
	var gen G
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&gen), "wire JSON the contract does not describe: %s", raw)
	back, err := json.Marshal(gen)
	require.NoError(t, err)
	var out W
	dec = json.NewDecoder(bytes.NewReader(back))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&out), "contract JSON the wire types do not read: %s", back)
	return out
}

// TestWireMatchesContract keeps bouncer/wire.go and openapi/bouncer.yaml (through the
// generated models) in step.
func TestWireMatchesContract(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	full := render(7)
	full.GeneratedAt = at
	full.Scope.IIFNames = []string{"eth0"}
	full.Honeypot.UDP = []uint16{}
	full.GuardRemoved = []bouncer.GuardRemoved{{Prefix: "8.8.8.8/32", Rule: 1, Reason: "public resolver"}}
	delta := render(8)
	delta.GeneratedAt, delta.Delta, delta.BaseVersion = at, true, 7
	delta.Rules = []bouncer.RenderRule{{ID: 1, Action: "block", AddV4: []string{"192.0.2.9/32"}, DelV4: []string{"192.0.2.8/32"},
		AddV6: []string{"2001:db8::9/128"}, DelV6: []string{"2001:db8::8/128"}}}
	resp := bouncer.RenderResponse{Rulesets: []bouncer.Render{full, delta}, Removed: []string{"gone"}}
	require.Equal(t, resp, roundTrip[bouncer.RenderResponse, apiclient.RenderResponse](t, resp))

	hb := bouncer.Heartbeat{Hostname: "fw1", Version: "test", Applied: map[string]int64{"traefik": 8},
		Counters: []bouncer.RuleCounter{{Ruleset: "traefik", RuleID: 1, Packets: 1 << 40, Bytes: 1 << 50}}, LastError: "boom"}
	require.Equal(t, hb, roundTrip[bouncer.Heartbeat, apiclient.Heartbeat](t, hb))

	rep := bouncer.Report{Honeypot: []bouncer.HoneypotHit{{IP: "198.51.100.7", Ruleset: "traefik", Port: 2323, Protocol: "tcp", SeenAt: at}}}
	require.Equal(t, rep, roundTrip[bouncer.Report, apiclient.Report](t, rep))
}

// TestClientBadServer: a malformed server URL fails every call with the reason.
func TestClientBadServer(t *testing.T) {
	t.Parallel()
	c := bouncer.NewClient("http://[::1", "k", nil)
	_, _, err := c.Render(t.Context(), nil, 0)
	require.ErrorContains(t, err, "api: server")
	require.ErrorContains(t, c.Heartbeat(t.Context(), bouncer.Heartbeat{}), "api: server")
}

func TestServerAddrs(t *testing.T) {
	t.Parallel()
	var asked []string
	lookup := func(_ context.Context, network, host string) ([]netip.Addr, error) {
		asked = append(asked, network+" "+host)
		if host == "down.example" {
			return nil, errors.New("no such host")
		}
		return []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.11"), netip.MustParseAddr("2001:db8::11")}, nil
	}
	for _, c := range []struct {
		base string
		want []netip.Addr
		err  string
	}{
		{base: "https://192.0.2.10:8443", want: []netip.Addr{netip.MustParseAddr("192.0.2.10")}},
		{base: "http://[2001:db8::10]:8080/", want: []netip.Addr{netip.MustParseAddr("2001:db8::10")}},
		{base: "https://muninn.example", want: []netip.Addr{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8::11")}},
		{base: "https://down.example:8443", err: "api: resolve server down.example: no such host"},
		{base: "/relative", err: `api: server "/relative": no host`},
	} {
		got, err := bouncer.ServerAddrs(t.Context(), c.base, lookup)
		if c.err != "" {
			require.EqualError(t, err, c.err, c.base)
			continue
		}
		require.NoError(t, err, c.base)
		require.Equal(t, c.want, got, c.base)
	}
	require.Equal(t, []string{"ip muninn.example", "ip down.example"}, asked, "literals are never looked up")
}
