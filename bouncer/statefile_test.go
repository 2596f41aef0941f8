package bouncer_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// journalDeltas are the deltas 1→2 and 2→3 of render(1).
func journalDeltas() []bouncer.Render {
	return []bouncer.Render{
		{Ruleset: "traefik", Version: 2, Delta: true, BaseVersion: 1, Hash: "sha256:2", Rules: []bouncer.RenderRule{
			{ID: 1, AddV4: []string{"203.0.113.10/32"}, DelV4: []string{"203.0.113.9/32"}}}},
		{Ruleset: "traefik", Version: 3, Delta: true, BaseVersion: 2, Hash: "sha256:3", Rules: []bouncer.RenderRule{
			{ID: 2, AddV4: []string{"192.0.2.200/32"}}, {ID: 1, AddV6: []string{"2001:db8:5::1/128"}}}},
	}
}

// stateAt is render(1) after the first n journalDeltas, as LoadState should return it.
func stateAt(t *testing.T, n int) bouncer.Render {
	t.Helper()
	rs, err := bouncer.NewRulesetState(render(1))
	require.NoError(t, err)
	for _, d := range journalDeltas()[:n] {
		rs, _, err = rs.ApplyDelta(d)
		require.NoError(t, err)
	}
	return rs.Render()
}

// TestStateJournalTornTail: a state file and two journal records load as
// version 3; the journal cut at every byte of its last record (a crash
// mid-append) loads as version 2, exactly, and so does a last record whose
// checksum fails.
func TestStateJournalTornTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rs, err := bouncer.NewRulesetState(render(1))
	require.NoError(t, err)
	require.NoError(t, bouncer.SaveState(dir, (&bouncer.State{}).With(rs)))
	journal := filepath.Join(dir, bouncer.JournalFileName)
	require.NoError(t, bouncer.AppendStateDeltas(dir, journalDeltas()[:1]))
	first, err := os.ReadFile(journal)
	require.NoError(t, err)
	require.NoError(t, bouncer.AppendStateDeltas(dir, journalDeltas()[1:]))
	full, err := os.ReadFile(journal)
	require.NoError(t, err)

	load := func() bouncer.Render {
		st, err := bouncer.LoadState(dir)
		require.NoError(t, err)
		return st.Ruleset("traefik").Render()
	}
	require.Equal(t, stateAt(t, 2), load())
	v2 := stateAt(t, 1)
	for cut := len(first); cut < len(full); cut++ {
		require.NoError(t, os.WriteFile(journal, full[:cut], 0o600))
		require.Equal(t, v2, load(), "journal cut at byte %d of %d", cut, len(full))
	}
	bad := append([]byte(nil), full...)
	bad[len(bad)-1] ^= 0xff
	require.NoError(t, os.WriteFile(journal, bad, 0o600))
	require.Equal(t, v2, load(), "a record failing its checksum is ignored")
	require.NoError(t, os.WriteFile(journal, nil, 0o600))
	require.Equal(t, stateAt(t, 0), load(), "an empty journal")
}

// TestStateJournalAfterSnapshot: SaveState removes the journal; a journal
// left from before the state file (a crash between the rename and the
// removal) holds deltas from older versions, which are skipped.
func TestStateJournalAfterSnapshot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rs, err := bouncer.NewRulesetState(render(1))
	require.NoError(t, err)
	require.NoError(t, bouncer.AppendStateDeltas(dir, journalDeltas()[:1]))
	require.NoError(t, bouncer.SaveState(dir, (&bouncer.State{}).With(rs)))
	require.NoFileExists(t, filepath.Join(dir, bouncer.JournalFileName))

	rs2, _, err := rs.ApplyDelta(journalDeltas()[0])
	require.NoError(t, err)
	require.NoError(t, bouncer.SaveState(dir, (&bouncer.State{}).With(rs2)))
	require.NoError(t, bouncer.AppendStateDeltas(dir, journalDeltas()[:1])) // stale: 1→2
	st, err := bouncer.LoadState(dir)
	require.NoError(t, err)
	require.Equal(t, stateAt(t, 1), st.Ruleset("traefik").Render())
}

