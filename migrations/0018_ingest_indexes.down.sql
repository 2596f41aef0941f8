DROP INDEX IF EXISTS assertions_feed_source;
CREATE INDEX IF NOT EXISTS prefixes_last_seen ON prefixes (last_seen);
CREATE INDEX IF NOT EXISTS assertions_kind_value ON assertions (kind, value);
