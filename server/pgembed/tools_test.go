package pgembed

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeTool writes an executable name into dir/NN/bin that reports version v.
func fakeTool(t *testing.T, root, major, name, v string) string {
	t.Helper()
	dir := filepath.Join(root, major, "bin")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\necho '"+name+" (PostgreSQL) "+v+" (Debian "+v+"-1)'\n"), 0o755))
	return p
}

// TestFindTool: the same major as the server when installed, else the oldest
// newer one; only older ones is an error naming them; none at all is
// ErrNoTool.
func TestFindTool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	p13 := fakeTool(t, root, "13", "pg_dump", "13.16")
	p15 := fakeTool(t, root, "15", "pg_dump", "15.10")
	p17 := fakeTool(t, root, "17", "pg_dump", "17.2")
	glob := filepath.Join(root, "*", "bin")
	for _, c := range []struct {
		server int
		want   string
	}{{15, p15}, {13, p13}, {14, p15}, {16, p17}, {17, p17}, {12, p13}, {0, p17}} {
		got, err := findTool(ctx, "pg_dump", c.server, "", glob)
		require.NoError(t, err, "server %d", c.server)
		require.Equal(t, c.want, got, "server %d", c.server)
	}
	_, err := findTool(ctx, "pg_dump", 18, "", glob)
	require.ErrorIs(t, err, ErrNoTool)
	require.ErrorContains(t, err, "pg_dump: the server is PostgreSQL 18, and only older programs are installed ("+p13+" (13), "+p15+" (15), "+p17+" (17)): install postgresql-client-18 or newer")
	_, err = findTool(ctx, "pg_restore", 15, "", glob)
	require.ErrorIs(t, err, ErrNoTool)
	// PATH comes first among equal versions.
	onPath := fakeTool(t, t.TempDir(), "x", "pg_dump", "15.3")
	got, err := findTool(ctx, "pg_dump", 15, filepath.Dir(onPath), glob)
	require.NoError(t, err)
	require.Equal(t, onPath, got)
}
