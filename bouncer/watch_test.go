package bouncer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// sink collects what a Watcher sends; fail makes the next sends fail.
type sink struct {
	mu    sync.Mutex
	lines []string
	fail  int
}

func (s *sink) send(_ context.Context, _ bouncer.Watch, lines []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return errors.New("server unreachable")
	}
	s.lines = append(s.lines, lines...)
	return nil
}

func (s *sink) waitFor(t *testing.T, want []string) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.lines) >= len(want)
	}, 10*time.Second, 5*time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Equal(t, want, s.lines)
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	_, err = f.WriteString(text)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// TestWatcherRotationTruncationRestart tails a real file through a partial
// line, a failed send, a rename-and-create rotation, a copytruncate-style
// truncation and a restart from the saved position: every complete line
// arrives once, in order.
func TestWatcherRotationTruncationRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	pos := filepath.Join(dir, "state", "auth.pos")
	s := &sink{fail: 2}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		w := &bouncer.Watcher{Watch: bouncer.Watch{Path: path, Format: "sshd", Host: "gw"}, PosFile: pos, Send: s.send,
			Poll: 5 * time.Millisecond, Backoff: 5 * time.Millisecond}
		go func() { done <- w.Run(ctx) }()
		return func() { cancel(); require.ErrorIs(t, <-done, context.Canceled) }
	}
	stop := run()
	appendFile(t, path, "one\ntwo\nthr")
	s.waitFor(t, []string{"one", "two"})
	appendFile(t, path, "ee\n")
	s.waitFor(t, []string{"one", "two", "three"})

	require.NoError(t, os.Rename(path, path+".1"))
	appendFile(t, path+".1", "four\n") // written to the old file after the rename
	appendFile(t, path, "five\n")
	s.waitFor(t, []string{"one", "two", "three", "four", "five"})

	require.NoError(t, os.Truncate(path, 0))
	appendFile(t, path, "six\n")
	s.waitFor(t, []string{"one", "two", "three", "four", "five", "six"})
	stop()

	appendFile(t, path, "seven\n")
	stop = run()
	defer stop()
	s.waitFor(t, []string{"one", "two", "three", "four", "five", "six", "seven"})
}
