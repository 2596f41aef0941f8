DROP TABLE enrich_attempts;
DROP TABLE feed_runs;
DROP TABLE feeds;
