-- Enrichment joins the change feed: the in-memory index holds the RDAP
-- networks and the reverse-DNS names, so their writers record a change of
-- scope 'enrich' listing what they wrote (an RDAP network, or the host
-- prefix of an address whose names changed).
ALTER TABLE changes DROP CONSTRAINT changes_scope_check;
ALTER TABLE changes ADD CONSTRAINT changes_scope_check CHECK (scope IN ('prefixes', 'all', 'geo', 'enrich'));
