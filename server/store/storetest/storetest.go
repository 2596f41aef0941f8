// Package storetest gives each test its own freshly migrated PostgreSQL
// database, cloned from a template that is migrated once per schema version.
//
// The server is MUNINN_TEST_DATABASE_URL, else PostgreSQL on 127.0.0.1:5432 as
// postgres with trust auth, else a throwaway cluster started with the machine's
// PostgreSQL binaries under the temp dir (shared by test processes and left
// running for the next run).
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/migrations"
	"github.com/muninn/muninn/server/pgembed"
	"github.com/muninn/muninn/server/store"
)

var (
	adminOnce sync.Once
	adminURL  string
	adminErr  error
)

// serverURL finds the PostgreSQL server tests use, as a URL to its maintenance database.
func serverURL() (string, error) {
	adminOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		candidates := []string{os.Getenv("MUNINN_TEST_DATABASE_URL")}
		if candidates[0] == "" {
			candidates = []string{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3"}
		}
		for _, u := range candidates {
			if c, err := pgx.Connect(ctx, u); err == nil {
				_ = c.Close(ctx)
				adminURL = u
				return
			} else if os.Getenv("MUNINN_TEST_DATABASE_URL") != "" {
				adminErr = fmt.Errorf("storetest: MUNINN_TEST_DATABASE_URL: %w", err)
				return
			}
		}
		dir := filepath.Join(os.TempDir(), "muninn-test-pg")
		if u, ok := pgembed.RunningURL(dir); ok {
			adminURL = u
			return
		}
		cl, err := pgembed.Start(ctx, pgembed.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			adminErr = fmt.Errorf("storetest: no PostgreSQL at 127.0.0.1:5432 and none could be started: %w", err)
			return
		}
		adminURL = cl.URL()
	})
	return adminURL, adminErr
}

// schemaHash names the template after the migrations' content, so a changed
// migration gets a fresh template.
func schemaHash() string {
	h := sha256.New()
	_ = fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := migrations.FS.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, _ = io.WriteString(h, path)
		_, err = io.Copy(h, f)
		return err
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// urlFor rewrites the database name of a URL.
func urlFor(u, db string) (string, error) {
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return "", err
	}
	cfg.ConnConfig.Database = db
	host := cfg.ConnConfig.Host
	return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d&sslmode=disable", cfg.ConnConfig.User, db, host, cfg.ConnConfig.Port), nil
}

const templateLock = 0x6d756e74 // "munt"

