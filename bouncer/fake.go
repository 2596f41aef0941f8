package bouncer

import (
	"context"
	"fmt"
	"sync"
)

// FakeEvent is one call a Fake received.
type FakeEvent struct {
	Op     string // "apply", "delta", "remove"
	State  *State
	Deltas []RulesetDelta
}

// Fake is an in-memory Firewall for tests. Every successful Apply, ApplyDelta and
// Remove is sent to Events (buffered; a full buffer drops events).
type Fake struct {
	mu      sync.Mutex
	state   *State
	drift   bool
	failErr error
	hits    []HoneypotHit
	events  chan FakeEvent
}

// NewFake returns an empty Fake.
func NewFake() *Fake { return &Fake{events: make(chan FakeEvent, 1024)} }

// Events delivers the Fake's calls in order.
func (f *Fake) Events() <-chan FakeEvent { return f.events }

// State returns the state the Fake enforces, nil when nothing was applied.
func (f *Fake) State() *State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// SetDrift makes the next Check report drift, as if the table had been flushed.
func (f *Fake) SetDrift() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drift = true
}

// SetFailure makes Apply and ApplyDelta fail with err (nil clears it).
func (f *Fake) SetFailure(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failErr = err
}

// AddHoneypotHit adds a source HoneypotSources will return.
func (f *Fake) AddHoneypotHit(h HoneypotHit) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits = append(f.hits, h)
}

func (f *Fake) emit(e FakeEvent) {
	select {
	case f.events <- e:
	default:
	}
}

// Apply records st as the enforced state.
func (f *Fake) Apply(_ context.Context, st *State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failErr != nil {
		return fmt.Errorf("fake: apply: %w", f.failErr)
	}
	f.state, f.drift = st, false
	f.emit(FakeEvent{Op: "apply", State: st})
	return nil
}

// ApplyDelta records st as the enforced state.
func (f *Fake) ApplyDelta(_ context.Context, st *State, deltas []RulesetDelta) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failErr != nil {
		return fmt.Errorf("fake: apply delta: %w", f.failErr)
	}
	if f.state == nil {
		return fmt.Errorf("fake: apply delta: %w: no table", ErrDrift)
	}
	f.state = st
	f.emit(FakeEvent{Op: "delta", State: st, Deltas: deltas})
	return nil
}

// Check reports drift after SetDrift.
func (f *Fake) Check(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.drift {
		return fmt.Errorf("fake: %w: table flushed", ErrDrift)
	}
	return nil
}

// Remove forgets the enforced state.
func (f *Fake) Remove(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = nil
	f.emit(FakeEvent{Op: "remove"})
	return nil
}

// Counters returns one zero counter per rule and default.
func (f *Fake) Counters(context.Context) ([]RuleCounter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == nil {
		return nil, nil
	}
	var out []RuleCounter
	for _, rs := range f.state.Rulesets {
		for _, r := range rs.Rules {
			out = append(out, RuleCounter{Ruleset: rs.Name, RuleID: r.ID, Packets: 1, Bytes: 60})
		}
		out = append(out, RuleCounter{Ruleset: rs.Name})
	}
	return out, nil
}

// HoneypotSources returns the hits added with AddHoneypotHit.
func (f *Fake) HoneypotSources(context.Context) ([]HoneypotHit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]HoneypotHit(nil), f.hits...), nil
}
