package store

import (
	"net/netip"
	"time"
)

// Filter selects stored prefixes by their own live assertions.
type Filter struct {
	Tag            string
	Classification string
	// Source matches exactly, or as a prefix when it ends in "*".
	Source    string
	Within    *netip.Prefix
	SeenSince *time.Time
}

// Item is one stored prefix in a search result.
type Item struct {
	ID             int64
	Prefix         netip.Prefix
	Classification string
	Tags           []string
	Sources        []string
	Note           string
	FirstSeen      time.Time
	LastSeen       time.Time
	Sightings      int64
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
