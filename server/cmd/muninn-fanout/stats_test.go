package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestQuantiles(t *testing.T) {
	t.Parallel()
	p50, p99, top := quantiles(nil)
	require.Zero(t, p50+p99+top)
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100-i) * time.Millisecond // 100 ms .. 1 ms, unsorted
	}
	p50, p99, top = quantiles(ds)
	require.Equal(t, 50*time.Millisecond, p50)
	require.Equal(t, 99*time.Millisecond, p99)
	require.Equal(t, 100*time.Millisecond, top)
	require.Equal(t, 100*time.Millisecond, ds[0], "the input is not sorted in place")
	p50, p99, top = quantiles([]time.Duration{3, 1, 2})
	require.Equal(t, []time.Duration{2, 3, 3}, []time.Duration{p50, p99, top})
	p50, p99, top = quantiles([]time.Duration{7})
	require.Equal(t, []time.Duration{7, 7, 7}, []time.Duration{p50, p99, top})
}

func TestProcParsers(t *testing.T) {
	t.Parallel()
	rss, hwm, err := parseStatus(strings.NewReader("Name:\tmuninn\nVmHWM:\t  153600 kB\nVmRSS:\t   91136 kB\nThreads:\t9\n"))
	require.NoError(t, err)
	require.Equal(t, int64(91136<<10), rss)
	require.Equal(t, int64(153600<<10), hwm)
	_, _, err = parseStatus(strings.NewReader("Name:\tmuninn\n"))
	require.Error(t, err)

	// A command name with spaces and a parenthesis; utime 250, stime 45 ticks.
	cpu, err := parseStat("4242 (mu nin) n) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 45 0 0 20 0 9 0 100 0 0")
	require.NoError(t, err)
	require.Equal(t, 2950*time.Millisecond, cpu)
	_, err = parseStat("4242 (x) S 1")
	require.Error(t, err)

	v, ok := gaugeValue("# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 1918\ngo_goroutines_other 3\n", "go_goroutines")
	require.True(t, ok)
	require.Equal(t, 1918.0, v)
	_, ok = gaugeValue("go_threads 9\n", "go_goroutines")
	require.False(t, ok)

	require.True(t, isBackendOf("postgres: 15/main: postgres muninn_fanout 127.0.0.1(5432) idle\x00\x00", "muninn_fanout"))
	require.True(t, isBackendOf("postgres: postgres muninn_fanout [local] idle", "muninn_fanout"))
	require.False(t, isBackendOf("postgres: 15/main: postgres muninn_other 127.0.0.1(5432) idle", "muninn_fanout"))
	require.False(t, isBackendOf("postgres: 15/main: walwriter ", "muninn_fanout"))
}

// The whole harness at a small scale against two real serve processes: every
// bouncer gets the change, both servers answer the same version, no errors.
func TestFanoutSmoke(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := run(ctx, options{n: 20, csShare: 0.25, csEvery: 200 * time.Millisecond, servers: 2, wait: time.Second,
		idle: time.Second, perAddr: 4, bin: os.Getenv("MUNINN_FANOUT_BIN"), db: testDB(), database: "muninn_fanout_test_" + randHex(4), out: &out})
	require.NoError(t, err, out.String())
	t.Log(out.String())
	require.Zero(t, res.errors, res.errSample)
	require.Equal(t, 15, res.muninn)
	require.Equal(t, 5, res.crowdsec)
	require.Len(t, res.wake, 15)
	require.Len(t, res.csWake, 5)
	require.Len(t, res.versions, 1, "every long poll ends on one version")
	require.Len(t, res.serverVersions, 2)
	require.Equal(t, res.serverVersions[0], res.serverVersions[1])
	for v := range res.versions {
		require.Equal(t, res.serverVersions[0], v)
	}
	require.Positive(t, res.idlePolls)
	require.Contains(t, out.String(), "errors: 0")
	require.Zero(t, res.logErrors, res.logSample)
}

func testDB() string {
	if u := os.Getenv("MUNINN_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}
