-- Feed runs keep the first rejected lines (line, text, reason) so a person
-- can see why a feed's lines were refused, not only how many.
ALTER TABLE feed_runs ADD COLUMN rejected_lines jsonb NOT NULL DEFAULT '[]';

-- An enrichment attempt's outcome: ok, not_found (the registry or the DNS
-- has no answer), error (retried later) or skipped (special-use address,
-- not looked up). Older rows only had the error text.
ALTER TABLE enrich_attempts ADD COLUMN outcome text NOT NULL DEFAULT 'ok'
  CHECK (outcome IN ('ok', 'not_found', 'error', 'skipped'));
UPDATE enrich_attempts SET outcome = 'error' WHERE error <> '';
