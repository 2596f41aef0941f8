package geo

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	size    int64
	modTime time.Time
}

func stamps(paths Paths) (map[string]fileStamp, error) {
	out := map[string]fileStamp{}
	for _, f := range paths.files() {
		st, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("geo: stat: %w", err)
		}
		out[f] = fileStamp{size: st.Size(), modTime: st.ModTime()}
	}
	return out, nil
}

// Watcher holds the current DB and replaces it when a file changes. It runs no
// goroutine: the caller decides when to call Reload (a periodic job). Readers
// call Current, or Lookup, and never block on a reload.
type Watcher struct {
	// find names the files: fixed paths, or Discover on a directory, run
	// at every Reload so files that appear later are found.
	find func() (Paths, error)
	cur  atomic.Pointer[DB]

	mu     sync.Mutex // serialises Reload
	stamps map[string]fileStamp
	paths  Paths // of the DB in force
}

// NewWatcher opens the databases named by paths.
func NewWatcher(paths Paths) (*Watcher, error) {
	w := &Watcher{find: func() (Paths, error) { return paths, nil }}
	if _, err := w.Reload(); err != nil {
		return nil, err
	}
	return w, nil
}

// NewDirWatcher watches dir (which need not exist yet) for the files
// Discover knows. It always returns a Watcher, holding an empty DB when the
// first load failed; the error says why, and a later Reload retries.
func NewDirWatcher(dir string) (*Watcher, error) {
	w := &Watcher{find: func() (Paths, error) { return Discover(dir) }}
	w.cur.Store(&DB{})
	_, err := w.Reload()
	return w, err
}

// Paths returns the files of the DB in force.
func (w *Watcher) Paths() Paths {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.paths
}

// Current returns the DB in force. It stays usable after a reload replaced it:
// files are read into memory, and the garbage collector frees it.
func (w *Watcher) Current() *DB { return w.cur.Load() }

// Lookup is Current().Lookup(addr).
func (w *Watcher) Lookup(addr netip.Addr) (Record, bool) { return w.Current().Lookup(addr) }

// Reload reopens the databases when any file's size or modification time
// changed since the last load, and swaps the new DB in atomically. On error
// the old DB stays in force. A file that changes while it is being read (a
// download in progress) is reported as an error, to be retried later.
func (w *Watcher) Reload() (changed bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	paths, err := w.find()
	if err != nil {
		return false, fmt.Errorf("geo: reload: %w", err)
	}
	before, err := stamps(paths)
	if err != nil {
		return false, fmt.Errorf("geo: reload: %w", err)
	}
	if w.stamps != nil && equalStamps(before, w.stamps) {
		return false, nil
	}
	db, err := Open(paths)
	if err != nil {
		return false, fmt.Errorf("geo: reload: %w", err)
	}
	after, err := stamps(paths)
	if err != nil || !equalStamps(before, after) {
		return false, errors.Join(errors.New("geo: reload: files changed while loading, try again"), err)
	}
	w.cur.Store(db)
	w.stamps, w.paths = after, paths
	return true, nil
}

func equalStamps(a, b map[string]fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w.size != v.size || !w.modTime.Equal(v.modTime) {
			return false
		}
	}
	return true
}
