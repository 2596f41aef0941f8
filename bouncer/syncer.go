package bouncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config tunes a Syncer. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// StateDir holds the last applied renders.
	StateDir string
	// Wait is the long-poll wait sent to the server.
	Wait time.Duration
	// HeartbeatEvery is the heartbeat period.
	HeartbeatEvery time.Duration
	// CheckEvery is the period of drift checks and honeypot reports.
	CheckEvery time.Duration
	// BackoffMin and BackoffMax bound the retry delay after API or apply failures.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// Hostname and Version are sent with heartbeats.
	Hostname string
	Version  string
	// Sleep waits d or until ctx is done; tests replace it. Nil: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Save writes the applied state to the state directory; tests replace it
	// (a full disk). Nil: SaveState.
	Save func(dir string, st *State) error
	// Append writes the deltas applied since the last save to the state
	// directory's journal; tests replace it. Nil: AppendStateDeltas.
	Append func(dir string, deltas []Render) error
	// DryRun leaves the state dir alone (the firewall is the dry-run printer):
	// nothing is saved, and the log says nothing was applied.
	DryRun bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Wait: 30 * time.Second, HeartbeatEvery: 30 * time.Second, CheckEvery: 5 * time.Second,
		BackoffMin: time.Second, BackoffMax: time.Minute,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Wait <= 0 {
		c.Wait = d.Wait
	}
	if c.HeartbeatEvery <= 0 {
		c.HeartbeatEvery = d.HeartbeatEvery
	}
	if c.CheckEvery <= 0 {
		c.CheckEvery = d.CheckEvery
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = d.BackoffMin
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = max(d.BackoffMax, c.BackoffMin)
	}
	if c.Sleep == nil {
		c.Sleep = sleepCtx
	}
	if c.Save == nil {
		c.Save = SaveState
	}
	if c.Append == nil {
		c.Append = AppendStateDeltas
	}
	return c
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backoff is the delay before retry attempt n (1-based): exponential from min, capped
// at max, with jitter over the upper half so many bouncers do not retry in step.
func Backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	half := d / 2
	return half + rand.N(half+1)
}

// Syncer keeps the firewall in line with the server's renders.
type Syncer struct {
	api API
	fw  Firewall
	cfg Config
	log *slog.Logger

	// mu serializes changes of the state and of the firewall (poll, drift repair).
	mu    sync.Mutex
	state *State
	// saved is the state the file on disk holds (nil: unknown, e.g. nothing
	// saved by this process yet). While it differs from state, every check
	// saves again: a save that failed (a full disk) is retried until the file
	// is the applied version, so a reboot never restores older rules.
	saved *State
	// pending are the delta renders applied since saved, in order, and
	// pendingGen counts the times it was reset; journalOK says saved plus
	// pending is state (only deltas were applied since saved was written by
	// this process), so a save may append them to the journal instead of
	// writing the whole state. journaled counts the records appended since
	// the last full write.
	pending    []Render
	pendingGen int
	journalOK  bool
	journaled  int
	// saveMu serialises writes of the state file (outside mu: a write of a
	// large state takes a while, and polls and drift repair go on).
	saveMu sync.Mutex
	// Under Run, the state file is written by Run's saver after each apply
	// (saveReq wakes it), so a new render reaches the kernel without
	// waiting for the previous one's file; without Run, Poll saves before it
	// returns.
	async   atomic.Bool
	saveReq chan struct{}

	needFull map[string]bool
	lastErr  string
	reported map[string]bool
}

// NewSyncer returns a Syncer; it does nothing until Restore or Run.
func NewSyncer(api API, fw Firewall, cfg Config, log *slog.Logger) *Syncer {
	// Nothing applied yet is nothing to save: a state file this process could
	// not read is not overwritten until a render is applied.
	empty := &State{}
	return &Syncer{
		api: api, fw: fw, cfg: cfg.withDefaults(), log: log,
		state: empty, saved: empty, saveReq: make(chan struct{}, 1), needFull: map[string]bool{}, reported: map[string]bool{},
	}
}

