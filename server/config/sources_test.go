package config_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/config"
)

func TestSourceDefaultsAndOverrides(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(map[string]string{"MUNINN_DATA_DIR": "/var/lib/muninn"}))
	require.NoError(t, err)
	require.Equal(t, filepath.Join("/var/lib/muninn", "geo"), c.GeoDir)
	require.True(t, c.RDAP)
	require.True(t, c.RDNS)
	require.InDelta(t, 1.0, c.RDAPRate, 0)
	require.Equal(t, 10, c.QueueConcurrency)

	c, err = config.FromEnv(env(map[string]string{"MUNINN_GEO_DIR": "/geo", "MUNINN_RDAP": "false", "MUNINN_RDAP_RATE": "0.5",
		"MUNINN_RESOLVER": "127.0.0.53:53", "MUNINN_QUEUE_CONCURRENCY": "3", "MUNINN_ENRICH_CONCURRENCY": "1"}))
	require.NoError(t, err)
	require.Equal(t, "/geo", c.GeoDir)
	require.False(t, c.RDAP)
	require.InDelta(t, 0.5, c.RDAPRate, 0)
	require.Equal(t, "127.0.0.53:53", c.Resolver)
	require.Equal(t, 3, c.QueueConcurrency)
	require.Equal(t, 1, c.EnrichConcurrency)

	_, err = config.FromEnv(env(map[string]string{"MUNINN_RDAP_RATE": "fast", "MUNINN_QUEUE_CONCURRENCY": "0", "MUNINN_RDNS": "maybe"}))
	require.ErrorContains(t, err, "MUNINN_RDAP_RATE")
	require.ErrorContains(t, err, "MUNINN_QUEUE_CONCURRENCY")
	require.ErrorContains(t, err, "MUNINN_RDNS")
}
