-- Containment questions are answered by each process's in-memory index
-- (server/index), so no query uses the GiST index on prefixes any more. It was
-- worse than useless: the planner also picks it for equality (prefix = ANY
-- ($1)), where each probe cost ~2.5 ms at 1M stored IPv6 prefixes, so applying
-- one 50,000-prefix change took two minutes (the unique B-tree: 0.3 s). It also
-- made every ingest maintain a second index.
DROP INDEX prefixes_prefix_gist;
