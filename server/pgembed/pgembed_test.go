package pgembed

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// logBuffer records log lines and forwards them to t.Log, so a test can
// assert on what Start reported.
type logBuffer struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	return testWriter{l.t}.Write(p)
}

// String returns what was logged so far (safe while another goroutine logs).
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type testBundle struct {
	dir  string
	logs *logBuffer
	opts Options
}

// setup returns Options for a fresh data dir the postgres user can reach:
// t.TempDir() makes its dirs 0700, which root can enter but postgres cannot.
func setup(t *testing.T) *testBundle {
	t.Helper()
	if _, err := FindBinDir(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run this: make deps installs PostgreSQL: %v", err)
		}
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	logs := &logBuffer{t: t}
	return &testBundle{
		dir:  dir,
		logs: logs,
		opts: Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))},
	}
}

// startCluster starts a cluster and stops it at cleanup, also on failure.
func startCluster(ctx context.Context, t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Stop(context.Background())) })
	return c
}

func connect(ctx context.Context, t *testing.T, c *Cluster) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func selectOne(ctx context.Context, t *testing.T, c *Cluster) {
	t.Helper()
	var n int
	require.NoError(t, connect(ctx, t, c).QueryRow(ctx, "select 1").Scan(&n))
	require.Equal(t, 1, n)
}

func countNotes(ctx context.Context, t *testing.T, c *Cluster) int {
	t.Helper()
	var n int
	require.NoError(t, connect(ctx, t, c).QueryRow(ctx, "select count(*) from notes").Scan(&n))
	return n
}

func TestStartStopReuse(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)

	c, err := Start(ctx, b.opts)
	require.NoError(t, err)
	selectOne(ctx, t, c)
	if os.Geteuid() == 0 {
		// Running as root exercises the postgres-user path.
		fi, err := os.Stat(filepath.Join(b.dir, "pg", "data", "PG_VERSION"))
		require.NoError(t, err)
		require.NotEqual(t, uint32(0), fi.Sys().(*syscall.Stat_t).Uid, "cluster files must not belong to root")
	}
	fi, err := os.Stat(filepath.Join(b.dir, "pg", "run"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	conn := connect(ctx, t, c)
	_, err = conn.Exec(ctx, "create table notes (body text); insert into notes values ('kept')")
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))
	require.NoError(t, c.Stop(ctx))
	require.NoError(t, c.Stop(ctx), "second Stop is a no-op")
	_, err = pgx.Connect(ctx, c.URL())
	require.Error(t, err, "server must be down after Stop")
	require.Contains(t, b.logs.buf.String(), "Initializing")

	// Second start: the cluster is reused, not re-initialized.
	b.logs.buf.Reset()
	c = startCluster(ctx, t, b.opts)
	require.NotContains(t, b.logs.buf.String(), "Initializing")
	require.Contains(t, b.logs.buf.String(), "Reusing")
	require.Equal(t, 1, countNotes(ctx, t, c))
}

func TestStartAfterKill(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)

	c, err := Start(ctx, b.opts)
	require.NoError(t, err)
	_, err = connect(ctx, t, c).Exec(ctx, "create table notes (body text); insert into notes values ('kept')")
	require.NoError(t, err)

	// kill -9 the postmaster, as an OOM killer would: postmaster.pid and
	// the socket lock file stay behind.
	pidFile := filepath.Join(b.dir, "pg", "data", "postmaster.pid")
	raw, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.SplitN(string(raw), "\n", 2)[0])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	// Wait until init has reaped it: a zombie still answers kill(pid, 0),
	// so postgres would take it for a live postmaster.
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) == syscall.ESRCH }, 60*time.Second, 20*time.Millisecond)
	require.FileExists(t, pidFile, "the killed postmaster leaves its pid file")

	c = startCluster(ctx, t, b.opts)
	require.Equal(t, 1, countNotes(ctx, t, c))
}

// A muninn killed without running Stop leaves its postmaster running; the
// next Start restarts it rather than failing on the live postmaster.pid.
func TestStartWhileStillRunning(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)

	// The first Cluster is dropped without Stop; the second one, on the
	// same data dir, stops its server.
	_, err := Start(ctx, b.opts)
	require.NoError(t, err)
	c := startCluster(ctx, t, b.opts)
	selectOne(ctx, t, c)
	require.Contains(t, b.logs.buf.String(), "still running")
}

func TestStartLongPath(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	b.opts.Dir = filepath.Join(b.dir, strings.Repeat("d", 100))

	c, err := Start(ctx, b.opts)
	require.NoError(t, err)
	u, err := url.Parse(c.URL())
	require.NoError(t, err)
	host := u.Query().Get("host")
	require.True(t, strings.HasPrefix(host, os.TempDir()), "socket dir %s should be under os.TempDir()", host)
	require.LessOrEqual(t, len(socketPath(host, DefaultPort)), maxSocketPath)
	selectOne(ctx, t, c)

	require.NoError(t, c.Stop(ctx))
	require.NoDirExists(t, host, "Stop removes the temporary socket dir")
}

