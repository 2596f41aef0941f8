package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// TestBouncerJournalShipsToDetection: five sshd failures stored in a real
// journal file (Debian's systemd-journal-remote writes it from journal
// export format, with a cron entry between) are followed by the bouncer's
// JournalWatcher through journalctl, spooled and sent with the bouncer key:
// the sshd format reads journalctl's JSON lines, the server stores the five
// with the journal's times, and the fifth tags the address.
func TestBouncerJournalShipsToDetection(t *testing.T) {
	t.Parallel()
	const remote = "/lib/systemd/systemd-journal-remote"
	for _, bin := range []string{"journalctl", remote} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (run make deps as root)", bin)
			}
			t.Skipf("needs %s (systemd, systemd-journal-remote)", bin)
		}
	}
	rb := setupRender(t)
	key := rb.createBouncer(t, "web1")
	dir := t.TempDir()
	jdir := filepath.Join(dir, "journal")
	require.NoError(t, os.Mkdir(jdir, 0o700))
	at := time.Now().Add(-time.Minute).Truncate(time.Microsecond).UTC()
	var export bytes.Buffer
	entry := func(i int, unit, ident, msg string) {
		fmt.Fprintf(&export, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\n"+
			"_SYSTEMD_UNIT=%s\nSYSLOG_IDENTIFIER=%s\n_COMM=%s\n_PID=%d\n_HOSTNAME=gw\nMESSAGE=%s\n\n",
			at.Add(time.Duration(i)*time.Second).UnixMicro(), 1000+i, unit, ident, ident, 100+i, msg)
	}
	for i := range 5 {
		entry(i, "ssh.service", "sshd", fmt.Sprintf("Failed password for root from 203.0.113.31 port %d ssh2", 40000+i))
		entry(i, "cron.service", "CRON", "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)")
	}
	cmd := exec.Command(remote, "--output="+filepath.Join(jdir, "remote.journal"), "-")
	cmd.Stdin = &export
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	client := bouncer.NewClient(rb.srv.URL, key, nil)
	spool, err := bouncer.OpenSpool(filepath.Join(dir, "spool"), 0, nil)
	require.NoError(t, err)
	w := bouncer.Watch{Journal: []string{"_SYSTEMD_UNIT=ssh.service"}, JournalDir: jdir, Format: "sshd"}
	jw := &bouncer.JournalWatcher{Watch: w, CursorFile: bouncer.PosFileFor(dir, w.Source()), Send: spool.Add, Backoff: 5 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- jw.Run(ctx) }()
	go func() { done <- spool.Run(ctx, client.SendEvents, 5*time.Millisecond) }()
	defer func() { cancel(); <-done; <-done }()

	require.Eventually(t, func() bool {
		status, raw := rb.do(t, rb.reader, http.MethodGet, "/api/v1/ips/203.0.113.31", "", nil)
		var v viewTags
		if status != http.StatusOK || json.Unmarshal(raw, &v) != nil {
			return false
		}
		return len(v.Tags) == 1 && v.Tags[0].Name == "ssh-bruteforce" && v.Tags[0].Source == "sensor:ssh-bruteforce"
	}, 10*time.Second, 20*time.Millisecond)
	lines, err := rb.store.SensorLinesOf(context.Background(), netip.MustParseAddr("203.0.113.31"), 10)
	require.NoError(t, err)
	require.Len(t, lines, 5)
	for i, l := range lines { // newest first
		require.Equal(t, "web1", l.Host)
		require.Equal(t, "ssh-auth-failure", l.Kind)
		require.True(t, at.Add(time.Duration(4-i)*time.Second).Equal(l.At), "event %d at %s", i, l.At)
	}
}
