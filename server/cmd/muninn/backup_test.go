package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/config"
	"github.com/muninn/muninn/server/pgembed"
)

// TestBackupRestore loads data into one data dir's embedded cluster through a
// running serve (ingest, a ruleset, an override, a user, a token), backs it up
// while serve runs, restores into a fresh data dir, starts serve there and
// compares: the API's answers (an address, the search, the rulesets, the
// render), the users and tokens the CLI lists, and the row count of every
// table. A second restore into the now non-empty data dir is refused,
// changing nothing, and --force replaces it. A file that is not an archive is
// refused before anything is touched.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const token = "mnn_backup_test_admin_token_0123456789"
	envFor := func(dir string) map[string]string {
		return map[string]string{"MUNINN_DATA_DIR": dir, "MUNINN_LISTEN": "127.0.0.1:0", "MUNINN_WORKERS": "false",
			"MUNINN_ADMIN_TOKEN": token, "MUNINN_LOG_LEVEL": "warn", "MUNINN_RDAP": "false", "MUNINN_RDNS": "false"}
	}
	auth := map[string]string{"Authorization": "Bearer " + token}
	withType := func(ct string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + token, "Content-Type": ct}
	}
	log := slog.New(slog.DiscardHandler)
	cli := func(env map[string]string, stdin string, args ...string) (string, error) {
		cfg, err := config.FromEnv(envOf(env))
		require.NoError(t, err)
		var out bytes.Buffer
		if args[0] == "user" {
			err = user(ctx, cfg, log, args[1:], strings.NewReader(stdin), &out)
		} else {
			err = run(ctx, args, envOf(env), &out, &out)
		}
		return out.String(), err
	}

	// The source: data through the API and the CLI.
	src := envFor(embeddedDataDir(t))
	a := startServe(t, src)
	must := func(s *served, method, path string, hdr map[string]string, body string, want int) string {
		t.Helper()
		status, out := s.call(t, method, path, hdr, body)
		require.Equal(t, want, status, "%s %s: %s", method, path, out)
		return out
	}
	must(a, "PUT", "/api/v1/rulesets/edge", withType("text/plain"), "ruleset edge\n  hook input\n  scope tcp dport 22\n  block tag scanner\n", 201)
	must(a, "POST", "/api/v1/ingest", withType("application/x-ndjson"),
		`{"ip":"198.51.100.7","source":"cowrie","tags":["scanner"],"classification":"malicious"}`+"\n"+
			`{"ip":"203.0.113.0/24","source":"netflow","tags":["scanner"],"note":"swept port 22"}`+"\n", 200)
	must(a, "PUT", "/api/v1/ips/203.0.113.9/override", withType("application/json"),
		`{"classification":"benign","suppress_tags":["scanner"],"note":"our monitoring host"}`, 200)
	_, err := cli(src, "correct horse battery\n", "user", "create", "alice", "--role", "writer")
	require.NoError(t, err)
	_, err = cli(src, "", "token", "create", "pipeline", "--role", "writer")
	require.NoError(t, err)
	// The render reflects the override: 203.0.113.9 is cut out of the /24.
	deadline := time.Now().Add(30 * time.Second)
	for render := ""; !strings.Contains(render, `"203.0.113.8/32"`) || !strings.Contains(render, `"198.51.100.7/32"`); {
		require.True(t, time.Now().Before(deadline), "the render never showed the data: %s", render)
		_, render = a.call(t, "GET", "/api/v1/rulesets/edge/render?since=0&wait=1s", auth, "")
	}
	answers := func(s *served, env map[string]string) map[string]string {
		out := map[string]string{}
		for _, p := range []string{"/api/v1/ips/203.0.113.9", "/api/v1/ips/198.51.100.7", "/api/v1/ips?limit=1000",
			"/api/v1/rulesets", "/api/v1/rulesets/edge", "/api/v1/rulesets/edge/render", "/api/v1/tags"} {
			out[p] = must(s, "GET", p, auth, "", 200)
		}
		for _, args := range [][]string{{"user", "list"}, {"token", "list"}} {
			o, err := cli(env, "", args...)
			require.NoError(t, err)
			out[strings.Join(args, " ")] = o
		}
		return out
	}
	want := answers(a, src)
	require.Contains(t, want["/api/v1/ips/203.0.113.9"], `"benign"`)

	file := filepath.Join(t.TempDir(), "muninn.dump")
	out, err := cli(src, "", "backup", file)
	require.NoError(t, err, "backup while serve runs")
	require.Regexp(t, `^wrote .*muninn\.dump \(\d+ bytes, PostgreSQL \d+, .*pg_dump\)\n$`, out)
	fi, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the dump holds token and password hashes")
	wantCounts := rowCounts(t, src["MUNINN_DATA_DIR"])
	require.NoError(t, func() error { err, _ := a.stop(); return err }())

	// The restore: a fresh data dir, then serve on it.
	dst := envFor(embeddedDataDir(t))
	_, err = cli(dst, "", "restore", filepath.Join(t.TempDir(), "absent.dump"))
	require.ErrorContains(t, err, "no such file")
	notArchive := filepath.Join(t.TempDir(), "x.dump")
	require.NoError(t, os.WriteFile(notArchive, []byte("not a dump\n"), 0o600))
	_, err = cli(dst, "", "restore", notArchive)
	require.ErrorContains(t, err, "is not a muninn backup (a pg_dump custom-format archive)")
	out, err = cli(dst, "", "restore", file)
	require.NoError(t, err)
	require.Equal(t, "restored "+file+"; start muninn serve (it applies newer migrations at start)\n", out)
	_, err = cli(dst, "", "restore", file)
	require.ErrorContains(t, err, "the target database is not empty: it holds ")
	require.ErrorContains(t, err, "pass --force to drop everything in it first; nothing was changed")
	_, err = cli(dst, "", "restore", "--force", file)
	require.NoError(t, err)

	b := startServe(t, dst)
	// The restored cluster's renders come from the restored facts: wait for the hub.
	deadline = time.Now().Add(30 * time.Second)
	for render := ""; render != want["/api/v1/rulesets/edge/render"]; {
		require.True(t, time.Now().Before(deadline), "the restored render differs:\n%s\nwant:\n%s", render, want["/api/v1/rulesets/edge/render"])
		_, render = b.call(t, "GET", "/api/v1/rulesets/edge/render", auth, "")
	}
	got := answers(b, dst)
	for k, v := range want {
		require.Equal(t, v, got[k], "%s after the restore", k)
	}
	require.Equal(t, wantCounts, rowCounts(t, dst["MUNINN_DATA_DIR"]), "row counts after the restore")
}

// rowCounts counts the rows of every table in the running embedded cluster
// under dir, leaving out River's per-process tables (which client is
// leader, which are alive), which each serve writes for itself.
func rowCounts(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	url, ok := pgembed.RunningURL(dir)
	require.True(t, ok)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT quote_ident(relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, tables, "schema_migrations")
	out := map[string]int64{}
	for _, tbl := range tables {
		if tbl == "river_leader" || tbl == "river_client" || tbl == "river_client_queue" {
			continue
		}
		var n int64
		require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&n))
		out[tbl] = n
	}
	return out
}

func TestVersionNamesSupportedBouncers(t *testing.T) {
	t.Parallel()
	require.Equal(t, "bouncers: 1.3.x to 1.5.x", bouncerRange("1.4.2"))
	require.Equal(t, "bouncers: 2.0.x to 2.1.x", bouncerRange("v2.0.0"))
	require.Equal(t, "bouncers: a development build; any bouncer may work, none is promised to", bouncerRange("dev"))
}
