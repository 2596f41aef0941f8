// Package backup dumps and restores muninn's database with PostgreSQL's own
// pg_dump and pg_restore (custom format), for the embedded cluster and an
// external database alike. A dump is one consistent snapshot (pg_dump reads
// every table in a single repeatable-read transaction), taken while muninn
// runs; a restore is one transaction into an empty database.
package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/muninn/muninn/server/pgembed"
)

// marker is a table every muninn database has (the migration runner's); an
// archive without it is not a muninn backup.
const marker = "schema_migrations"

// Info describes a dump that was written.
type Info struct {
	// Path is the archive file.
	Path string
	// Bytes is its size.
	Bytes int64
	// ServerMajor is the PostgreSQL major version of the dumped server.
	ServerMajor int
	// Tool is the pg_dump that wrote it.
	Tool string
}

// Dump writes a pg_dump custom-format archive of the database at url to path
// (mode 0600: it holds token and password hashes). The archive is written to
// path.tmp and renamed, so path is either absent or complete. pg_dump is the
// one of the server's major version (pgembed.FindTool). Errors quote
// pg_dump's message.
func Dump(ctx context.Context, url, path string) (Info, error) {
	major, err := serverMajor(ctx, url)
	if err != nil {
		return Info{}, err
	}
	tool, err := pgembed.FindTool(ctx, "pg_dump", major)
	if err != nil {
		return Info{}, fmt.Errorf("backup: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return Info{}, fmt.Errorf("backup: %w", err)
	}
	f.Close()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := run(ctx, tool, "--format=custom", "--file="+tmp, "--dbname="+url); err != nil {
		return Info{}, fmt.Errorf("backup: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return Info{}, fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return Info{}, fmt.Errorf("backup: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Info{}, fmt.Errorf("backup: %w", err)
	}
	return Info{Path: path, Bytes: fi.Size(), ServerMajor: major, Tool: tool}, nil
}

// ErrNotEmpty reports that the target database of a restore already holds
// tables; Restore with force replaces them.
var ErrNotEmpty = errors.New("restore: the target database is not empty")

// Restore loads the archive at path (written by Dump) into the database at
// url in a single transaction: a failure leaves the database as it was. The
// database must hold no table (a fresh data dir or a new database); with
// force, every schema in it is dropped first (then a failed restore leaves it
// empty). Objects are owned by the connecting role (no owners or grants are
// restored), so a dump of the embedded cluster restores into an external
// database and back. The archive is checked before the target is touched.
func Restore(ctx context.Context, url, path string, force bool) error {
	list, err := archiveList(ctx, path)
	if err != nil {
		return err
	}
	if !strings.Contains(list, " TABLE public "+marker+" ") {
		return fmt.Errorf("backup: %s is a PostgreSQL archive but not of a muninn database (no table %s)", path, marker)
	}
	major, err := serverMajor(ctx, url)
	if err != nil {
		return err
	}
	tool, err := pgembed.FindTool(ctx, "pg_restore", major)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("restore: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tables, err := userTables(ctx, conn)
	if err != nil {
		return err
	}
	if len(tables) > 0 {
		if !force {
			return fmt.Errorf("%w: it holds %d tables (%s): restore into a fresh data dir or an empty database, or pass --force to drop everything in it first",
				ErrNotEmpty, len(tables), strings.Join(tables[:min(3, len(tables))], ", "))
		}
		if err := dropAll(ctx, conn); err != nil {
			return err
		}
	}
	conn.Close(ctx)
	if _, err := run(ctx, tool, "--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges", "--dbname="+url, path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// archiveList returns pg_restore --list of the archive: its table of contents.
func archiveList(ctx context.Context, path string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	tool, err := pgembed.FindTool(ctx, "pg_restore", 0)
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	out, err := run(ctx, tool, "--list", path)
	if err != nil {
		return "", fmt.Errorf("restore: %s is not a muninn backup (a pg_dump custom-format archive): %w", path, err)
	}
	return string(out), nil
}

// serverMajor returns the major version of the server at url.
func serverMajor(ctx context.Context, url string) (int, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("backup: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int / 10000`).Scan(&n); err != nil {
		return 0, fmt.Errorf("backup: server version: %w", err)
	}
	return n, nil
}

// userTables lists the tables outside PostgreSQL's own schemas.
func userTables(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("restore: list tables: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("restore: list tables: %w", err)
	}
	return names, nil
}

// dropAll drops every schema outside PostgreSQL's own (with their tables,
// types, functions and the extensions in them) and recreates an empty public
// schema, in one transaction.
func dropAll(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace
		WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_%'`)
	if err != nil {
		return fmt.Errorf("restore: list schemas: %w", err)
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("restore: list schemas: %w", err)
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, s := range schemas {
			if _, err := tx.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{s}.Sanitize()+` CASCADE`); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `CREATE SCHEMA public`)
		return err
	})
	if err != nil {
		return fmt.Errorf("restore: --force: drop the existing schemas: %w", err)
	}
	return nil
}

// run runs a PostgreSQL program without PG* variables (they would redirect
// it); a failure's error quotes the end of its output.
func run(ctx context.Context, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Env = pgembed.CleanEnv(os.Environ())
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if lines := strings.Split(msg, "\n"); len(lines) > 10 {
			msg = strings.Join(lines[len(lines)-10:], "\n")
		}
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(tool), err, msg)
	}
	return out.Bytes(), nil
}

// syncFile flushes a file to disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
