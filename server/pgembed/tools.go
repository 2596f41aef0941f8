package pgembed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoTool reports that no usable PostgreSQL client program (pg_dump,
// pg_restore) was found.
var ErrNoTool = fmt.Errorf("pgembed: no PostgreSQL client programs found: install them (Debian/Ubuntu: apt-get install postgresql-client)")

// FindTool returns the path of the PostgreSQL program name (e.g. "pg_dump",
// "pg_restore") best suited to a server of major version serverMajor (15 for
// PostgreSQL 15.x; 0 when unknown): the same major version when one is
// installed, else the oldest newer one (pg_dump and pg_restore read older
// servers and archives, never newer ones). It looks where FindBinDir does
// (PATH, /usr/lib/postgresql/*/bin, /usr/local/pgsql/bin) but needs only name
// there, so a client-only install works. The error wraps ErrNoTool, naming
// the versions found when none is new enough.
func FindTool(ctx context.Context, name string, serverMajor int) (string, error) {
	return findTool(ctx, name, serverMajor, os.Getenv("PATH"), debianGlob, sourceBinDir)
}

func findTool(ctx context.Context, name string, serverMajor int, pathEnv, glob string, extra ...string) (string, error) {
	dirs := filepath.SplitList(pathEnv)
	versioned, _ := filepath.Glob(glob) // only ErrBadPattern, and the pattern is ours
	dirs = append(append(dirs, versioned...), extra...)
	type found struct {
		path  string
		major int
	}
	var all []found
	seen := map[string]bool{}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p, err := filepath.Abs(filepath.Join(d, name))
		if err != nil || seen[p] {
			continue
		}
		seen[p] = true
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		major, err := toolMajor(ctx, p)
		if err != nil {
			continue
		}
		// Debian's PATH entries are wrappers (pg_wrapper) that pick a version
		// by themselves; the versioned dirs name the real programs, and the
		// stable sort keeps PATH first among equal versions.
		all = append(all, found{p, major})
	}
	if len(all) == 0 {
		return "", fmt.Errorf("%s: %w", name, ErrNoTool)
	}
	slices.SortStableFunc(all, func(a, b found) int { return a.major - b.major })
	if serverMajor == 0 {
		return all[len(all)-1].path, nil
	}
	for _, f := range all {
		if f.major == serverMajor {
			return f.path, nil
		}
	}
	for _, f := range all {
		if f.major > serverMajor {
			return f.path, nil
		}
	}
	var have []string
	for _, f := range all {
		have = append(have, fmt.Sprintf("%s (%d)", f.path, f.major))
	}
	return "", fmt.Errorf("%s: the server is PostgreSQL %d, and only older programs are installed (%s): install postgresql-client-%d or newer: %w",
		name, serverMajor, strings.Join(have, ", "), serverMajor, ErrNoTool)
}

// toolMajor returns the major version a PostgreSQL program reports with
// --version ("pg_dump (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)" gives 15;
// 9.6 gives 9).
func toolMajor(ctx context.Context, path string) (int, error) {
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.Env = cleanEnv(os.Environ())
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("pgembed: %s --version: %w", path, err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 3 {
		return 0, fmt.Errorf("pgembed: unexpected %s --version output %q", path, out)
	}
	major, _, _ := strings.Cut(fields[2], ".")
	n, err := strconv.Atoi(strings.TrimRightFunc(major, func(r rune) bool { return r < '0' || r > '9' }))
	if err != nil {
		return 0, fmt.Errorf("pgembed: unexpected %s --version output %q", path, out)
	}
	return n, nil
}

// CleanEnv returns env without the PG* variables (PGHOST, PGPORT, PGDATABASE,
// ...), which would silently point PostgreSQL's programs at another server
// than the URL they are given.
func CleanEnv(env []string) []string { return cleanEnv(env) }
