package bouncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Watch is one `watch:` entry of the bouncer's config: a log file to tail
// (Path) or systemd journal entries to follow (Journal), the format of its
// lines (one of the server's POST /events formats; journal entries are sent
// as `journalctl -o json` lines, which format sshd reads) and the host name
// it is sent as.
type Watch struct {
	Path string `json:"path,omitempty" yaml:"path"`
	// Journal are journalctl matches (FIELD=value, or "+" between groups),
	// e.g. _SYSTEMD_UNIT=ssh.service; set instead of Path.
	Journal []string `json:"journal,omitempty" yaml:"journal"`
	// JournalDir reads the journal files of this directory (journalctl
	// --directory) instead of the system journal.
	JournalDir string `json:"journal_dir,omitempty" yaml:"journal_dir"`
	Format     string `json:"format" yaml:"format"`
	// Host is informational: the server files a bouncer's lines under the
	// bouncer's own name.
	Host string `json:"host" yaml:"host"`
}

// Source names what w reads, for logs and its position file: the path, or
// "journal:" with the directory (if any) and the matches.
func (w Watch) Source() string {
	if len(w.Journal) == 0 {
		return w.Path
	}
	src := "journal:"
	if w.JournalDir != "" {
		src += w.JournalDir + ":"
	}
	return src + strings.Join(w.Journal, " ")
}

// PosFileFor is where a Watcher of path keeps its position in stateDir.
func PosFileFor(stateDir, path string) string {
	name := strings.NewReplacer("/", "_", "\\", "_", ":", "_", " ", "_").Replace(strings.TrimPrefix(path, "/"))
	return filepath.Join(stateDir, "watch", name+".pos")
}

// Watcher tails one file and sends its complete lines, in order, with Send.
// It follows rotation (the path names a new file: the old one is read to
// its end first) and truncation (the file shrank: read again from its
// start), and keeps its read position in PosFile, written only after Send
// succeeded: lines are sent at least once, and while the server is
// unreachable the unsent part of the file is the buffer.
type Watcher struct {
	Watch Watch
	// PosFile holds the read position (JSON: device, inode, offset).
	PosFile string
	// Send ships lines (without newlines) of Watch.Format; an error is
	// retried after Backoff.
	Send func(ctx context.Context, w Watch, lines []string) error
	// Poll is how often the file is looked at once it is read to its end
	// (0: 250 ms); Backoff the wait after a failed Send (0: 1 s).
	Poll, Backoff time.Duration
	// MaxBatch bounds the bytes of one Send (0: 1 MiB).
	MaxBatch int
}

// position is where a Watcher has read to.
type position struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Offset int64  `json:"offset"`
}

func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

func (w *Watcher) loadPos() position {
	var p position
	raw, err := os.ReadFile(w.PosFile)
	if err == nil {
		_ = json.Unmarshal(raw, &p)
	}
	return p
}

func (w *Watcher) savePos(p position) error {
	raw, _ := json.Marshal(p)
	tmp := w.PosFile + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("bouncer: watch: save position: %w", err)
	}
	if err := os.Rename(tmp, w.PosFile); err != nil {
		return fmt.Errorf("bouncer: watch: save position: %w", err)
	}
	return nil
}

// Run tails until ctx is done.
func (w *Watcher) Run(ctx context.Context) error {
	poll, backoff, max := w.Poll, w.Backoff, w.MaxBatch
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	if max <= 0 {
		max = 1 << 20
	}
	if err := os.MkdirAll(filepath.Dir(w.PosFile), 0o700); err != nil {
		return fmt.Errorf("bouncer: watch: %w", err)
	}
	pos := w.loadPos()
	for {
		f, err := os.Open(w.Watch.Path)
		if err != nil {
			if err := sleepCtx(ctx, poll); err != nil {
				return err
			}
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("bouncer: watch: %w", err)
		}
		dev, ino := fileID(fi)
		if pos.Dev != dev || pos.Ino != ino || pos.Offset > fi.Size() {
			pos = position{Dev: dev, Ino: ino}
		}
		err = w.follow(ctx, f, &pos, poll, backoff, max)
		f.Close()
		if err != nil {
			return err
		}
	}
}

// follow reads f from pos until the path names another file (after f is
// read to its end); it returns nil then, to reopen.
func (w *Watcher) follow(ctx context.Context, f *os.File, pos *position, poll, backoff time.Duration, max int) error {
	buf := make([]byte, max)
	rotated := false
	for {
		n, err := f.ReadAt(buf, pos.Offset)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("bouncer: watch: read %s: %w", w.Watch.Path, err)
		}
		chunk := buf[:n]
		end := bytes.LastIndexByte(chunk, '\n')
		if end < 0 && n == max {
			end = n - 1 // one line longer than a batch: send it cut
		}
		if end >= 0 {
			var lines []string
			for _, l := range bytes.Split(chunk[:end], []byte{'\n'}) {
				if l = bytes.TrimRight(l, "\r"); len(l) > 0 {
					lines = append(lines, string(l))
				}
			}
			for len(lines) > 0 {
				if err := w.Send(ctx, w.Watch, lines); err == nil {
					break
				}
				if err := sleepCtx(ctx, backoff); err != nil {
					return err
				}
			}
			pos.Offset += int64(end + 1)
			if err := w.savePos(*pos); err != nil {
				return err
			}
			continue
		}
		// At the end: rotated, truncated, or nothing new yet.
		fi, err := os.Stat(w.Watch.Path)
		if err == nil {
			if dev, ino := fileID(fi); dev != pos.Dev || ino != pos.Ino {
				if rotated {
					return nil
				}
				// Read the old file once more: lines written between the
				// last read and the rename are still to come.
				rotated = true
				continue
			}
			if fi.Size() < pos.Offset {
				pos.Offset = 0
				if err := w.savePos(*pos); err != nil {
					return err
				}
				continue
			}
		}
		if err := sleepCtx(ctx, poll); err != nil {
			return err
		}
	}
}
