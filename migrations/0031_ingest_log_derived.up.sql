-- A detection's firing (issue 15) is an observation muninn derived from
-- sightings already counted, not a sighting: it asserts its tag but adds to
-- no sighting count, last_seen or daily count. It goes through the
-- observation log with the detection's event, so the log says which rows
-- are derived.
ALTER TABLE ingest_log ADD COLUMN derived boolean NOT NULL DEFAULT false;
