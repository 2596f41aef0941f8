package store

import (
	"context"
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

// PageEnrichment is the geo and name data exports add to a page of items.
type PageEnrichment struct {
	Country string
	ASN     int64
	ASOrg   string
	RDNS    string
}

// EnrichPage returns, for each prefix, its most specific geo network and its
// newest PTR name, in one query.
func (s *Store) EnrichPage(ctx context.Context, prefixes []netip.Prefix) (map[netip.Prefix]PageEnrichment, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT q.p, coalesce(g.country, ''), coalesce(g.asn, 0), coalesce(g.as_org, ''), coalesce(h.name, '')
		FROM unnest($1::cidr[]) AS q(p)
		LEFT JOIN LATERAL (SELECT country, asn, as_org FROM geo_networks WHERE network >>= q.p ORDER BY masklen(network) DESC LIMIT 1) g ON true
		LEFT JOIN LATERAL (SELECT name FROM hostnames WHERE address = q.p::inet AND masklen(q.p) = CASE WHEN family(q.p) = 4 THEN 32 ELSE 128 END
		                   ORDER BY (source = 'ptr') DESC, last_seen DESC LIMIT 1) h ON true`, prefixes)
	if err != nil {
		return nil, mapErr("enrich page", err)
	}
	defer rows.Close()
	out := make(map[netip.Prefix]PageEnrichment, len(prefixes))
	for rows.Next() {
		var p netip.Prefix
		var e PageEnrichment
		if err := rows.Scan(&p, &e.Country, &e.ASN, &e.ASOrg, &e.RDNS); err != nil {
			return nil, mapErr("enrich page", err)
		}
		out[p] = e
	}
	return out, mapErr("enrich page", rows.Err())
}