func ensureTemplate(ctx context.Context, admin *pgx.Conn, base, name string) error {
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock($1)`, templateLock); err != nil {
		return err
	}
	defer admin.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, templateLock) //nolint:errcheck // the session ends soon
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	building := name + "_building"
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+building+` WITH (FORCE)`); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+building); err != nil {
		return err
	}
	u, err := urlFor(base, building)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, u, 4, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	_, err = st.Migrate(ctx)
	st.Close()
	if err != nil {
		return err
	}
	_, err = admin.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+name)
	return err
}

// testDBPrefix starts the name of every database URL creates; the rest is
// <creation time in Unix seconds, hex>_<run>_<random hex>, where run is
// MUNINN_TEST_RUN (up to 16 letters and digits; "0" when unset), so the
// databases of one run can be dropped when it ends without touching another
// run's.
const testDBPrefix = "muninn_test_"

// runID is this process's MUNINN_TEST_RUN, cleaned to fit a database name.
func runID() string {
	r := []rune{}
	for _, c := range strings.ToLower(os.Getenv("MUNINN_TEST_RUN")) {
		if len(r) < 16 && (c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			r = append(r, c)
		}
	}
	if len(r) == 0 {
		return "0"
	}
	return string(r)
}

// StaleAfter is how old a test database must be before a later test process
// drops it: longer than any test package runs (make test gives each 30 min).
const StaleAfter = time.Hour

// URL creates a database for t, migrated to the current schema, and returns
// its URL.
//
// The database outlives t: PostgreSQL forces an immediate checkpoint on every
// DROP DATABASE, and dropping one per test while others run made the whole
// server stall for seconds (River's queries timed out in unrelated tests).
// `make test` drops its run's when it ends (cmd/muninn-testdb), and the first
// test database a process creates drops those older than StaleAfter, left by
// runs that were killed or started with plain `go test`.
func URL(t testing.TB) string {
	t.Helper()
	base, err := serverURL()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	require.NoError(t, err)
	defer admin.Close(context.WithoutCancel(ctx))
	staleOnce.Do(func() {
		if _, err := dropDatabases(ctx, admin, time.Now().Add(-StaleAfter), ""); err != nil {
			t.Logf("storetest: drop stale test databases: %v", err)
		}
	})
	tmpl := "muninn_tmpl_" + schemaHash()
	require.NoError(t, ensureTemplate(ctx, admin, base, tmpl), "storetest: build template")
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("%s%x_%s_%s", testDBPrefix, time.Now().Unix(), runID(), hex.EncodeToString(b))
	_, err = admin.Exec(ctx, `CREATE DATABASE `+name+` TEMPLATE `+tmpl)
	require.NoError(t, err)
	// Commits do not wait for the WAL to reach the disk (a database
	// setting: CREATE DATABASE does not copy the template's). Hundreds of
	// test databases created while tests write fill the WAL faster than a
	// small disk syncs it; commits waiting for those syncs stalled for over
	// 10 s, and River's queries in unrelated tests timed out. A test
	// database needs no durability across a crash of the server.
	_, err = admin.Exec(ctx, `ALTER DATABASE `+name+` SET synchronous_commit = off`)
	require.NoError(t, err)
	u, err := urlFor(base, name)
	require.NoError(t, err)
	return u
}

var staleOnce sync.Once

// DropDatabases drops the test databases nobody is connected to that URL
// created before cutoff or, when run is not empty, in the run with that
// MUNINN_TEST_RUN, on the server tests use, and returns how many it dropped.
// Databases whose name carries no creation time (older builds named them
// muninn_test_<random>) count as created before any cutoff.
func DropDatabases(ctx context.Context, cutoff time.Time, run string) (int, error) {
	base, err := serverURL()
	if err != nil {
		return 0, err
	}
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return 0, err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	return dropDatabases(ctx, admin, cutoff, run)
}

func dropDatabases(ctx context.Context, admin *pgx.Conn, cutoff time.Time, run string) (int, error) {
	rows, err := admin.Query(ctx, `SELECT datname FROM pg_database d
		WHERE datname LIKE 'muninn\_test\_%'
		  AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)`)
	if err != nil {
		return 0, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		created, inRun, ok := parseName(name)
		if ok && !created.Before(cutoff) && (run == "" || inRun != run) {
			continue
		}
		// Without FORCE: a database someone connected to since the query
		// above is in use, and stays.
		if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()); err != nil {
			continue
		}
		n++
	}
	return n, nil
}

// parseName reads the creation time and run from a name URL gave a
// database; ok is false for any other name.
func parseName(name string) (created time.Time, run string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(name, testDBPrefix), "_")
	if !strings.HasPrefix(name, testDBPrefix) || len(parts) != 3 {
		return time.Time{}, "", false
	}
	v, err := strconv.ParseInt(parts[0], 16, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	return time.Unix(v, 0), parts[1], true
}

// Store opens a store on a fresh database for t.
func Store(t testing.TB) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, URL(t), 10, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// ForgetChanges prunes every recorded change from st's change feed, as if
// they had all aged past the retention: a reader that has not applied them
// gets store.ErrChangesPruned.
func ForgetChanges(tb testing.TB, st *store.Store) {
	tb.Helper()
	_, err := st.Pool().Exec(context.Background(), `WITH gone AS (DELETE FROM changes RETURNING seq)
		UPDATE change_horizon SET pruned_through = greatest(pruned_through, (SELECT max(seq) FROM gone))
		WHERE EXISTS (SELECT 1 FROM gone)`)
	require.NoError(tb, err)
}

// KillListeners terminates every connection of st's database that is
// LISTENing (its last statement a LISTEN), as a network failure would, and
// returns how many it terminated.
func KillListeners(tb testing.TB, st *store.Store) int {
	tb.Helper()
	var n int
	err := st.Pool().QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`).Scan(&n)
	require.NoError(tb, err)
	return n
}

// Seed stores n synthetic prefixes for benchmarks, with three assertions
// each (two tags and a classification, from a handful of sources and tags):
// n/100 networks (/24s from 10.0.0.0, each tagged) and, inside and after
// them, host addresses (/32s). It writes with set-based statements in the
// database, bypassing the change feed: open indexes after seeding.
func Seed(tb testing.TB, st *store.Store, n int) {
	tb.Helper()
	ctx := context.Background()
	nets := n / 100
	for _, q := range []string{
		`INSERT INTO prefixes (prefix, first_seen, last_seen, sightings)
		 SELECT set_masklen('10.0.0.0'::inet + (i::bigint << 8), 24)::cidr, now() - interval '1 day', now(), 0
		 FROM generate_series(0, $1::int - 1) i`,
		`INSERT INTO prefixes (prefix, first_seen, last_seen, sightings)
		 SELECT set_masklen('10.0.0.0'::inet + (i::bigint * 3 + 1), 32)::cidr, now() - interval '1 hour', now(), 1 + i % 5
		 FROM generate_series(0, $2::int - $1::int - 1) i`,
		`INSERT INTO assertions (prefix_id, source, kind, value, first_seen, last_seen, expires_at, created_by)
		 SELECT id, s.source, s.kind, CASE WHEN s.spread = 1 THEN s.value ELSE s.value || (id % s.spread) END, now() - interval '1 hour', now(),
		        CASE WHEN id % 7 = 0 THEN now() + interval '1 day' END, 'seed'
		 FROM prefixes, (VALUES ('feed:seed', 'tag', 'listed-', 5), ('ingest:sensor', 'tag', 'scan-', 20),
		                        ('ingest:sensor', 'classification', 'malicious', 1)) s(source, kind, value, spread)`,
		`ANALYZE prefixes`, `ANALYZE assertions`,
	} {
		args := []any{nets, n}
		if !strings.Contains(q, "$1") {
			args = nil
		} else if !strings.Contains(q, "$2") {
			args = args[:1]
		}
		_, err := st.Pool().Exec(ctx, q, args...)
		require.NoError(tb, err, "storetest: seed")
	}
}
