-- The ingest write path (issue 14): an observation is acknowledged once it is
-- COPYed into ingest_log, an append-only table without indexes (a COPY into it
-- costs what a COPY into a bare table costs). A merger in every muninn process
-- folds the log into prefixes and assertions in large set-based batches
-- (concurrent merges claim disjoint rows with SKIP LOCKED), deleting the rows
-- it merged in the same transaction: a crash of the server or of PostgreSQL
-- leaves every acknowledged row either merged or still in the log.
CREATE TABLE ingest_log (
  prefix         cidr        NOT NULL,
  source         text        NOT NULL,
  tags           text[]      NOT NULL,
  classification text        NOT NULL,
  seen_at        timestamptz NOT NULL,
  expires_at     timestamptz,
  note           text        NOT NULL,
  actor          text        NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200000);

-- Sightings are counted per UTC day and source rather than stored row by row:
-- the per-prefix count lives on prefixes.sightings, and the dashboard's
-- sightings-per-day chart is the only reader of the events. Retention
-- (MUNINN_SIGHTING_RETENTION) drops whole days.
CREATE TABLE sighting_counts (
  day       date   NOT NULL,
  source    text   NOT NULL,
  sightings bigint NOT NULL,
  PRIMARY KEY (day, source)
);
INSERT INTO sighting_counts (day, source, sightings)
  SELECT (seen_at AT TIME ZONE 'UTC')::date, source, count(*) FROM sightings GROUP BY 1, 2;
DROP TABLE sightings;
