package bouncer

import (
	"context"
	"fmt"
)

// Once applies the saved renders, then the server's current ones, and (unless
// DryRun) sends one heartbeat, so the server sees the version a `--once` run
// (a cron job, a boot script) applied. A dry run contacts the server only to
// read renders: no heartbeat, no state written.
func (s *Syncer) Once(ctx context.Context) error {
	if err := s.Restore(ctx); err != nil {
		s.log.Error("Could not restore the saved renders.", "error", err)
		s.setErr(err)
	}
	if _, err := s.Poll(ctx, 0); err != nil {
		s.setErr(err)
		if !s.cfg.DryRun {
			// Tell the server what failed; the poll's error is the one returned.
			_ = s.Heartbeat(ctx)
		}
		return fmt.Errorf("syncer: once: %w", err)
	}
	if s.cfg.DryRun {
		return nil
	}
	if err := s.Heartbeat(ctx); err != nil {
		return fmt.Errorf("syncer: once: %w", err)
	}
	return nil
}
