package bouncer

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// StateFileName is the file in the state directory that holds the last applied renders.
const StateFileName = "renders.json"

// JournalFileName is the file in the state directory that holds the deltas
// applied since StateFileName was written, one record per save, oldest
// first. A record is a 4-byte big-endian payload length, the payload's
// 4-byte big-endian CRC-32 (IEEE), and the payload: a JSON array of delta
// renders. A record cut short or failing its checksum (a crash mid-append)
// ends the journal: it and anything after it are ignored. SaveState removes
// the journal (compaction).
const JournalFileName = "renders.journal"

// maxJournalRecord bounds one record's payload on load (a corrupt length
// must not allocate gigabytes).
const maxJournalRecord = 1 << 30

// AppendStateDeltas appends one record holding deltas (delta renders, as
// applied, in order) to the journal in dir and fsyncs it: a cost in
// proportion to the deltas, not to the state.
func AppendStateDeltas(dir string, deltas []Render) error {
	payload, err := json.Marshal(deltas)
	if err != nil {
		return fmt.Errorf("state: append: encode: %w", err)
	}
	path := filepath.Join(dir, JournalFileName)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("state: append: %w", err)
	}
	rec := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint32(rec[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(rec[4:8], crc32.ChecksumIEEE(payload))
	rec = append(rec, payload...)
	if _, err := f.Write(rec); err != nil {
		f.Close()
		return fmt.Errorf("state: append: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("state: append: fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state: append: close: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		syncDir(dir) // the new file's name is durable too
	}
	return nil
}

// readJournal returns the complete, intact records of the journal in dir,
// oldest first; a missing journal has none.
func readJournal(dir string) ([][]Render, error) {
	f, err := os.Open(filepath.Join(dir, JournalFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: load journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var out [][]Render
	var head [8]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return out, nil // the end, or a torn header
		}
		n := binary.BigEndian.Uint32(head[0:4])
		if n > maxJournalRecord {
			return out, nil
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return out, nil // a torn payload
		}
		if crc32.ChecksumIEEE(payload) != binary.BigEndian.Uint32(head[4:8]) {
			return out, nil
		}
		var deltas []Render
		if err := json.Unmarshal(payload, &deltas); err != nil {
			return out, nil
		}
		out = append(out, deltas)
	}
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// SaveState writes the renders of st to dir atomically: a temp file, fsync, rename,
// then removes the journal, and fsyncs the directory. A crash leaves either the
// old or the new file; a journal left beside the new one holds deltas from
// older versions, which LoadState skips.
func SaveState(dir string, st *State) error {
	resp := RenderResponse{Rulesets: make([]Render, 0, len(st.Rulesets))}
	for i := range st.Rulesets {
		resp.Rulesets = append(resp.Rulesets, st.Rulesets[i].Render())
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state: save: %w", err)
	}
	tmp, err := os.CreateTemp(dir, StateFileName+".tmp*")
	if err != nil {
		return fmt.Errorf("state: save: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := json.NewEncoder(tmp).Encode(resp); err != nil {
		tmp.Close()
		return fmt.Errorf("state: save: encode: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("state: save: fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state: save: close: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, StateFileName)); err != nil {
		return fmt.Errorf("state: save: rename: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, JournalFileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: save: remove the journal: %w", err)
	}
	syncDir(dir)
	return nil
}

// LoadState reads the last applied renders from dir: the state file, then each
// delta of the journal that fits the ruleset's version (those from before the
// state file are skipped). A missing file is an empty state.
func LoadState(dir string) (*State, error) {
	f, err := os.Open(filepath.Join(dir, StateFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return &State{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: load: %w", err)
	}
	defer f.Close()
	var resp RenderResponse
	if err := json.NewDecoder(f).Decode(&resp); err != nil {
		return nil, fmt.Errorf("state: load: decode: %w", err)
	}
	st := &State{}
	for _, r := range resp.Rulesets {
		rs, err := NewRulesetState(r)
		if err != nil {
			return nil, fmt.Errorf("state: load: %w", err)
		}
		st = st.With(rs)
	}
	records, err := readJournal(dir)
	if err != nil {
		return nil, err
	}
	for _, deltas := range records {
		for _, d := range deltas {
			cur := st.Ruleset(d.Ruleset)
			if cur == nil {
				continue
			}
			next, _, err := cur.ApplyDelta(d)
			if errors.Is(err, ErrDeltaMismatch) {
				continue // from before the state file
			}
			if err != nil {
				return nil, fmt.Errorf("state: load journal: %w", err)
			}
			st = st.With(next)
		}
	}
	return st, nil
}
