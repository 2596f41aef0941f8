package render

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDrainEndsParkedLongPolls(t *testing.T) {
	t.Parallel()
	h := &Hub{}
	ctx := context.Background()
	changed := make(chan struct{})
	parked := make(chan bool)
	go func() { parked <- h.Await(ctx, changed) }()
	waited := make(chan *Snapshot)
	go func() { waited <- h.Wait(ctx, "edge", 0) }()
	require.Eventually(t, func() bool { return h.Parked() == 2 }, time.Minute, time.Millisecond)

	h.Drain()
	require.False(t, <-parked, "Await ends as at its deadline")
	require.Nil(t, <-waited, "Wait ends as at its deadline")
	require.Equal(t, 0, h.Parked())
	h.Drain() // a second Drain is a no-op
	require.False(t, h.Await(ctx, changed), "later long polls return at once")
	select {
	case <-h.Draining():
	default:
		t.Fatal("Draining is closed after Drain")
	}
}
