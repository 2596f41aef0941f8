//go:build linux

package nft

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// downAPI fails every call, as a server that is unreachable; it records whether the
// rules were in force at the first call.
type downAPI struct {
	once     sync.Once
	atFirst  func()
	rendered chan struct{}
}

func (a *downAPI) Render(context.Context, map[string]int64, time.Duration) (*bouncer.RenderResponse, bool, error) {
	a.once.Do(func() { a.atFirst(); close(a.rendered) })
	return nil, false, errors.New("connection refused")
}
func (a *downAPI) Heartbeat(context.Context, bouncer.Heartbeat) error { return errors.New("down") }
func (a *downAPI) Report(context.Context, bouncer.Report) error       { return errors.New("down") }

// TestRestartWithAPIDown: a bouncer killed without cleanup restarts while the API is
// down; the saved rules are in the kernel before its first API call, and drift is
// repaired from the in-memory state.
func TestRestartWithAPIDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.p.listen(t, 80)
	b.p.addClientAddr(t, "198.51.100.33")
	dir := t.TempDir()
	rs, err := bouncer.NewRulesetState(webRender())
	require.NoError(t, err)
	require.NoError(t, bouncer.SaveState(dir, (&bouncer.State{}).With(rs)))

	// "SIGKILL": no table survives in this fresh namespace, only the state file.
	require.True(t, b.p.connect(t, "198.51.100.33", 80, 2*time.Second))

	log := slog.New(slog.NewTextHandler(tWriter{t}, nil))
	fw := New(Options{NetNSFd: b.p.srv.FD, Priority: DefaultPriority, Logger: log})
	var blockedAtFirstCall bool
	api := &downAPI{rendered: make(chan struct{}), atFirst: func() {
		blockedAtFirstCall = !b.p.connect(t, "198.51.100.33", 80, blockedTimeout)
	}}
	backoffs := make(chan time.Duration, 100)
	s := bouncer.NewSyncer(api, fw, bouncer.Config{StateDir: dir, CheckEvery: 20 * time.Millisecond, HeartbeatEvery: time.Hour,
		Sleep: func(ctx context.Context, d time.Duration) error {
			select {
			case backoffs <- d:
			default:
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
				return nil
			}
		}}, log)
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-api.rendered:
	case <-time.After(10 * time.Second):
		t.Fatal("no API call")
	}
	require.True(t, blockedAtFirstCall, "saved rules in force before the first API call")
	<-backoffs

	// Flushed from outside while the API is down: the drift check restores the table.
	b.p.srv.Exec(t, "nft", "flush", "ruleset")
	eventually(t, 5*time.Second, func() bool { return fw.Check(b.ctx) == nil && !b.p.connect(t, "198.51.100.33", 80, blockedTimeout) },
		"table not restored after an outside flush")

	cancel()
	require.NoError(t, <-done)
	require.False(t, b.p.connect(t, "198.51.100.33", 80, blockedTimeout), "a clean stop leaves the rules in place")
}
