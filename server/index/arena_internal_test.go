package index

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestArenaKeepsRecsApart(t *testing.T) {
	t.Parallel()
	var a arena
	// Fill the first chunk but for two facts, then ask for three: the rec
	// starts a new chunk instead of running over the end.
	id1, r1 := a.alloc(chunkLen - 3)
	id2, r2 := a.alloc(2)
	require.Equal(t, recID(0), id1)
	require.Equal(t, recID(1<<chunkBits), id2)
	require.Len(t, r1, chunkLen-2)
	require.Len(t, r2, 3)
	// A rec longer than a chunk gets a chunk of its own, and the next rec
	// a fresh one after it.
	id3, r3 := a.alloc(chunkLen + 10)
	id4, _ := a.alloc(0)
	require.Equal(t, recID(2<<chunkBits), id3)
	require.Equal(t, recID(3<<chunkBits), id4)
	require.Len(t, r3, chunkLen+11)
	require.Equal(t, chunkLen-2+3+chunkLen+11+1, a.total)

	r2[0].first, r2[1].value, r2[2].value = 7, 8, 9
	got := recAt(a.chunks, id2)
	require.Equal(t, int64(7), got.first())
	require.Equal(t, []uint32{8, 9}, []uint32{got.facts()[0].value, got.facts()[1].value})
	require.Len(t, recAt(a.chunks, id3).facts(), chunkLen+10)
	require.Empty(t, recAt(a.chunks, id4).facts())
	// Appending to a rec's facts never overwrites its neighbour.
	_ = append(recAt(a.chunks, id1).facts(), fact{value: 99})
	require.Equal(t, int64(7), recAt(a.chunks, id2).first())
}

func TestExpiriesSchedule(t *testing.T) {
	t.Parallel()
	e := newExpiries()
	v4 := netip.MustParsePrefix("192.0.2.0/24")
	v6 := netip.MustParsePrefix("2001:db8::/32")
	mapped := netip.MustParsePrefix("::ffff:198.51.100.0/120")
	for _, p := range []netip.Prefix{v4, v6, mapped} {
		require.Equal(t, p, keyOf(p).prefix())
	}
	e.set(v4, 30)
	e.set(v6, 10)
	e.set(mapped, 20)
	e.set(v6, 40) // replaced, not added
	e.set(mapped, 0)
	require.Equal(t, int64(30), e.next())
	_, ok := e.popDue(29)
	require.False(t, ok)
	p, ok := e.popDue(35)
	require.True(t, ok)
	require.Equal(t, v4, p)
	p, ok = e.popDue(40)
	require.True(t, ok)
	require.Equal(t, v6, p)
	require.Equal(t, int64(0), e.next())
	require.Empty(t, e.pos)
}

func TestStaleWhenRecsAreMostlyGarbage(t *testing.T) {
	t.Parallel()
	ix := &Index{strs: newInterner(), recs: &arena{}, exps: newExpiries()}
	ix.recs.total, ix.liveFacts = 2*1000+staleFacts, 1000
	require.False(t, ix.stale())
	ix.recs.total++
	require.True(t, ix.stale())
}