// State returns the state the syncer enforces.
func (s *Syncer) State() *State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Restore applies the renders saved in the state directory. It never contacts the API:
// after a reboot or a crash the last good rules are in force before anything else.
func (s *Syncer) Restore(ctx context.Context) error {
	st, err := LoadState(s.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("syncer: restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(st.Rulesets) == 0 {
		s.log.Info("No saved renders to restore.", "state_dir", s.cfg.StateDir)
		return nil
	}
	if err := s.fw.Apply(ctx, st); err != nil {
		return fmt.Errorf("syncer: restore: %w", err)
	}
	s.state, s.saved = st, st
	s.log.Info("Restored the saved renders.", "rulesets", len(st.Rulesets), "elements", st.ElementCount())
	return nil
}

// Run restores the saved state, then long-polls, checks drift, sends heartbeats and
// honeypot reports until ctx is done. It leaves the rules in place when it returns.
func (s *Syncer) Run(ctx context.Context) error {
	if err := s.Restore(ctx); err != nil {
		// Keep going: the server can still provide renders.
		s.log.Error("Could not restore the saved renders.", "error", err)
		s.setErr(err)
	}
	var wg sync.WaitGroup
	s.async.Store(true)
	defer s.async.Store(false)
	wg.Go(func() { s.saver(ctx) })
	wg.Go(func() { s.every(ctx, s.cfg.CheckEvery, s.checkAndReport) })
	wg.Go(func() { s.every(ctx, s.cfg.HeartbeatEvery, s.heartbeat) })
	s.pollLoop(ctx)
	wg.Wait()
	return nil
}

func (s *Syncer) every(ctx context.Context, d time.Duration, f func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

func (s *Syncer) pollLoop(ctx context.Context) {
	attempt := 0
	var failingSince time.Time
	for ctx.Err() == nil {
		if _, err := s.Poll(ctx, s.cfg.Wait); err != nil {
			if ctx.Err() != nil {
				return
			}
			attempt++
			if attempt == 1 {
				failingSince = time.Now()
			}
			d := Backoff(attempt, s.cfg.BackoffMin, s.cfg.BackoffMax)
			s.log.Warn("Sync failed; still enforcing the applied rules, retrying.", "error", err, "attempt", attempt, "retry_in", d)
			s.setErr(err)
			if s.cfg.Sleep(ctx, d) != nil {
				return
			}
			continue
		}
		if attempt > 0 {
			s.log.Info("Sync recovered; the server answers again.", "failed_attempts", attempt,
				"failing_for", time.Since(failingSince).Round(time.Millisecond).String())
		}
		attempt = 0
	}
}

func (s *Syncer) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err.Error()
}

func (s *Syncer) since() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.state.Applied()
	for name := range s.needFull {
		// Without its version the server answers with a full render.
		delete(out, name)
	}
	return out
}

// Poll asks the server once (waiting up to wait) and applies what it answers. It
// reports whether anything was applied.
func (s *Syncer) Poll(ctx context.Context, wait time.Duration) (bool, error) {
	resp, notModified, err := s.api.Render(ctx, s.since(), wait)
	if err != nil {
		return false, fmt.Errorf("syncer: poll: %w", err)
	}
	if notModified || resp == nil {
		return false, nil
	}
	changed, err := s.apply(ctx, resp)
	if changed && !s.async.Load() {
		if serr := s.saveLatest(); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	return changed, err
}

// saver writes the state file after each apply until ctx ends, then once
// more. A failed write is retried by the periodic check (SaveIfBehind).
func (s *Syncer) saver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			_ = s.saveLatest()
			return
		case <-s.saveReq:
			_ = s.saveLatest()
		}
	}
}

