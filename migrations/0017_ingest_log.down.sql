-- Observations still in the log are lost on the way down: merge them first
-- (a muninn process merges the log within a second).
DROP TABLE IF EXISTS ingest_log;
CREATE TABLE IF NOT EXISTS sightings (
  prefix_id bigint      NOT NULL REFERENCES prefixes (id) ON DELETE CASCADE,
  source    text        NOT NULL,
  seen_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sightings_prefix ON sightings (prefix_id, seen_at);
CREATE INDEX IF NOT EXISTS sightings_seen_at ON sightings USING brin (seen_at);
DROP TABLE IF EXISTS sighting_counts;
