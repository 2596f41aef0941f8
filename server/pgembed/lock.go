package pgembed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the data dir's lock file.
const LockFile = "muninn.lock"

// LockedError reports that another process holds the data dir's lock.
type LockedError struct {
	// Dir is the data dir.
	Dir string
	// PID is the holder's process id as it wrote it in the lock file; 0 when
	// the file does not say.
	PID int
	// Command is what the holder wrote after its pid (e.g. "muninn serve").
	Command string
}

func (e *LockedError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("another muninn (pid %d", e.PID)
		if e.Command != "" {
			who += ", " + e.Command
		}
		who += ")"
	}
	return fmt.Sprintf("pgembed: the data dir %s is in use by %s, which owns its embedded PostgreSQL: stop it first, or give this one another MUNINN_DATA_DIR; nothing was changed",
		e.Dir, who)
}

// Lock is an exclusive hold on a data dir: one process at a time owns the
// embedded cluster under it. The kernel releases it when the process dies,
// however it dies, so a stale lock file never blocks a restart.
type Lock struct {
	f *os.File
}

// LockDataDir takes the data dir's lock without waiting (flock on
// dir/muninn.lock) and records pid and command in the file for the message
// another process gets. When the lock is held it returns a *LockedError and
// touches nothing else. The file descriptor is close-on-exec, so the
// postmaster pg_ctl starts never inherits the lock.
func LockDataDir(dir, command string) (*Lock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pgembed: lock data dir: %w", err)
	}
	// 0711 as in prepareDirs: the postgres user must traverse it.
	if err := os.MkdirAll(abs, 0o711); err != nil {
		return nil, fmt.Errorf("pgembed: lock data dir: %w", err)
	}
	path := filepath.Join(abs, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgembed: lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			le := &LockedError{Dir: abs}
			if b, rerr := os.ReadFile(path); rerr == nil {
				pid, cmd, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
				le.PID, _ = strconv.Atoi(pid)
				le.Command = cmd
			}
			return nil, le
		}
		return nil, fmt.Errorf("pgembed: lock data dir %s: %w", abs, err)
	}
	// Only the holder writes the file, so a reader sees either the old or
	// the new holder's line, never a mix of both.
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" "+command+"\n"), 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("pgembed: lock data dir: write %s: %w", path, err)
		}
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up. Calling it again is a no-op.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	// Closing the descriptor drops the flock; the file stays, with the old
	// pid in it, which the next holder overwrites.
	if err := f.Close(); err != nil {
		return fmt.Errorf("pgembed: release data dir lock: %w", err)
	}
	return nil
}
