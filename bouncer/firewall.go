package bouncer

import (
	"context"
	"errors"
)

// ErrDrift reports that the kernel no longer holds the table the bouncer applied.
var ErrDrift = errors.New("firewall drifted from the applied state")

// Firewall enforces a State. Implementations: bouncer/nft (the kernel), DryRun (an nft
// script) and Fake (tests).
type Firewall interface {
	// Apply replaces the whole table with st in one atomic transaction.
	Apply(ctx context.Context, st *State) error
	// ApplyDelta applies element changes in one transaction; st is the state they
	// lead to.
	ApplyDelta(ctx context.Context, st *State, deltas []RulesetDelta) error
	// Check returns an error wrapping ErrDrift when the table is not the one applied
	// last (missing, replaced, sets gone); other errors are faults of the check.
	Check(ctx context.Context) error
	// Remove deletes the table; removing a missing table is not an error.
	Remove(ctx context.Context) error
	// Counters returns the packet and byte count of every rule.
	Counters(ctx context.Context) ([]RuleCounter, error)
	// HoneypotSources returns the sources currently held by the honeypot sets.
	HoneypotSources(ctx context.Context) ([]HoneypotHit, error)
}
