package pgembed

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestSuperviseRestartsKilledServer kills the postmaster (as the OOM killer
// would) and sees the supervisor start it again on the same data.
func TestSuperviseRestartsKilledServer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	c := startCluster(ctx, t, b.opts)
	_, err := connect(ctx, t, c).Exec(ctx, "create table notes (body text); insert into notes values ('kept')")
	require.NoError(t, err)

	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Supervise(sctx, 20*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done }) // before Stop (cleanups run last-in first-out)

	old := c.PID()
	require.Positive(t, old)
	require.True(t, c.Alive())
	require.NoError(t, syscall.Kill(old, syscall.SIGKILL))
	require.Eventually(t, func() bool {
		pid := c.PID()
		return pid != 0 && pid != old && c.Alive()
	}, 2*time.Minute, 20*time.Millisecond, "the supervisor starts a new postmaster")
	require.Eventually(t, func() bool {
		conn, err := pgx.Connect(ctx, c.URL())
		if err != nil {
			return false
		}
		defer conn.Close(ctx)
		var n int
		return conn.QueryRow(ctx, "select count(*) from notes").Scan(&n) == nil && n == 1
	}, time.Minute, 20*time.Millisecond, "the restarted server has the data")
	require.Eventually(t, func() bool { return strings.Contains(b.logs.String(), "Restarted the embedded PostgreSQL server.") },
		time.Minute, 20*time.Millisecond)
	require.Contains(t, b.logs.String(), "The embedded PostgreSQL server is not running; restarting it.")
}

// After Stop the supervisor leaves the cluster down.
func TestSuperviseLeavesStoppedCluster(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	c, err := Start(ctx, b.opts)
	require.NoError(t, err)
	require.NoError(t, c.Stop(ctx))
	require.False(t, c.Alive())
	require.Equal(t, errStopped, c.restart(ctx))
	require.False(t, c.Alive())
}

func TestLockDataDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	l, err := LockDataDir(dir, "muninn serve")
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(dir, LockFile))
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(string(raw)), itoa(os.Getpid())+" muninn serve")

	// flock locks belong to the open file, so a second open in this process
	// conflicts exactly as another process would.
	_, err = LockDataDir(dir, "muninn worker")
	le, ok := err.(*LockedError)
	require.True(t, ok, "%v", err)
	require.Equal(t, os.Getpid(), le.PID)
	require.Equal(t, "muninn serve", le.Command)
	abs, _ := filepath.Abs(dir)
	require.Equal(t, "pgembed: the data dir "+abs+" is in use by another muninn (pid "+itoa(os.Getpid())+
		", muninn serve), which owns its embedded PostgreSQL: stop it first, or give this one another MUNINN_DATA_DIR; nothing was changed", err.Error())
	raw2, err := os.ReadFile(filepath.Join(dir, LockFile))
	require.NoError(t, err)
	require.Equal(t, raw, raw2, "the refused process wrote nothing")

	require.NoError(t, l.Release())
	require.NoError(t, l.Release(), "second Release is a no-op")
	l2, err := LockDataDir(dir, "muninn worker")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l2.Release() })
	raw, err = os.ReadFile(filepath.Join(dir, LockFile))
	require.NoError(t, err)
	require.Equal(t, itoa(os.Getpid())+" muninn worker\n", string(raw))
}

func itoa(n int) string { return strconv.Itoa(n) }
