// Package pgembed runs the embedded default PostgreSQL: when no
// MUNINN_DATABASE_URL is configured, muninn owns a private cluster under its
// data dir, built with the machine's initdb/pg_ctl/postgres and reachable only
// through a Unix socket in a 0700 directory.
package pgembed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultPort names the socket file (.s.PGSQL.5432) when Options.Port is 0.
const DefaultPort = 5432

// Database is the database Start creates for muninn.
const Database = "muninn"

// superuser is the role initdb creates; with --auth=trust on a socket only
// reachable through a 0700 directory, the file system is the access control.
const superuser = "postgres"

// maxSocketPath is the longest socket path the kernel accepts: sun_path is
// 108 bytes including the terminating NUL.
const maxSocketPath = 107

// startTimeout bounds pg_ctl's wait for the server to accept connections
// (crash recovery after a kill can take a while).
const startTimeout = 60 * time.Second

// stopTimeout bounds pg_ctl's wait for the shutdown checkpoint.
const stopTimeout = 60 * time.Second

// Options configures Start.
type Options struct {
	// Dir is muninn's data dir; the cluster lives in Dir/pg.
	Dir string
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
	// BinDir, when set, is used instead of FindBinDir.
	BinDir string
	// Port only names the socket file (.s.PGSQL.<Port>); no TCP port is
	// opened. Zero means DefaultPort.
	Port int
}

// Cluster is a running embedded PostgreSQL cluster owned by this process.
type Cluster struct {
	logger    *slog.Logger
	binDir    string
	root      string // Dir/pg
	dataDir   string // Dir/pg/data
	logFile   string // Dir/pg/postgresql.log
	socketDir string
	tempSock  bool // socketDir is a temp dir to remove on Stop
	port      int
	cred      *syscall.Credential // non-nil when running as root

	mu      sync.Mutex
	stopped bool
}

// Start initializes the cluster under opts.Dir/pg if it has no PG_VERSION
// yet, starts it (stopping a server left running by a previous process
// first), waits until it accepts connections and creates the database
// "muninn" if missing. The caller must call Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("pgembed: start: Options.Dir is empty")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("pgembed: start: %w", err)
	}
	c := &Cluster{
		logger:  opts.Logger,
		root:    filepath.Join(dir, "pg"),
		dataDir: filepath.Join(dir, "pg", "data"),
		logFile: filepath.Join(dir, "pg", "postgresql.log"),
		port:    opts.Port,
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.port == 0 {
		c.port = DefaultPort
	}
	if c.binDir, err = c.chooseBinDir(ctx, opts.BinDir); err != nil {
		return nil, err
	}
	if c.cred, err = credential(os.Geteuid(), superuser); err != nil {
		return nil, err
	}
	if err := c.prepareDirs(); err != nil {
		return nil, err
	}
	if err := c.initIfNeeded(ctx); err != nil {
		c.removeTempSocketDir()
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		c.removeTempSocketDir()
		return nil, err
	}
	if err := c.createDatabase(ctx); err != nil {
		// Leave nothing running behind a failed Start.
		return nil, errors.Join(err, c.Stop(context.WithoutCancel(ctx)))
	}
	c.logger.Info("Embedded PostgreSQL is ready.", "data_dir", c.dataDir, "socket_dir", c.socketDir, "bin_dir", c.binDir)
	return c, nil
}

// URL returns the pgx connection string for the database "muninn", e.g.
// postgres://postgres@/muninn?host=%2Fdata%2Fpg%2Frun&port=5432&sslmode=disable.
func (c *Cluster) URL() string {
	return c.url(Database)
}

func (c *Cluster) url(db string) string {
	// pgx decodes the query with %XX escapes only: a space must be %20,
	// not QueryEscape's "+".
	host := strings.ReplaceAll(url.QueryEscape(c.socketDir), "+", "%20")
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Path:     "/" + db,
		RawQuery: "host=" + host + "&port=" + strconv.Itoa(c.port) + "&sslmode=disable",
	}
	return u.String()
}

