package index

import (
	"net/netip"

	"github.com/muninn/muninn/server/policy"
)

// EntriesWith is Entries' list resolved by the given number of workers, for
// testing the parallel path on small data.
func EntriesWith(s *Snap, within netip.Prefix, workers int) []policy.Entry {
	return s.entries(within, workers)
}
