package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/config"
	"github.com/muninn/muninn/server/pgembed"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestTokenCommands(t *testing.T) {
	t.Parallel()
	env := envOf(map[string]string{"MUNINN_DATABASE_URL": storetest.URL(t), "MUNINN_LOG_LEVEL": "error"})
	ctx := context.Background()
	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"token", "create", "pipeline", "--role", "writer"}, env, &out, &out))
	require.True(t, strings.HasPrefix(out.String(), "mnn_"))
	require.ErrorContains(t, run(ctx, []string{"token", "create", "pipeline", "--role", "writer"}, env, &out, &out), "exists already")
	require.ErrorContains(t, run(ctx, []string{"token", "create", "x", "--role", "root"}, env, &out, &out), "--role")
	out.Reset()
	require.NoError(t, run(ctx, []string{"token", "list"}, env, &out, &out))
	require.Contains(t, out.String(), "pipeline\twriter")
	require.NoError(t, run(ctx, []string{"token", "revoke", "pipeline"}, env, &out, &out))
	out.Reset()
	require.NoError(t, run(ctx, []string{"token", "list"}, env, &out, &out))
	require.NotContains(t, out.String(), "pipeline")
	require.ErrorContains(t, run(ctx, []string{"token", "revoke", "pipeline"}, env, &out, &out), "no token")
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"--help"}, {"serve", "--help"}, {"token", "-h"}, {"migrate", "--help"}, {"version"}} {
		var out bytes.Buffer
		require.NoError(t, run(context.Background(), args, envOf(nil), &out, &out), "%v", args)
		require.NotEmpty(t, out.String())
	}
	require.Error(t, run(context.Background(), []string{"frobnicate"}, envOf(nil), &bytes.Buffer{}, &bytes.Buffer{}))
}

func TestBootstrapToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("generated and shown once", func(t *testing.T) {
		t.Parallel()
		st := storetest.Store(t)
		cfg := config.Config{DataDir: t.TempDir()}
		hint, err := bootstrapToken(ctx, st, cfg)
		require.NoError(t, err)
		secret, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin-token"))
		require.NoError(t, err)
		require.Contains(t, hint, strings.TrimSpace(string(secret)), "the first start shows the token")
		hint, err = bootstrapToken(ctx, st, cfg)
		require.NoError(t, err)
		require.NotContains(t, hint, strings.TrimSpace(string(secret)), "later starts do not")
	})
	t.Run("from MUNINN_ADMIN_TOKEN", func(t *testing.T) {
		t.Parallel()
		st := storetest.Store(t)
		cfg := config.Config{DataDir: t.TempDir(), AdminToken: "mnn_operator_chosen_secret_value"}
		hint, err := bootstrapToken(ctx, st, cfg)
		require.NoError(t, err)
		require.NotContains(t, hint, cfg.AdminToken)
		tok, err := st.TokenByHash(ctx, store.HashSecret(cfg.AdminToken))
		require.NoError(t, err)
		require.Equal(t, "admin", tok.Role)
		require.NoFileExists(t, filepath.Join(cfg.DataDir, "admin-token"))
	})
}

// TestAdminCommandsOnEmbeddedDatabase runs an admin command on the embedded
// cluster while it is stopped (the command starts and stops it) and while a
// server owns it (the command connects to its socket and leaves it running).
func TestAdminCommandsOnEmbeddedDatabase(t *testing.T) {
	if _, err := pgembed.FindBinDir(); err != nil {
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	dir, err := os.MkdirTemp("", "muninn-cli-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755)) // the postgres user must reach it when we run as root
	t.Cleanup(func() { os.RemoveAll(dir) })
	env := envOf(map[string]string{"MUNINN_DATA_DIR": dir, "MUNINN_LOG_LEVEL": "error"})
	ctx := context.Background()
	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"token", "create", "offline", "--role", "reader"}, env, &out, &out))
	_, running := pgembed.RunningURL(dir)
	require.False(t, running, "the command stopped the cluster it started")

	cl, err := pgembed.Start(ctx, pgembed.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Stop(context.Background()) })
	out.Reset()
	require.NoError(t, run(ctx, []string{"token", "list"}, env, &out, &out))
	require.Contains(t, out.String(), "offline")
	_, running = pgembed.RunningURL(dir)
	require.True(t, running, "the command left the server's cluster running")
}