func TestStartNoBinaries(t *testing.T) {
	// t.Setenv forbids t.Parallel.
	t.Setenv("PATH", "")
	dir := t.TempDir()

	_, err := Start(t.Context(), Options{Dir: dir, BinDir: filepath.Join(dir, "bogus")})
	require.ErrorIs(t, err, ErrNoBinaries)
	require.ErrorContains(t, err, "apt-get install postgresql")
	require.ErrorContains(t, err, "MUNINN_DATABASE_URL")
	require.ErrorContains(t, err, "bogus")
	require.NoDirExists(t, filepath.Join(dir, "pg"), "nothing is created without binaries")
}

func TestFindBinDir(t *testing.T) {
	t.Setenv("PATH", "")
	dir, err := FindBinDir()
	if errors.Is(err, ErrNoBinaries) {
		t.Skip("no PostgreSQL binaries outside PATH on this machine")
	}
	require.NoError(t, err)
	require.True(t, hasBinaries(dir))
}

func TestBinDirCandidates(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mkBin := func(dir string) string {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for _, name := range requiredBinaries {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o755))
		}
		return dir
	}
	onPath := mkBin(filepath.Join(root, "path"))
	v96 := mkBin(filepath.Join(root, "lib", "9.6", "bin"))
	v16 := mkBin(filepath.Join(root, "lib", "16", "bin"))
	v15 := mkBin(filepath.Join(root, "lib", "15", "bin"))
	incomplete := filepath.Join(root, "lib", "17", "bin")
	require.NoError(t, os.MkdirAll(incomplete, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(incomplete, "pg_ctl"), nil, 0o755))
	local := mkBin(filepath.Join(root, "local"))
	glob := filepath.Join(root, "lib", "*", "bin")

	t.Run("Order", func(t *testing.T) {
		t.Parallel()
		got := binDirCandidates(filepath.Join(root, "nothing")+":"+onPath+":"+onPath, glob, local)
		require.Equal(t, []string{onPath, v16, v15, v96, local}, got)
	})
	t.Run("None", func(t *testing.T) {
		t.Parallel()
		require.Empty(t, binDirCandidates("", filepath.Join(root, "none", "*"), filepath.Join(root, "missing")))
	})
	t.Run("OverrideIncomplete", func(t *testing.T) {
		t.Parallel()
		require.ErrorIs(t, checkBinDir(incomplete), ErrNoBinaries)
		require.NoError(t, checkBinDir(v15))
	})
}

func TestCredential(t *testing.T) {
	t.Parallel()
	cred, err := credential(1000, "muninn-no-such-user")
	require.NoError(t, err)
	require.Nil(t, cred, "a non-root user runs PostgreSQL itself")

	_, err = credential(0, "muninn-no-such-user")
	require.ErrorContains(t, err, `"muninn-no-such-user" system user`)
	require.ErrorContains(t, err, "MUNINN_DATABASE_URL")
}

func TestStartUntraversableDir(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to the postgres user")
	}
	b := setup(t)
	locked := filepath.Join(b.dir, "locked")
	require.NoError(t, os.Mkdir(locked, 0o700))
	b.opts.Dir = filepath.Join(locked, "muninn")

	_, err := Start(t.Context(), b.opts)
	require.ErrorContains(t, err, "cannot enter "+locked)
	require.ErrorContains(t, err, "chmod o+x")
}

func TestURL(t *testing.T) {
	t.Parallel()
	c := &Cluster{socketDir: "/var/lib/my muninn&co/pg/run", port: 5433}
	require.Equal(t, "postgres://postgres@/muninn?host=%2Fvar%2Flib%2Fmy%20muninn%26co%2Fpg%2Frun&port=5433&sslmode=disable", c.URL())

	cfg, err := pgx.ParseConfig(c.URL())
	require.NoError(t, err)
	require.Equal(t, "/var/lib/my muninn&co/pg/run", cfg.Host)
	require.Equal(t, uint16(5433), cfg.Port)
	require.Equal(t, "postgres", cfg.User)
	require.Equal(t, "muninn", cfg.Database)
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	require.Equal(t, `'/a b/it'\''s'`, shellQuote("/a b/it's"))
}

func TestTail(t *testing.T) {
	t.Parallel()
	require.Equal(t, "b\nc", tail([]byte("a\nb\nc\n"), 2))
	require.Equal(t, "a", tail([]byte("a"), 5))
}

func ExampleStart() {
	ctx := context.Background()
	c, err := Start(ctx, Options{Dir: "/var/lib/muninn"})
	if err != nil {
		slog.Error("Could not start the embedded PostgreSQL.", "error", err)
		return
	}
	defer c.Stop(ctx)
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		slog.Error("Could not connect.", "error", err)
		return
	}
	defer conn.Close(ctx)
}
