//go:build linux

package docker

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// installBouncer runs install-bouncer.sh into root with key on stdin.
func installBouncer(t *testing.T, root, key string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("./install-bouncer.sh", args...)
	cmd.Env = append(os.Environ(), "DESTDIR="+root, "MUNINN_BOUNCER_KEY=")
	cmd.Stdin = strings.NewReader(key)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestInstallBouncerScript installs into a temporary root: the files and modes
// of README's table, the config naming the server and the CA, the key on
// stdin; a second run without a key keeps the key and the config; bad
// arguments are refused with the reason and install nothing.
func TestInstallBouncerScript(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "muninn-bouncer")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600))
	files := readmeFiles(t)

	t.Run("refusals", func(t *testing.T) {
		t.Parallel()
		root := t.TempDir()
		for _, c := range []struct {
			args []string
			key  string
			want string
		}{
			{[]string{"--binary", bin}, "mnb_x", "--server URL is required"},
			{[]string{"--server", "muninn.example:8080", "--binary", bin}, "mnb_x", "must be an http:// or https:// URL"},
			{[]string{"--server", "http://192.0.2.1:8080", "--binary", bin}, "", "no bouncer key"},
			{[]string{"--server", "http://192.0.2.1:8080", "--binary", "/nonexistent"}, "mnb_x", "no muninn-bouncer binary"},
			{[]string{"--frobnicate"}, "", "unknown argument --frobnicate"},
		} {
			out, err := installBouncer(t, root, c.key, c.args...)
			require.Error(t, err, "%v", c.args)
			require.Contains(t, out, c.want)
		}
		entries, err := os.ReadDir(root)
		require.NoError(t, err)
		require.Empty(t, entries, "a refusal installs nothing")
	})

	t.Run("install and rerun", func(t *testing.T) {
		t.Parallel()
		root := t.TempDir()
		out, err := installBouncer(t, root, "mnb_secret\n", "--server", "https://192.0.2.10:8443", "--ca-file", ca, "--binary", bin)
		require.NoError(t, err, out)
		require.Contains(t, out, "systemctl daemon-reload && systemctl enable --now muninn-bouncer")
		for _, p := range []string{"/usr/local/bin/muninn-bouncer", "/etc/systemd/system/muninn-bouncer.service",
			"/etc/muninn", "/etc/muninn/bouncer.yaml", "/etc/muninn/bouncer.key", "/etc/muninn/ca.pem"} {
			fi, err := os.Stat(filepath.Join(root, p))
			require.NoError(t, err, p)
			require.Equal(t, files[p].mode, fi.Mode().Perm(), "%s: README's mode", p)
		}
		require.Equal(t, "mnb_secret\n", string(readFile(t, filepath.Join(root, "etc/muninn/bouncer.key"))))
		require.Equal(t, readFile(t, "muninn-bouncer.service"), readFile(t, filepath.Join(root, "etc/systemd/system/muninn-bouncer.service")))
		cfg := string(readFile(t, filepath.Join(root, "etc/muninn/bouncer.yaml")))
		require.Contains(t, cfg, "\nserver: https://192.0.2.10:8443\nca_file: /etc/muninn/ca.pem\nstate_dir: /var/lib/muninn-bouncer\n")
		require.NotContains(t, cfg, "mnb_secret")

		out, err = installBouncer(t, root, "", "--server", "https://192.0.2.20:8443", "--binary", bin)
		require.NoError(t, err, out)
		require.Contains(t, out, "keeping the existing")
		require.Equal(t, "mnb_secret\n", string(readFile(t, filepath.Join(root, "etc/muninn/bouncer.key"))))
		require.Contains(t, string(readFile(t, filepath.Join(root, "etc/muninn/bouncer.yaml"))), "server: https://192.0.2.10:8443\n")

		out, err = installBouncer(t, root, "mnb_new", "--server", "https://192.0.2.20:8443", "--binary", bin, "--force")
		require.NoError(t, err, out)
		require.Equal(t, "mnb_new\n", string(readFile(t, filepath.Join(root, "etc/muninn/bouncer.key"))))
		require.Contains(t, string(readFile(t, filepath.Join(root, "etc/muninn/bouncer.yaml"))), "server: https://192.0.2.20:8443\n")
	})
}

// TestUnitsVerifiedBySystemd: systemd's own parser (systemd-analyze verify,
// in a root holding the system's units, the two units and stand-in binaries)
// accepts both units without a warning: no unknown directive, no bad value.
// Where systemd is not installed there is nothing to run it with.
func TestUnitsVerifiedBySystemd(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this: make deps installs systemd (systemd-analyze)")
		}
		t.Skip("systemd-analyze is not installed")
	}
	root := t.TempDir()
	var system string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "sysinit.target")); err == nil {
			system = d
			break
		}
	}
	require.NotEmpty(t, system, "systemd-analyze without systemd's units")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755))
	require.NoError(t, os.CopyFS(filepath.Join(root, "usr/lib/systemd/system"), os.DirFS(system)))
	for _, p := range []string{"usr/local/bin/muninn", "usr/local/bin/muninn-bouncer"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte("#!/bin/sh\n"), 0o755))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc/systemd/system"), 0o755))
	for _, u := range []string{"muninn.service", "muninn-bouncer.service"} {
		require.NoError(t, os.WriteFile(filepath.Join(root, "etc/systemd/system", u), readFile(t, u), 0o644))
		out, err := exec.Command(analyze, "verify", "--root="+root, "/etc/systemd/system/"+u).CombinedOutput()
		require.NoError(t, err, "%s: %s", u, out)
		require.Empty(t, strings.TrimSpace(string(out)), "%s: systemd-analyze has something to say", u)
	}
}
