-- One unique key for every kind of assertion, replacing two partial unique
-- indexes and the plain prefix_id index: a source says a tag (or suppress) once
-- per prefix and value, and has one classification and one note per prefix.
-- Leading with prefix_id, the key also serves per-prefix reads. Ingest merges
-- every kind with one statement against it and maintains two fewer indexes.
ALTER TABLE assertions ADD COLUMN value_key text NOT NULL
  GENERATED ALWAYS AS (CASE WHEN kind IN ('classification', 'note') THEN '' ELSE value END) STORED;
CREATE UNIQUE INDEX assertions_key ON assertions (prefix_id, kind, source, value_key);
DROP INDEX assertions_multi, assertions_single, assertions_prefix;
