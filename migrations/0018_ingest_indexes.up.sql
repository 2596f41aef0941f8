-- Indexes no query uses any more, maintained on every merged row: answers come
-- from the in-memory index (server/index), and the remaining queries on
-- assertions go through their key (prefix_id first) or a source. Without an
-- index on prefixes.last_seen, bumping last_seen and the sighting count of a
-- prefix seen again is a HOT update (no index touched).
DROP INDEX IF EXISTS prefixes_last_seen;
DROP INDEX IF EXISTS assertions_kind_value;
-- A feed refresh reads its own assertions by source: a partial index keeps
-- that in proportion to the feed, not to every assertion stored, and costs
-- ingest nothing (its rows are not feed:).
CREATE INDEX assertions_feed_source ON assertions (source, prefix_id) WHERE source LIKE 'feed:%';