// Stop shuts the server down with pg_ctl stop -m fast (active sessions are
// rolled back, then a clean shutdown checkpoint). Calling Stop again is a
// no-op.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	if err := c.pgCtlStop(ctx); err != nil {
		return fmt.Errorf("pgembed: stop: %w", err)
	}
	c.stopped = true
	c.removeTempSocketDir()
	c.logger.Info("Embedded PostgreSQL stopped.", "data_dir", c.dataDir)
	return nil
}

// chooseBinDir returns override (validated) or a discovered bin dir. For an
// existing cluster it prefers binaries of the major version that created it,
// because a newer postgres refuses an older data dir (that needs pg_upgrade).
func (c *Cluster) chooseBinDir(ctx context.Context, override string) (string, error) {
	if override != "" {
		if err := checkBinDir(override); err != nil {
			return "", err
		}
		return override, nil
	}
	dirs := binDirCandidates(os.Getenv("PATH"), debianGlob, sourceBinDir)
	if len(dirs) == 0 {
		return "", ErrNoBinaries
	}
	raw, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION"))
	if err != nil {
		return dirs[0], nil // new cluster (or unreadable: initIfNeeded reports it)
	}
	want := strings.TrimSpace(string(raw))
	for _, d := range dirs {
		if v, err := binVersion(ctx, d); err == nil && v == want {
			return d, nil
		}
	}
	return "", fmt.Errorf("pgembed: cluster %s was created by PostgreSQL %s but no binaries of that version were found (first found: %s): install them, upgrade the cluster with pg_upgrade, or set Options.BinDir",
		c.dataDir, want, dirs[0])
}

// binVersion returns the major version of the postgres binary in dir in
// PG_VERSION's spelling: "15" from "postgres (PostgreSQL) 15.10 (Debian ...)",
// "9.6" for 9.6.x.
func binVersion(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("pgembed: postgres --version: %w", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 3 {
		return "", fmt.Errorf("pgembed: unexpected postgres --version output %q", out)
	}
	parts := strings.Split(fields[2], ".")
	if len(parts) >= 2 && parts[0] == "9" {
		return parts[0] + "." + parts[1], nil
	}
	return strings.TrimRightFunc(parts[0], func(r rune) bool { return r < '0' || r > '9' }), nil
}

// credential returns the identity to run PostgreSQL as: nil (ourselves)
// unless euid is root, which postgres refuses to run as; then the system
// user named name.
func credential(euid int, name string) (*syscall.Credential, error) {
	if euid != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgembed: running as root, which PostgreSQL refuses, and the %q system user to run it as is missing (%w): "+
			"install the postgresql package (it creates the user), run muninn as an unprivileged user, or set MUNINN_DATABASE_URL", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgembed: uid of %q: %w", name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgembed: gid of %q: %w", name, err)
	}
	// Groups is left empty so root's supplementary groups are dropped.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// prepareDirs creates Dir/pg and the socket dir, 0700 and owned by the user
// PostgreSQL runs as.
func (c *Cluster) prepareDirs() error {
	// A data dir created here gets 0711: when PostgreSQL runs as the
	// postgres user it must traverse it, but need not list it.
	if err := os.MkdirAll(filepath.Dir(c.root), 0o711); err != nil {
		return fmt.Errorf("pgembed: create data dir: %w", err)
	}
	if err := os.Mkdir(c.root, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pgembed: create cluster dir: %w", err)
	}
	if c.cred != nil {
		if err := c.chownTree(c.root); err != nil {
			return err
		}
		if err := c.checkTraversable(filepath.Dir(c.root)); err != nil {
			return err
		}
	}

	c.socketDir = filepath.Join(c.root, "run")
	if len(socketPath(c.socketDir, c.port)) > maxSocketPath {
		// A Unix socket path may not exceed 107 bytes, and a deep data dir
		// easily does. Then the socket goes to a short private dir under
		// os.TempDir(), made afresh by every Start and removed by Stop;
		// URL() names it, so callers never build the path themselves.
		d, err := os.MkdirTemp("", "muninn-pg-")
		if err != nil {
			return fmt.Errorf("pgembed: create socket dir: %w", err)
		}
		c.socketDir, c.tempSock = d, true
		if len(socketPath(d, c.port)) > maxSocketPath {
			c.removeTempSocketDir()
			return fmt.Errorf("pgembed: socket path %s is longer than %d bytes even under os.TempDir(): set TMPDIR to a shorter dir", socketPath(d, c.port), maxSocketPath)
		}
		c.logger.Info("Data dir path is too long for a Unix socket; using a temporary socket dir.", "socket_dir", d)
	} else if err := os.MkdirAll(c.socketDir, 0o700); err != nil {
		return fmt.Errorf("pgembed: create socket dir: %w", err)
	}
	// The socket dir's 0700 mode is what keeps other users away from a
	// trust-authenticated server.
	if err := os.Chmod(c.socketDir, 0o700); err != nil {
		return fmt.Errorf("pgembed: chmod socket dir: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(c.socketDir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			c.removeTempSocketDir()
			return fmt.Errorf("pgembed: chown socket dir: %w", err)
		}
	}
	return nil
}

