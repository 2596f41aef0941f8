package bouncer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultSpoolBytes is the spool bound when the config names none: 16 MiB.
const DefaultSpoolBytes = 16 << 20

// spoolMagic starts every spool batch file.
const spoolMagic = "muninn-spool 1\n"

// EncodeSpoolBatch is the on-disk form of one batch of event lines: the line
// "muninn-spool 1", the format's name on the second line, then one event line
// per line, each ending in a newline. format and lines must not contain a
// newline (Spool.Add splits lines on newlines, as the server would).
func EncodeSpoolBatch(format string, lines []string) []byte {
	n := len(spoolMagic) + len(format) + 1
	for _, l := range lines {
		n += len(l) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, spoolMagic...)
	b = append(b, format...)
	b = append(b, '\n')
	for _, l := range lines {
		b = append(b, l...)
		b = append(b, '\n')
	}
	return b
}

// DecodeSpoolBatch reads what EncodeSpoolBatch wrote. It errors on a file
// without the header or the format line, or not ending in a newline (cut
// short), and on an empty line (EncodeSpoolBatch writes none).
func DecodeSpoolBatch(b []byte) (format string, lines []string, err error) {
	rest, ok := bytes.CutPrefix(b, []byte(spoolMagic))
	if !ok {
		return "", nil, errors.New("bouncer: spool: not a spool batch (no header)")
	}
	f, rest, ok := bytes.Cut(rest, []byte{'\n'})
	if !ok || len(f) == 0 {
		return "", nil, errors.New("bouncer: spool: batch without a format")
	}
	if len(rest) > 0 && rest[len(rest)-1] != '\n' {
		return "", nil, errors.New("bouncer: spool: batch cut short (no final newline)")
	}
	lines = []string{}
	for len(rest) > 0 {
		l, r, _ := bytes.Cut(rest, []byte{'\n'})
		if len(l) == 0 {
			return "", nil, errors.New("bouncer: spool: empty line in a batch")
		}
		lines = append(lines, string(l))
		rest = r
	}
	return string(f), lines, nil
}

// spoolFile is one batch waiting in the spool directory.
type spoolFile struct {
	seq   uint64
	size  int64
	lines int
}

// Spool is a bounded queue of event batches on disk between the Watchers and
// the server: Add (a Watcher's Send) writes a batch to its own file in Dir
// and returns, Run sends the batches in the order they were added and
// removes each only after the server took it (at least once, also across a
// restart: Open reads back what is left). The files hold at most MaxBytes;
// to add a batch past that the oldest batches are dropped, counted
// (Dropped, in lines) and logged. A batch alone larger than MaxBytes keeps
// its newest lines that fit.
type Spool struct {
	dir      string
	maxBytes int64
	log      *slog.Logger

	mu        sync.Mutex
	files     []spoolFile
	total     int64
	next      uint64
	dropped   int64
	refused   int64
	wake      chan struct{}
	unreached bool // the last send failed (logged once per outage)
}

// OpenSpool opens (creating) the spool directory dir with a bound of
// maxBytes (<= 0: DefaultSpoolBytes) and reads back the batches a previous
// run left. Files that are not batches are removed and logged; leftover
// temporary files are removed.
func OpenSpool(dir string, maxBytes int64, log *slog.Logger) (*Spool, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultSpoolBytes
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bouncer: spool: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("bouncer: spool: %w", err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, log: log, next: 1, wake: make(chan struct{}, 1)}
	for _, e := range ents {
		name := e.Name()
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".batch"), 10, 64)
		if !strings.HasSuffix(name, ".batch") || err != nil || seq == 0 {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("bouncer: spool: %w", err)
		}
		_, lines, err := DecodeSpoolBatch(raw)
		if err != nil {
			log.Warn("Removed an unreadable spool file.", "file", name, "error", err)
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		s.files = append(s.files, spoolFile{seq: seq, size: int64(len(raw)), lines: len(lines)})
		s.total += int64(len(raw))
		s.next = max(s.next, seq+1)
	}
	slices.SortFunc(s.files, func(a, b spoolFile) int { return compareUint(a.seq, b.seq) })
	return s, nil
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Spool) path(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d.batch", seq))
}

// Dropped is how many event lines the spool dropped to stay within its
// bound since it was opened.
func (s *Spool) Dropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Refused is how many event lines the server refused for good (an answer
// 400, 413, 415 or 422 to their batch: e.g. a format it does not know) and
// the spool dropped, so they do not hold up the batches behind them.
func (s *Spool) Refused() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// refusedForGood reports whether err is an answer that sending the same
// batch again cannot change.
func refusedForGood(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Status {
	case 400, 413, 415, 422:
		return true
	}
	return false
}

// Pending is how many batches and bytes wait in the spool.
func (s *Spool) Pending() (batches int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files), s.total
}

