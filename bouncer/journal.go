package bouncer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// JournalWatcher follows systemd journal entries matching Watch.Journal
// with a journalctl child process (`journalctl -o json --follow`) and sends
// each entry as one `journalctl -o json` line, in order, with Send. The
// cursor of the last entry sent is kept in CursorFile, written only after
// Send succeeded, and a restart goes on after it (--after-cursor): entries
// are sent at least once. Without a cursor every stored entry that matches
// is read, as a new log file is read from its start. journalctl is needed
// only for journal entries; Run says so when it is missing or cannot read
// the journal.
type JournalWatcher struct {
	Watch Watch
	// CursorFile holds the journal cursor of the last entry sent.
	CursorFile string
	// Send ships lines of Watch.Format; an error is retried after Backoff
	// (0: 1 s).
	Send    func(ctx context.Context, w Watch, lines []string) error
	Backoff time.Duration
	// MaxBatch bounds the entries of one Send (0: 1000).
	MaxBatch int
	// Journalctl is the program to run (""; journalctl from PATH).
	Journalctl string
}

// journalArgs are journalctl's arguments for w after cursor ("" : none).
func journalArgs(w Watch, cursor string) ([]string, error) {
	args := []string{"--output=json", "--follow", "--no-tail", "--all", "--no-pager", "--quiet"}
	if w.JournalDir != "" {
		args = append(args, "--directory="+w.JournalDir)
	}
	if cursor != "" {
		args = append(args, "--after-cursor="+cursor)
	}
	args = append(args, "--")
	for _, m := range w.Journal {
		if m != "+" && (!strings.Contains(m, "=") || strings.HasPrefix(m, "=") || strings.HasPrefix(m, "-")) {
			return nil, fmt.Errorf("bouncer: watch journal: match %q: want FIELD=value or +", m)
		}
		args = append(args, m)
	}
	return args, nil
}

// Run follows the journal until ctx is done. It errors when journalctl is
// missing, cannot read the journal, or exits (its last stderr lines are in
// the error), and when the cursor file cannot be written.
func (w *JournalWatcher) Run(ctx context.Context) error {
	backoff, max := w.Backoff, w.MaxBatch
	if backoff <= 0 {
		backoff = time.Second
	}
	if max <= 0 {
		max = 1000
	}
	prog := w.Journalctl
	if prog == "" {
		prog = "journalctl"
	}
	path, err := exec.LookPath(prog)
	if err != nil {
		return fmt.Errorf("bouncer: watch journal: %s is not installed (it comes with systemd; watch a log file's path instead): %w", prog, err)
	}
	if len(w.Watch.Journal) == 0 {
		return errors.New("bouncer: watch journal: no matches (e.g. _SYSTEMD_UNIT=ssh.service)")
	}
	if err := os.MkdirAll(filepath.Dir(w.CursorFile), 0o700); err != nil {
		return fmt.Errorf("bouncer: watch journal: %w", err)
	}
	cursor := ""
	if raw, err := os.ReadFile(w.CursorFile); err == nil {
		cursor = strings.TrimSpace(string(raw))
	}
	args, err := journalArgs(w.Watch, cursor)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(cctx, path, args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=")
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("bouncer: watch journal: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bouncer: watch journal: start %s: %w", path, err)
	}
	readErr := w.read(cctx, bufio.NewReaderSize(out, 1<<16), max, backoff)
	cancel()
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if readErr != nil && !errors.Is(readErr, io.EOF) {
		return readErr
	}
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		msg = "no message"
	}
	return fmt.Errorf("bouncer: watch journal: journalctl %s stopped (%v): %s", strings.Join(args, " "), waitErr, msg)
}

// read sends the entries of r in batches of what is already buffered, up to
// max; it returns io.EOF when journalctl closed its output.
func (w *JournalWatcher) read(ctx context.Context, r *bufio.Reader, max int, backoff time.Duration) error {
	for {
		var lines []string
		for len(lines) < max && (len(lines) == 0 || r.Buffered() > 0) {
			l, err := r.ReadBytes('\n')
			if err != nil {
				if len(lines) == 0 {
					return err
				}
				break // send what is complete; the next read reports the end
			}
			if l = bytes.TrimSpace(l); len(l) > 0 {
				lines = append(lines, string(l))
			}
		}
		if len(lines) == 0 {
			continue
		}
		var last struct {
			Cursor string `json:"__CURSOR"`
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Cursor == "" {
			return fmt.Errorf("bouncer: watch journal: journalctl wrote a line that is not a JSON entry with a cursor: %.200s", lines[len(lines)-1])
		}
		for {
			if err := w.Send(ctx, w.Watch, lines); err == nil {
				break
			}
			if err := sleepCtx(ctx, backoff); err != nil {
				return err
			}
		}
		tmp := w.CursorFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(last.Cursor+"\n"), 0o600); err != nil {
			return fmt.Errorf("bouncer: watch journal: save cursor: %w", err)
		}
		if err := os.Rename(tmp, w.CursorFile); err != nil {
			return fmt.Errorf("bouncer: watch journal: save cursor: %w", err)
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
