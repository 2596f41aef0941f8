ALTER TABLE enrich_attempts DROP COLUMN outcome;
ALTER TABLE feed_runs DROP COLUMN rejected_lines;