// socketPath is the path of the socket file postgres creates in dir.
func socketPath(dir string, port int) string {
	return filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(port))
}

// chownTree hands dir to the postgres user. Only when dir itself belongs to
// someone else (first run, or restored from a backup as root) does it walk
// the whole tree, so a normal restart stays cheap on a big cluster.
func (c *Cluster) chownTree(dir string) error {
	uid, gid := int(c.cred.Uid), int(c.cred.Gid)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pgembed: chown cluster dir: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid {
		return nil
	}
	err = filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("pgembed: chown cluster dir to %s: %w", superuser, err)
	}
	return nil
}

// checkTraversable reports, before initdb fails with a less obvious message,
// when the postgres user cannot reach the cluster dir because an ancestor
// lacks the search (x) permission for it. It reads mode bits only; ACLs are
// not considered.
func (c *Cluster) checkTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgembed: check access to %s: %w", d, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		mode := fi.Mode().Perm()
		var can bool
		switch {
		case st.Uid == c.cred.Uid:
			can = mode&0o100 != 0
		case st.Gid == c.cred.Gid:
			can = mode&0o010 != 0
		default:
			can = mode&0o001 != 0
		}
		if !can {
			return fmt.Errorf("pgembed: PostgreSQL runs as the %q user (muninn runs as root) and cannot enter %s (mode %v): grant search permission, e.g. chmod o+x %s",
				superuser, d, mode, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// initIfNeeded runs initdb unless the data dir already has a PG_VERSION.
func (c *Cluster) initIfNeeded(ctx context.Context) error {
	_, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION"))
	if err == nil {
		c.logger.Info("Reusing the embedded PostgreSQL cluster.", "data_dir", c.dataDir)
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pgembed: init: %w", err)
	}
	c.logger.Info("Initializing the embedded PostgreSQL cluster.", "data_dir", c.dataDir, "bin_dir", c.binDir)
	// initdb refuses a non-empty data dir: a leftover from an interrupted
	// initdb (no PG_VERSION yet) holds nothing worth keeping.
	if err := os.RemoveAll(c.dataDir); err != nil {
		return fmt.Errorf("pgembed: init: remove partial data dir: %w", err)
	}
	out, err := c.run(ctx, "initdb", "-D", c.dataDir, "-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C")
	if err != nil {
		return fmt.Errorf("pgembed: initdb: %w\n%s", err, tail(out, 20))
	}
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgembed: init: open postgresql.conf: %w", err)
	}
	_, werr := io.WriteString(f, confTuning)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("pgembed: init: append postgresql.conf: %w", err)
	}
	return nil
}

// confTuning is appended to postgresql.conf once, at initdb. The socket dir,
// port and listen_addresses are passed on every start instead, since the
// socket dir can change between runs.
const confTuning = `
# Added by muninn (server/pgembed) for a small host.
shared_buffers = 128MB
max_connections = 100
fsync = on
# stderr goes to postgresql.log next to the data dir (pg_ctl -l); muninn
# quotes its tail in errors.
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] '
log_timezone = 'UTC'
timezone = 'UTC'
`