// Add spools lines of w.Format (it has Watcher.Send's shape). Lines holding
// newlines are split there and empty lines left out, as the server reads a
// body. It errors only when the file cannot be written.
func (s *Spool) Add(_ context.Context, w Watch, lines []string) error {
	var clean []string
	for _, l := range lines {
		for part := range strings.SplitSeq(l, "\n") {
			if part = strings.TrimRight(part, "\r"); part != "" {
				clean = append(clean, part)
			}
		}
	}
	if len(clean) == 0 {
		return nil
	}
	if w.Format == "" || strings.ContainsAny(w.Format, "\r\n") {
		return fmt.Errorf("bouncer: spool: bad format name %q", w.Format)
	}
	size := int64(len(spoolMagic) + len(w.Format) + 1)
	for _, l := range clean {
		size += int64(len(l) + 1)
	}
	cut := 0 // the oldest lines of a batch larger than the bound
	for size > s.maxBytes && cut < len(clean) {
		size -= int64(len(clean[cut]) + 1)
		cut++
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dropped := int64(cut)
	if cut == len(clean) {
		s.dropped += dropped
		s.log.Warn("Spool full: dropped a batch larger than the spool.", "lines", dropped, "dropped_total", s.dropped, "max_bytes", s.maxBytes)
		return nil
	}
	raw := EncodeSpoolBatch(w.Format, clean[cut:])
	var files int
	for s.total+int64(len(raw)) > s.maxBytes && len(s.files) > 0 {
		old := s.files[0]
		s.files = s.files[1:]
		s.total -= old.size
		dropped += int64(old.lines)
		files++
		if err := os.Remove(s.path(old.seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("Could not remove a dropped spool file.", "error", err)
		}
	}
	seq := s.next
	s.next++
	tmp := s.path(seq) + ".tmp"
	if err := writeSync(tmp, raw); err != nil {
		return fmt.Errorf("bouncer: spool: %w", err)
	}
	if err := os.Rename(tmp, s.path(seq)); err != nil {
		return fmt.Errorf("bouncer: spool: %w", err)
	}
	s.files = append(s.files, spoolFile{seq: seq, size: int64(len(raw)), lines: len(clean) - cut})
	s.total += int64(len(raw))
	if dropped > 0 {
		s.dropped += dropped
		s.log.Warn("Spool full: dropped the oldest event lines.", "lines", dropped, "batches", files,
			"dropped_total", s.dropped, "max_bytes", s.maxBytes)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Run sends the spooled batches with send, oldest first, until ctx is done;
// a failed send is retried after backoff (<= 0: 1 s), except a batch the
// server refused for good (see Refused), which is dropped and logged. A batch dropped for
// room while it is being sent may still arrive (it is counted as dropped).
func (s *Spool) Run(ctx context.Context, send func(ctx context.Context, w Watch, lines []string) error, backoff time.Duration) error {
	if backoff <= 0 {
		backoff = time.Second
	}
	for {
		s.mu.Lock()
		if len(s.files) == 0 {
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.wake:
			}
			continue
		}
		f := s.files[0]
		s.mu.Unlock()
		raw, err := os.ReadFile(s.path(f.seq))
		var format string
		var lines []string
		if err == nil {
			format, lines, err = DecodeSpoolBatch(raw)
		}
		if err != nil {
			s.mu.Lock()
			if len(s.files) > 0 && s.files[0].seq == f.seq {
				s.files = s.files[1:]
				s.total -= f.size
				s.dropped += int64(f.lines)
				_ = os.Remove(s.path(f.seq))
			}
			s.mu.Unlock()
			if !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("Dropped an unreadable spool file.", "seq", f.seq, "error", err)
			}
			continue
		}
		err = send(ctx, Watch{Format: format}, lines)
		if err != nil && refusedForGood(err) {
			s.mu.Lock()
			s.refused += int64(len(lines))
			s.log.Error("The server refused a batch of events; dropped it.", "format", format, "lines", len(lines), "refused_total", s.refused, "error", err)
			s.mu.Unlock()
			err = nil // removed below like a sent batch
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.mu.Lock()
			if !s.unreached {
				s.unreached = true
				s.log.Warn("Could not send events; keeping them in the spool.", "error", err, "batches", len(s.files), "bytes", s.total)
			}
			s.mu.Unlock()
			if err := sleepCtx(ctx, backoff); err != nil {
				return err
			}
			continue
		}
		s.mu.Lock()
		if s.unreached {
			s.unreached = false
			s.log.Info("Sending events again.", "batches", len(s.files), "bytes", s.total)
		}
		if len(s.files) > 0 && s.files[0].seq == f.seq {
			s.files = s.files[1:]
			s.total -= f.size
			if err := os.Remove(s.path(f.seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("Could not remove a sent spool file.", "error", err)
			}
		}
		s.mu.Unlock()
	}
}
