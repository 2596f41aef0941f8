// Package indextest runs an in-memory index for tests of the packages that
// answer from it (api, ui, e2e).
package indextest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/store"
)

// Start returns an index over st, loaded and following the change feed; its
// goroutine is stopped and waited for at cleanup. now is the index's clock
// (time.Now when nil).
func Start(tb testing.TB, st *store.Store, log *slog.Logger, now func() time.Time) *index.Index {
	tb.Helper()
	if now == nil {
		now = time.Now
	}
	ix := index.New(st, log, now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ix.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	select {
	case <-ix.Ready():
	case <-time.After(time.Minute):
		require.FailNow(tb, "indextest: the index did not load within a minute")
	}
	return ix
}