// start starts the server, first stopping one a previous muninn left
// running (muninn killed without a chance to run Stop leaves its postmaster
// behind). A postmaster.pid left by a killed postmaster is handled by
// postgres itself, but its children take a moment to exit and release the
// shared memory, so that case is retried for a while.
func (c *Cluster) start(ctx context.Context) error {
	if c.running(ctx) {
		c.logger.Warn("An embedded PostgreSQL server from a previous run is still running; restarting it.", "data_dir", c.dataDir)
		if err := c.pgCtlStop(ctx); err != nil {
			return fmt.Errorf("pgembed: stop previous server: %w", err)
		}
	}
	return c.startServer(ctx)
}

// startServer runs pg_ctl start, retrying while a killed server's children
// still hold its shared memory.
func (c *Cluster) startServer(ctx context.Context) error {
	opts := fmt.Sprintf("-k %s -p %d -c listen_addresses=''", shellQuote(c.socketDir), c.port)
	deadline := time.Now().Add(30 * time.Second)
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		_, err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "-l", c.logFile, "-w", "-t", strconv.Itoa(int(startTimeout.Seconds())), "start", "-o", opts)
		if err == nil {
			return nil
		}
		logTail := c.logTail()
		if !strings.Contains(logTail, "pre-existing shared memory block") || time.Now().After(deadline) {
			return fmt.Errorf("pgembed: start: %w%s", err, logTail)
		}
		c.logger.Info("Processes of a killed PostgreSQL server still hold shared memory; retrying.", "backoff", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgembed: start: %w%s", ctx.Err(), logTail)
		case <-time.After(backoff):
		}
	}
}

// pgCtlStop runs pg_ctl stop -m fast and waits for the shutdown; its error
// quotes the server log.
func (c *Cluster) pgCtlStop(ctx context.Context) error {
	_, err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "-m", "fast", "-w", "-t", strconv.Itoa(int(stopTimeout.Seconds())), "stop")
	if err != nil {
		return fmt.Errorf("%w%s", err, c.logTail())
	}
	return nil
}

// running reports whether pg_ctl status finds a live server for the data dir.
func (c *Cluster) running(ctx context.Context) bool {
	_, err := c.run(ctx, "pg_ctl", "-D", c.dataDir, "status")
	return err == nil // exit 3: not running; 4: no data dir
}

// createDatabase creates the muninn database unless it exists.
func (c *Cluster) createDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		return fmt.Errorf("pgembed: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{Database}.Sanitize())
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("pgembed: create database %s: %w", Database, err)
	}
	c.logger.Info("Created the muninn database.", "database", Database)
	return nil
}

// run runs a PostgreSQL program from the bin dir as the cluster's user and
// returns its combined output; a failure's error quotes the output's tail.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	// The cwd must be readable by the postgres user (root's home is not).
	cmd.Dir = c.root
	cmd.Env = cleanEnv(os.Environ())
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// pg_ctl start leaves the postmaster holding inherited descriptors;
	// WaitDelay keeps Wait from blocking on them.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		return out.Bytes(), fmt.Errorf("%s: %w: %s", name, err, tail(out.Bytes(), 5))
	}
	return out.Bytes(), nil
}

// cleanEnv drops PG* variables: PGPORT, PGDATA, PGHOST and friends would
// silently redirect the tools away from our cluster.
func cleanEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return out
}

// logTail returns the last lines of the server log, formatted to be appended
// to an error, or "" if there is none.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.logFile)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	return "\n" + c.logFile + " (tail):\n" + tail(b, 20)
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// shellQuote quotes s for the /bin/sh command line pg_ctl builds from -o.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// removeTempSocketDir removes the socket dir when it was made under
// os.TempDir() for this run.
func (c *Cluster) removeTempSocketDir() {
	if c.tempSock {
		if err := os.RemoveAll(c.socketDir); err != nil {
			c.logger.Warn("Could not remove the temporary socket dir.", "socket_dir", c.socketDir, "error", err)
		}
	}
}

// RunningURL returns the URL of a cluster under dir that another process (a
// running `muninn serve`) owns, when its socket answers; admin commands use it
// so they never restart a cluster out from under the server.
func RunningURL(dir string) (string, bool) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	c := &Cluster{socketDir: filepath.Join(abs, "pg", "run"), port: DefaultPort}
	conn, err := net.DialTimeout("unix", socketPath(c.socketDir, c.port), time.Second)
	if err != nil {
		return "", false
	}
	_ = conn.Close()
	return c.URL(), true
}
