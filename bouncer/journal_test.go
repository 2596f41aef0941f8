package bouncer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// journalRemote is Debian's systemd-journal-remote (package
// systemd-journal-remote), which writes journal files from journal export
// format: the tests make real journal files with it for journalctl to read.
const journalRemote = "/lib/systemd/systemd-journal-remote"

func requireJournalTools(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"journalctl", journalRemote} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (run make deps as root)", bin)
			}
			t.Skipf("needs %s (systemd, systemd-journal-remote)", bin)
		}
	}
}

// journalEntry is one entry to write: the unit and the message.
type journalEntry struct{ unit, msg string }

// writeJournal appends entries to dir/remote.journal through
// systemd-journal-remote, as journald would store sshd's lines.
func writeJournal(t *testing.T, dir string, seq *int, entries ...journalEntry) {
	t.Helper()
	var b bytes.Buffer
	for _, e := range entries {
		*seq++
		fmt.Fprintf(&b, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\n"+
			"_SYSTEMD_UNIT=%s\nSYSLOG_IDENTIFIER=sshd\n_PID=%d\n_HOSTNAME=gw\nMESSAGE=%s\n\n",
			time.Now().UnixMicro(), 1000**seq, e.unit, 100+*seq, e.msg)
	}
	cmd := exec.Command(journalRemote, "--output="+filepath.Join(dir, "remote.journal"), "-")
	cmd.Stdin = &b
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// journalSink collects the MESSAGE of each line a JournalWatcher sends;
// fail makes the next sends fail.
type journalSink struct {
	mu   sync.Mutex
	msgs []string
	fail int
}

func (s *journalSink) send(_ context.Context, w bouncer.Watch, lines []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return fmt.Errorf("server unreachable")
	}
	for _, l := range lines {
		var e struct {
			Message  string `json:"MESSAGE"`
			Realtime string `json:"__REALTIME_TIMESTAMP"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Realtime == "" {
			return fmt.Errorf("not a journalctl -o json line: %s", l)
		}
		s.msgs = append(s.msgs, w.Format+":"+e.Message)
	}
	return nil
}

func (s *journalSink) waitFor(t *testing.T, want ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.msgs) >= len(want)
	}, 10*time.Second, 5*time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Equal(t, want, s.msgs)
}

// TestJournalWatcher follows a real journal file (written by
// systemd-journal-remote, read by journalctl --directory): only the matching
// unit's entries arrive, through failed sends, in order, once each — also
// across a restart from the saved cursor.
func TestJournalWatcher(t *testing.T) {
	t.Parallel()
	requireJournalTools(t)
	dir := t.TempDir()
	jdir := filepath.Join(dir, "journal")
	require.NoError(t, os.Mkdir(jdir, 0o700))
	seq := 0
	writeJournal(t, jdir, &seq, journalEntry{"ssh.service", "Failed password for root from 203.0.113.9 port 2222 ssh2"},
		journalEntry{"cron.service", "not this one"}, journalEntry{"ssh.service", "Invalid user admin from 203.0.113.9 port 2223"})
	s := &journalSink{fail: 2}
	watch := bouncer.Watch{Journal: []string{"_SYSTEMD_UNIT=ssh.service"}, JournalDir: jdir, Format: "sshd"}
	cursor := bouncer.PosFileFor(filepath.Join(dir, "state"), watch.Source())
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		w := &bouncer.JournalWatcher{Watch: watch, CursorFile: cursor, Send: s.send, Backoff: 5 * time.Millisecond}
		go func() { done <- w.Run(ctx) }()
		return func() { cancel(); require.ErrorIs(t, <-done, context.Canceled) }
	}
	stop := run()
	first := []string{"sshd:Failed password for root from 203.0.113.9 port 2222 ssh2", "sshd:Invalid user admin from 203.0.113.9 port 2223"}
	s.waitFor(t, first...)
	writeJournal(t, jdir, &seq, journalEntry{"ssh.service", "third"})
	s.waitFor(t, append(first, "sshd:third")...)
	require.Eventually(t, func() bool {
		raw, err := os.ReadFile(cursor)
		return err == nil && strings.Contains(string(raw), fmt.Sprintf(";i=%x;", 4))
	}, 10*time.Second, 5*time.Millisecond, "the cursor of the fourth entry is saved")
	stop()

	writeJournal(t, jdir, &seq, journalEntry{"ssh.service", "fourth"}, journalEntry{"cron.service", "nor this"})
	stop = run()
	defer stop()
	s.waitFor(t, append(first, "sshd:third", "sshd:fourth")...)
}

// TestJournalWatcherErrors: a missing journalctl, an unreadable journal
// directory and a bad match each stop the watcher with an error that says so.
func TestJournalWatcherErrors(t *testing.T) {
	t.Parallel()
	requireJournalTools(t)
	dir := t.TempDir()
	s := &journalSink{}
	for _, tc := range []struct {
		name       string
		watch      bouncer.Watch
		journalctl string
		want       string
	}{
		{"no journalctl", bouncer.Watch{Journal: []string{"_SYSTEMD_UNIT=ssh.service"}, Format: "sshd"}, filepath.Join(dir, "journalctl"),
			"is not installed (it comes with systemd; watch a log file's path instead)"},
		{"no directory", bouncer.Watch{Journal: []string{"_SYSTEMD_UNIT=ssh.service"}, JournalDir: filepath.Join(dir, "nonexistent"), Format: "sshd"}, "",
			"Failed to open " + filepath.Join(dir, "nonexistent") + ": No such file or directory"},
		{"bad match", bouncer.Watch{Journal: []string{"--file=/etc/passwd"}, Format: "sshd"}, "",
			`match "--file=/etc/passwd": want FIELD=value or +`},
	} {
		w := &bouncer.JournalWatcher{Watch: tc.watch, CursorFile: filepath.Join(dir, tc.name, "cursor"), Send: s.send, Journalctl: tc.journalctl}
		err := w.Run(context.Background())
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	require.Empty(t, s.msgs)
}
