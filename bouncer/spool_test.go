package bouncer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// server is a fake events endpoint that can be down; while down every send
// fails and attempts counts them.
type fakeEvents struct {
	mu       sync.Mutex
	down     bool
	attempts int
	got      []string // "format:line"
}

func (f *fakeEvents) send(_ context.Context, w bouncer.Watch, lines []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		f.attempts++
		return errors.New("connection refused")
	}
	for _, l := range lines {
		f.got = append(f.got, w.Format+":"+l)
	}
	return nil
}

func (f *fakeEvents) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down, f.attempts = down, 0
}

func (f *fakeEvents) waitAttempt(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.attempts > 0
	}, 10*time.Second, time.Millisecond)
}

func (f *fakeEvents) waitFor(t *testing.T, want []string) {
	t.Helper()
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.got) >= len(want)
	}, 10*time.Second, time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Equal(t, want, f.got)
}

func runSpool(t *testing.T, s *bouncer.Spool, f *fakeEvents) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, f.send, time.Millisecond) }()
	return func() { cancel(); require.ErrorIs(t, <-done, context.Canceled) }
}

func spoolLine(i int) string { return fmt.Sprintf("line-%02d", i) } // 7 bytes

// batchSize is the file size of a batch of n spoolLine lines of format sshd:
// "muninn-spool 1\n" (15) + "sshd\n" (5) + 8 per line.
func batchSize(n int) int64 { return 20 + 8*int64(n) }

// TestSpoolServerDownAndBack: while the server is down every batch stays on
// disk (also across a restart of the bouncer); when it is back they arrive
// once each, in order, and the spool is empty.
func TestSpoolServerDownAndBack(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := bouncer.OpenSpool(dir, 1<<20, nil)
	require.NoError(t, err)
	f := &fakeEvents{}
	stop := runSpool(t, s, f)
	ctx := context.Background()
	require.NoError(t, s.Add(ctx, bouncer.Watch{Format: "sshd"}, []string{spoolLine(1), spoolLine(2)}))
	f.waitFor(t, []string{"sshd:line-01", "sshd:line-02"})

	f.setDown(true)
	require.NoError(t, s.Add(ctx, bouncer.Watch{Format: "sshd"}, []string{spoolLine(3)}))
	f.waitAttempt(t)
	require.NoError(t, s.Add(ctx, bouncer.Watch{Format: "nginx"}, []string{spoolLine(4), "", spoolLine(5) + "\n" + spoolLine(6)}))
	stop()
	batches, size := s.Pending()
	require.Equal(t, 2, batches)
	require.Equal(t, batchSize(1)+batchSize(3)+1, size) // "nginx" is a byte longer than "sshd"

	// A restart reads the spool back; the server is still down.
	s, err = bouncer.OpenSpool(dir, 1<<20, nil)
	require.NoError(t, err)
	batches, _ = s.Pending()
	require.Equal(t, 2, batches)
	f.setDown(true)
	stop = runSpool(t, s, f)
	defer stop()
	f.waitAttempt(t)
	require.NoError(t, s.Add(ctx, bouncer.Watch{Format: "sshd"}, []string{spoolLine(7)}))
	f.setDown(false)
	f.waitFor(t, []string{"sshd:line-01", "sshd:line-02", "sshd:line-03", "nginx:line-04", "nginx:line-05", "nginx:line-06", "sshd:line-07"})
	require.Eventually(t, func() bool { b, n := s.Pending(); return b == 0 && n == 0 }, 10*time.Second, time.Millisecond)
	require.Equal(t, int64(0), s.Dropped())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, ents)
}

// TestSpoolBound: with room for three one-line batches and the server down,
// ten batches keep the newest three and drop seven lines; a batch larger
// than the whole spool keeps its newest lines that fit. What is kept arrives
// when the server is back.
func TestSpoolBound(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := bouncer.OpenSpool(dir, 3*batchSize(1), nil)
	require.NoError(t, err)
	f := &fakeEvents{down: true}
	stop := runSpool(t, s, f)
	ctx := context.Background()
	for i := 1; i <= 10; i++ {
		require.NoError(t, s.Add(ctx, bouncer.Watch{Format: "sshd"}, []string{spoolLine(i)}))
	}
	f.waitAttempt(t)
	batches, size := s.Pending()
	require.Equal(t, 3, batches)
	require.Equal(t, 3*batchSize(1), size)
	require.Equal(t, int64(7), s.Dropped())
	f.setDown(false)
	f.waitFor(t, []string{"sshd:line-08", "sshd:line-09", "sshd:line-10"})
	stop()

	// 3*28 = 84 bytes hold one batch of 8 lines (20+64): of 10, the first 2 go.
	f.got = nil
	f.setDown(true)
	stop = runSpool(t, s, f)
	defer stop()
	var ten []string
	for i := 11; i <= 20; i++ {
		ten = append(ten, spoolLine(i))
	}
	require.NoError(t, s.Add(ctx, bouncer.Watch{Format: "sshd"}, ten))
	require.Equal(t, int64(9), s.Dropped())
	batches, size = s.Pending()
	require.Equal(t, 1, batches)
	require.Equal(t, batchSize(8), size)
	// A format name alone larger than the spool: every line is dropped.
	require.NoError(t, s.Add(ctx, bouncer.Watch{Format: string(make([]byte, 100))}, []string{"x"}))
	require.Equal(t, int64(10), s.Dropped())
	f.setDown(false)
	var want []string
	for i := 13; i <= 20; i++ {
		want = append(want, "sshd:"+spoolLine(i))
	}
	f.waitFor(t, want)
}

// TestSpoolRefusedBatch: a batch the server answers 400 (a format it does not
// know) is dropped and counted, and does not hold up the next; an answer
// 503 is retried.
func TestSpoolRefusedBatch(t *testing.T) {
	t.Parallel()
	s, err := bouncer.OpenSpool(filepath.Join(t.TempDir(), "spool"), 1<<20, nil)
	require.NoError(t, err)
	var mu sync.Mutex
	var got []string
	unavailable := 2
	send := func(_ context.Context, w bouncer.Watch, lines []string) error {
		mu.Lock()
		defer mu.Unlock()
		if w.Format == "sshdd" {
			return &bouncer.StatusError{Op: "events", Status: 400, Body: `{"title":"unknown format"}`}
		}
		if unavailable > 0 {
			unavailable--
			return &bouncer.StatusError{Op: "events", Status: 503}
		}
		got = append(got, lines...)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, send, time.Millisecond) }()
	defer func() { cancel(); require.ErrorIs(t, <-done, context.Canceled) }()
	require.NoError(t, s.Add(ctx, bouncer.Watch{Format: "sshdd"}, []string{spoolLine(1), spoolLine(2)}))
	require.NoError(t, s.Add(ctx, bouncer.Watch{Format: "sshd"}, []string{spoolLine(3)}))
	require.Eventually(t, func() bool { b, _ := s.Pending(); return b == 0 }, 10*time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{spoolLine(3)}, got)
	require.Equal(t, 0, unavailable)
	require.Equal(t, int64(2), s.Refused())
	require.Equal(t, int64(0), s.Dropped())
}
