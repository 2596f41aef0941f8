-- Passive DNS (issue 15): names are pruned by last_seen with the retention
-- of raw sightings (store.PrunePassiveDNS), and each address keeps only its
-- newest names (store.MaxPassiveDNS), trimmed in the write's transaction.
CREATE INDEX passive_dns_last_seen ON passive_dns (last_seen);