// TestSyncerJournalsDeltas: the syncer appends a delta to the journal
// instead of rewriting the state file, and a full render rewrites the file
// and removes the journal; each time the state on disk is the applied one.
func TestSyncerJournalsDeltas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	file, journal := filepath.Join(b.dir, bouncer.StateFileName), filepath.Join(b.dir, bouncer.JournalFileName)
	onDiskIs := func() {
		t.Helper()
		st, err := bouncer.LoadState(b.dir)
		require.NoError(t, err)
		require.Equal(t, b.fake.State().Ruleset("traefik").Render(), st.Ruleset("traefik").Render())
	}

	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}}))
	_, err := b.syncer.Poll(ctx, 0)
	require.NoError(t, err)
	before, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NoFileExists(t, journal)
	for _, d := range journalDeltas() {
		b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{d}}))
		_, err = b.syncer.Poll(ctx, 0)
		require.NoError(t, err)
		onDiskIs()
	}
	after, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, before, after, "the state file is not rewritten for a delta")
	require.FileExists(t, journal)

	b.srv.queue(respond(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(4)}}))
	_, err = b.syncer.Poll(ctx, 0)
	require.NoError(t, err)
	require.NoFileExists(t, journal, "a full render rewrites the file")
	onDiskIs()
}

// BenchmarkStateSave: the state file's cost after a delta of 1k adds and 1k
// deletes to a set of 1M addresses: "full" rewrites the whole state
// (SaveState, before the journal), "journal" appends the delta
// (AppendStateDeltas).
func BenchmarkStateSave(b *testing.B) {
	const n = 1_000_000
	v4 := make([]string, n)
	for i := range n {
		v4[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String() + "/32"
	}
	r := render(1)
	r.Rules[0].V4 = v4
	rs, err := bouncer.NewRulesetState(r)
	require.NoError(b, err)
	st := (&bouncer.State{}).With(rs)
	delta := bouncer.Render{Ruleset: "traefik", Version: 2, Delta: true, BaseVersion: 1, Rules: []bouncer.RenderRule{{ID: 1}}}
	for i := range 1000 {
		delta.Rules[0].DelV4 = append(delta.Rules[0].DelV4, v4[i*997])
		delta.Rules[0].AddV4 = append(delta.Rules[0].AddV4, fmt.Sprintf("11.0.%d.%d/32", i>>8, i&0xff))
	}
	b.Run("full", func(b *testing.B) {
		dir := b.TempDir()
		for b.Loop() {
			require.NoError(b, bouncer.SaveState(dir, st))
		}
	})
	b.Run("journal", func(b *testing.B) {
		dir := b.TempDir()
		for b.Loop() {
			require.NoError(b, bouncer.AppendStateDeltas(dir, []bouncer.Render{delta}))
		}
	})
}

// FuzzStateJournal: a journal with any content beside a good state file is
// loaded or refused with an error, never a panic; what loads is the state
// file's ruleset at some version, and saves and loads back the same.
func FuzzStateJournal(f *testing.F) {
	dir := f.TempDir()
	rs, err := bouncer.NewRulesetState(render(1))
	require.NoError(f, err)
	require.NoError(f, bouncer.SaveState(dir, (&bouncer.State{}).With(rs)))
	require.NoError(f, bouncer.AppendStateDeltas(dir, journalDeltas()))
	good, err := os.ReadFile(filepath.Join(dir, bouncer.JournalFileName))
	require.NoError(f, err)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		require.NoError(t, bouncer.SaveState(dir, (&bouncer.State{}).With(rs)))
		require.NoError(t, os.WriteFile(filepath.Join(dir, bouncer.JournalFileName), b, 0o600))
		st, err := bouncer.LoadState(dir)
		if err != nil {
			return
		}
		require.NotNil(t, st.Ruleset("traefik"))
		require.NoError(t, bouncer.SaveState(dir, st))
		again, err := bouncer.LoadState(dir)
		require.NoError(t, err)
		require.Equal(t, st.Ruleset("traefik").Render(), again.Ruleset("traefik").Render())
	})
}