func (s *Syncer) apply(ctx context.Context, resp *RenderResponse) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.state
	full := false
	var deltas []RulesetDelta
	var applied []Render // the delta renders in next
	var errs error
	needFull := maps.Clone(s.needFull)
	for _, r := range resp.Rulesets {
		if r.Delta {
			cur := next.Ruleset(r.Ruleset)
			if cur == nil {
				needFull[r.Ruleset] = true
				s.log.Warn("Got a delta for a ruleset not applied; asking for a full render.", "ruleset", r.Ruleset)
				continue
			}
			rs, d, err := cur.ApplyDelta(r)
			if errors.Is(err, ErrDeltaMismatch) {
				needFull[r.Ruleset] = true
				s.log.Warn("Delta does not fit; asking for a full render.", "ruleset", r.Ruleset, "error", err)
				continue
			}
			if err != nil {
				errs = errors.Join(errs, err)
				continue
			}
			next = next.With(rs)
			if len(d.Rules) > 0 {
				deltas = append(deltas, d)
			}
			applied = append(applied, r)
			continue
		}
		rs, err := NewRulesetState(r)
		if err != nil {
			// Keep enforcing the old version of this ruleset.
			errs = errors.Join(errs, fmt.Errorf("syncer: %w", err))
			continue
		}
		delete(needFull, r.Ruleset)
		next = next.With(rs)
		full = true
	}
	for _, name := range resp.Removed {
		if next.Ruleset(name) != nil {
			next = next.Without(name)
			full = true
		}
		delete(needFull, name)
	}
	changed := next != s.state
	if changed {
		var err error
		switch {
		case full:
			err = s.fw.Apply(ctx, next)
		default:
			err = s.fw.ApplyDelta(ctx, next, deltas)
			if errors.Is(err, ErrDrift) || errors.Is(err, ErrDeltaMismatch) {
				s.log.Warn("Delta could not be applied; applying the full table.", "error", err)
				err = s.fw.Apply(ctx, next)
			}
		}
		if err != nil {
			return false, errors.Join(errs, fmt.Errorf("syncer: apply: %w", err))
		}
		s.state = next
		if full {
			// The journal cannot say it: the next save writes the whole state.
			s.pending, s.journalOK = nil, false
			s.pendingGen++
		} else {
			s.pending = append(s.pending, applied...)
		}
		if s.cfg.DryRun {
			s.log.Info("Dry run: printed the renders; nothing was applied and the state dir is untouched.", "full", full, "deltas", len(deltas), "versions", next.Applied())
			s.needFull = needFull
			return changed, errs
		}
		if s.async.Load() {
			select {
			case s.saveReq <- struct{}{}:
			default: // a wake-up is pending: it saves the newest state
			}
		}
		s.log.Info("Applied renders.", "full", full, "deltas", len(deltas), "applied", next.Applied())
	}
	s.needFull = needFull
	if errs == nil {
		s.lastErr = ""
	}
	return changed, errs
}

