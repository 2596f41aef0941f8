DROP TABLE IF EXISTS flow_host_destinations;
DROP TABLE IF EXISTS flow_contacts;
DROP FUNCTION IF EXISTS flow_partitions_prune(text, timestamptz);
DROP FUNCTION IF EXISTS flow_partition_ensure(timestamptz);
DROP TABLE IF EXISTS flow_agg_1h;
DROP TABLE IF EXISTS flow_agg_5m;
DROP TABLE IF EXISTS flow_remotes;
DROP TABLE IF EXISTS flow_hosts;
DROP TABLE IF EXISTS flow_exporters;
