CREATE UNIQUE INDEX assertions_multi ON assertions (prefix_id, source, kind, value) WHERE kind IN ('tag', 'suppress');
CREATE UNIQUE INDEX assertions_single ON assertions (prefix_id, source, kind) WHERE kind IN ('classification', 'note');
CREATE INDEX assertions_prefix ON assertions (prefix_id);
DROP INDEX assertions_key;
ALTER TABLE assertions DROP COLUMN value_key;