// saveLatest writes the applied state to disk unless the file holds it
// already. Writes are serialised and each writes the state current when it
// starts, so the file never goes back to an older version.
func (s *Syncer) saveLatest() error {
	if s.cfg.DryRun {
		return nil // the state dir is left alone
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	st, saved := s.state, s.saved
	pending, gen, journal := s.pending, s.pendingGen, s.journalOK && s.journaled < maxJournaled
	s.mu.Unlock()
	if st == saved {
		return nil
	}
	var err error
	if journal && len(pending) > 0 {
		err = s.cfg.Append(s.cfg.StateDir, pending)
	} else {
		err = s.cfg.Save(s.cfg.StateDir, st)
	}
	if err != nil {
		s.log.Error("Could not save the applied renders; retrying at the next check.", "error", err, "applied", st.Applied())
		// A record may be half written: the next save writes the whole state.
		s.mu.Lock()
		s.journalOK = false
		s.mu.Unlock()
		return fmt.Errorf("syncer: save: %w", err)
	}
	if saved == nil || !maps.Equal(saved.Applied(), st.Applied()) {
		s.log.Debug("Saved the applied renders.", "applied", st.Applied(), "journal", journal)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saved = st
	if s.pendingGen != gen {
		return nil // a full render came meanwhile; journalOK is false
	}
	// The deltas applied after st stay pending.
	s.pending = slices.Clone(s.pending[len(pending):])
	if journal && len(pending) > 0 {
		s.journaled++
	} else {
		s.journalOK, s.journaled = true, 0
	}
	return nil
}

// maxJournaled bounds the journal: after this many appended records the next
// save writes the whole state and removes the journal.
const maxJournaled = 100

// SaveIfBehind saves the applied state when the file on disk is older (an
// earlier save failed). The periodic check calls it.
func (s *Syncer) SaveIfBehind() error { return s.saveLatest() }

// CheckDrift re-applies the whole state when the firewall drifted.
func (s *Syncer) CheckDrift(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.fw.Check(ctx)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrDrift) {
		return fmt.Errorf("syncer: check drift: %w", err)
	}
	s.log.Warn("The firewall drifted; re-applying the whole table.", "reason", err)
	if err := s.fw.Apply(ctx, s.state); err != nil {
		return fmt.Errorf("syncer: repair drift: %w", err)
	}
	return nil
}

func (s *Syncer) checkAndReport(ctx context.Context) {
	if err := s.CheckDrift(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("Drift check failed.", "error", err)
		s.setErr(err)
	}
	if err := s.SaveIfBehind(); err != nil {
		s.setErr(err)
	}
	if err := s.ReportHoneypot(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("Could not report honeypot sources.", "error", err)
	}
}

// ReportHoneypot sends the honeypot sources not reported yet. Sources that left the
// kernel set (timed out) are forgotten, so a later hit is reported again.
func (s *Syncer) ReportHoneypot(ctx context.Context) error {
	hits, err := s.fw.HoneypotSources(ctx)
	if err != nil {
		return fmt.Errorf("syncer: honeypot: %w", err)
	}
	key := func(h HoneypotHit) string { return fmt.Sprintf("%s|%s|%s|%d", h.Ruleset, h.IP, h.Protocol, h.Port) }
	s.mu.Lock()
	present := make(map[string]bool, len(hits))
	var fresh []HoneypotHit
	for _, h := range hits {
		k := key(h)
		present[k] = true
		// The server takes hits only on the honeypot ports of the bouncer's
		// rulesets: a hit the kernel kept from an older version is not sent.
		if !s.reported[k] && watched(s.state, h) {
			fresh = append(fresh, h)
		}
	}
	for k := range s.reported {
		if !present[k] {
			delete(s.reported, k)
		}
	}
	s.mu.Unlock()
	if len(fresh) == 0 {
		return nil
	}
	if err := s.api.Report(ctx, Report{Honeypot: fresh}); err != nil {
		var se *StatusError
		if !errors.As(err, &se) || (se.Status != http.StatusForbidden && se.Status != http.StatusUnprocessableEntity) {
			return fmt.Errorf("syncer: honeypot: %w", err) // sent again at the next check
		}
		// Refused for good (the rulesets changed on the server since the last
		// poll): sending the same hits again would be refused again.
		s.log.Warn("The server refused honeypot hits; they are dropped.", "hits", len(fresh), "error", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range fresh {
		s.reported[key(h)] = true
	}
	return nil
}

// watched reports whether h is on a honeypot port of its ruleset in st.
func watched(st *State, h HoneypotHit) bool {
	rs := st.Ruleset(h.Ruleset)
	if rs == nil {
		return false
	}
	ports := rs.Honeypot.TCP
	if h.Protocol == "udp" {
		ports = rs.Honeypot.UDP
	}
	return slices.Contains(ports, h.Port)
}

func (s *Syncer) heartbeat(ctx context.Context) {
	if err := s.Heartbeat(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("Heartbeat failed.", "error", err)
	}
}

// Heartbeat sends the applied versions, the rule counters and the last error.
func (s *Syncer) Heartbeat(ctx context.Context) error {
	counters, err := s.fw.Counters(ctx)
	s.mu.Lock()
	hb := Heartbeat{Hostname: s.cfg.Hostname, Version: s.cfg.Version, Applied: s.state.Applied(), Counters: counters, LastError: s.lastErr}
	s.mu.Unlock()
	if err != nil {
		hb.LastError = err.Error()
	}
	if hb.Counters == nil {
		hb.Counters = []RuleCounter{}
	}
	if err := s.api.Heartbeat(ctx, hb); err != nil {
		return fmt.Errorf("syncer: heartbeat: %w", err)
	}
	return nil
}
