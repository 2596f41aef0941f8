-- Ingest rewrites the same prefix rows again and again (sightings, last_seen)
-- and, less often, their assertions. Room left on each page lets PostgreSQL
-- put the new row version next to the old one (a HOT update: no index
-- entries), which roughly halves the cost of an aggregated merge. It applies
-- to pages written from now on; VACUUM FULL or CLUSTER rewrites the old ones.
ALTER TABLE prefixes SET (fillfactor = 80);
ALTER TABLE assertions SET (fillfactor = 80);
