package bouncer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// StateFileName is the file in the state directory that holds the last applied renders.
const StateFileName = "renders.json"

// SaveState writes the renders of st to dir atomically: a temp file, fsync, rename,
// fsync of the directory. A crash leaves either the old or the new file.
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
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// LoadState reads the last applied renders from dir. A missing file is an empty state.
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
	return st, nil
}
