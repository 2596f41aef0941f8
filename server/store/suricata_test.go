package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store/storetest"
)

// TestSuricataCategoriesStable: ids are given once, in name order the
// first time; a new tag (even one sorting first) takes the next free id and
// renumbers nothing; a deleted tag keeps its id until ids run out; past 60
// a tag gets none; concurrent callers agree.
func TestSuricataCategoriesStable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.Store(t)
	got, err := st.SuricataCategories(ctx, []string{"ssh-bruteforce", "scanner"})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"scanner": 1, "ssh-bruteforce": 2}, got)

	// "abuse" sorts first: it gets 3; the others keep theirs.
	got, err = st.SuricataCategories(ctx, []string{"abuse", "scanner", "ssh-bruteforce"})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"abuse": 3, "scanner": 1, "ssh-bruteforce": 2}, got)

	// scanner deleted: its id is kept for it; made again, it has 1 again.
	got, err = st.SuricataCategories(ctx, []string{"abuse", "ssh-bruteforce", "tor"})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"abuse": 3, "ssh-bruteforce": 2, "tor": 4}, got)
	got, err = st.SuricataCategories(ctx, []string{"abuse", "scanner", "ssh-bruteforce", "tor"})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"abuse": 3, "scanner": 1, "ssh-bruteforce": 2, "tor": 4}, got)

	// 60 ids: t05..t60 take 5..60; one more tag gets none until an id of a
	// deleted tag (scanner's 1) is given to it.
	tags := []string{"abuse", "scanner", "ssh-bruteforce", "tor"}
	for i := 5; i <= 60; i++ {
		tags = append(tags, fmt.Sprintf("t%02d", i))
	}
	got, err = st.SuricataCategories(ctx, append(tags, "zz"))
	require.NoError(t, err)
	require.Len(t, got, 60)
	require.Equal(t, 5, got["t05"])
	require.Equal(t, 60, got["t60"])
	_, ok := got["zz"]
	require.False(t, ok, "past 60 ids a tag has no category")
	got, err = st.SuricataCategories(ctx, append(tags[:1], append(tags[2:], "zz")...))
	require.NoError(t, err)
	require.Equal(t, 1, got["zz"], "scanner is gone: its id goes to the new tag")
	require.Equal(t, 3, got["abuse"])
	require.Equal(t, 60, got["t60"])

	// Several serve processes at once: one answer.
	fresh := storetest.Store(t)
	var wg sync.WaitGroup
	answers := make([]map[string]int, 8)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := fresh.SuricataCategories(ctx, []string{"b", "a", "c"})
			require.NoError(t, err)
			answers[i] = a
		}()
	}
	wg.Wait()
	for _, a := range answers {
		require.Equal(t, map[string]int{"a": 1, "b": 2, "c": 3}, a)
	}
}
