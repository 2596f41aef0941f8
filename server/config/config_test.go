package config_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, "./data", c.DataDir)
	require.Equal(t, "127.0.0.1:8080", c.Listen)
	require.Equal(t, "http://127.0.0.1:8080", c.BaseURL)
	require.Empty(t, c.DatabaseURL, "no URL means the embedded cluster")
	require.EqualValues(t, 100<<20, c.MaxIngestBytes)
	require.Equal(t, 24*time.Hour, c.HoneypotTTL)
	c, err = config.FromEnv(env(map[string]string{"MUNINN_HONEYPOT_TTL": "2h"}))
	require.NoError(t, err)
	require.Equal(t, 2*time.Hour, c.HoneypotTTL)
	_, err = config.FromEnv(env(map[string]string{"MUNINN_HONEYPOT_TTL": "0s"}))
	require.ErrorContains(t, err, "MUNINN_HONEYPOT_TTL")
}

func TestSecretFromFile(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "url")
	require.NoError(t, os.WriteFile(f, []byte("postgres://u@db/muninn\n"), 0o600))
	c, err := config.FromEnv(env(map[string]string{"MUNINN_DATABASE_URL_FILE": f, "MUNINN_SIGHTING_RETENTION": "48h"}))
	require.NoError(t, err)
	require.Equal(t, "postgres://u@db/muninn", c.DatabaseURL)
	require.Equal(t, 48*time.Hour, c.SightingRetention)
}

func TestErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	_, err := config.FromEnv(env(map[string]string{
		"MUNINN_LOG_LEVEL": "loud", "MUNINN_SIGHTING_RETENTION": "forever", "MUNINN_MAX_INGEST_BYTES": "-1",
		"MUNINN_DATABASE_URL_FILE": "/nonexistent/x",
	}))
	require.Error(t, err)
	for _, name := range []string{"MUNINN_SIGHTING_RETENTION", "MUNINN_MAX_INGEST_BYTES", "MUNINN_DATABASE_URL_FILE"} {
		require.Contains(t, err.Error(), name)
	}
	_, err = config.FromEnv(env(map[string]string{"MUNINN_LOG_LEVEL": "loud"}))
	require.ErrorContains(t, err, "MUNINN_LOG_LEVEL")
}

func TestHoneypotRate(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, 100.0, c.HoneypotRate)
	c, err = config.FromEnv(env(map[string]string{"MUNINN_HONEYPOT_RATE": "2.5"}))
	require.NoError(t, err)
	require.Equal(t, 2.5, c.HoneypotRate)
	for _, v := range []string{"0", "-1", "NaN", "+Inf", "fast"} {
		_, err = config.FromEnv(env(map[string]string{"MUNINN_HONEYPOT_RATE": v}))
		require.EqualError(t, err, `config: MUNINN_HONEYPOT_RATE: "`+v+`" is not a positive number of hits per second`, v)
	}
}

func TestSafetyDefaultsAndLists(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(map[string]string{"MUNINN_DATA_DIR": "/var/lib/muninn"}))
	require.NoError(t, err)
	require.Empty(t, c.TrustedProxies)
	require.Empty(t, c.FeedAllowNetworks)
	require.Equal(t, "/var/lib/muninn/feeds", c.FeedFileDir)
	require.Equal(t, 2, c.LoginHashConcurrency)
	require.Equal(t, 30*time.Second, c.StatementTimeout)
	require.Equal(t, 4, c.SearchConcurrency)
	require.Equal(t, 64, c.MaxConnsPerClient)

	c, err = config.FromEnv(env(map[string]string{"MUNINN_TRUSTED_PROXIES": "192.0.2.10, 2001:db8::/48,::ffff:198.51.100.1",
		"MUNINN_FEED_ALLOW_NETWORKS": "127.0.0.1/8"}))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("2001:db8::/48"),
		netip.MustParsePrefix("198.51.100.1/32")}, c.TrustedProxies)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, c.FeedAllowNetworks)

	_, err = config.FromEnv(env(map[string]string{"MUNINN_TRUSTED_PROXIES": "proxy.example"}))
	require.ErrorContains(t, err, `MUNINN_TRUSTED_PROXIES: "proxy.example" is not an address or CIDR`)
}
