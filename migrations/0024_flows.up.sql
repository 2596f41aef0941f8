-- Flows (issue 17): exporters that send NetFlow/IPFIX/sFlow, the inside hosts
-- they see, what each outside address did, and per inside host aggregates in
-- 5-minute and 1-hour buckets. The aggregate tables are partitioned by day on
-- their bucket so retention is a partition drop (flow_partitions_prune).

-- An exporter is known by the address its datagrams come from. sampling_rate
-- 0 means "as the exporter says" (1 when it says nothing); inside lists the
-- networks whose addresses are inside hosts.
CREATE TABLE flow_exporters (
  id            bigserial PRIMARY KEY,
  address       inet NOT NULL UNIQUE CHECK (masklen(address) = CASE family(address) WHEN 4 THEN 32 ELSE 128 END),
  name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
  sampling_rate integer NOT NULL DEFAULT 0 CHECK (sampling_rate >= 0),
  inside        cidr[] NOT NULL DEFAULT '{10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Inside hosts: first and last seen, the MAC when an exporter sends one, the
-- name from a DHCP lease file, a manual label.
CREATE TABLE flow_hosts (
  address    inet PRIMARY KEY,
  first_seen timestamptz NOT NULL,
  last_seen  timestamptz NOT NULL,
  exporter   text NOT NULL,
  mac        text NOT NULL DEFAULT '',
  lease_name text NOT NULL DEFAULT '',
  label      text NOT NULL DEFAULT '' CHECK (length(label) <= 256),
  bytes      bigint NOT NULL DEFAULT 0,
  packets    bigint NOT NULL DEFAULT 0,
  flows      bigint NOT NULL DEFAULT 0
);
CREATE INDEX flow_hosts_last_seen ON flow_hosts (last_seen DESC);

-- What an outside address did, per exporter: the totals and a bounded list of
-- the inside peers and ports it talked with (the newest 32 of each).
CREATE TABLE flow_remotes (
  address    inet NOT NULL,
  exporter   text NOT NULL,
  first_seen timestamptz NOT NULL,
  last_seen  timestamptz NOT NULL,
  bytes      bigint NOT NULL,
  packets    bigint NOT NULL,
  flows      bigint NOT NULL,
  peers      inet[] NOT NULL,
  ports      integer[] NOT NULL,
  PRIMARY KEY (address, exporter)
);

-- Per inside host aggregates: one row per bucket, host, outside address,
-- port and protocol. country/org/asn are read from the index when the flows
-- were aggregated.
CREATE TABLE flow_agg_5m (
  bucket  timestamptz NOT NULL,
  host    inet NOT NULL,
  remote  inet NOT NULL,
  port    integer NOT NULL,
  proto   smallint NOT NULL,
  country text NOT NULL,
  org     text NOT NULL,
  asn     bigint NOT NULL,
  bytes   bigint NOT NULL,
  packets bigint NOT NULL,
  flows   bigint NOT NULL,
  PRIMARY KEY (bucket, host, remote, port, proto)
) PARTITION BY RANGE (bucket);
CREATE TABLE flow_agg_1h (LIKE flow_agg_5m INCLUDING ALL) PARTITION BY RANGE (bucket);
CREATE INDEX flow_agg_5m_host ON flow_agg_5m (host, bucket);
CREATE INDEX flow_agg_1h_host ON flow_agg_1h (host, bucket);

-- flow_partition_ensure creates the day partition of both aggregate tables
-- that holds instant at (idempotent). Partition names are flow_agg_5m_YYYYMMDD.
CREATE FUNCTION flow_partition_ensure(at timestamptz) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  day date := (at AT TIME ZONE 'UTC')::date;
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['flow_agg_5m', 'flow_agg_1h'] LOOP
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
      t || '_' || to_char(day, 'YYYYMMDD'), t,
      (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
  END LOOP;
END $$;

-- flow_partitions_prune drops the day partitions of table t (flow_agg_5m or
-- flow_agg_1h) that end at or before cutoff and returns how many it dropped.
CREATE FUNCTION flow_partitions_prune(t text, cutoff timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  r record;
  n integer := 0;
BEGIN
  IF t NOT IN ('flow_agg_5m', 'flow_agg_1h') THEN
    RAISE EXCEPTION 'not a flow aggregate table: %', t;
  END IF;
  FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = t::regclass AND c.relname ~ '_[0-9]{8}$' LOOP
    IF ((to_date(right(r.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC') <= cutoff THEN
      EXECUTE format('DROP TABLE %I', r.relname);
      n := n + 1;
    END IF;
  END LOOP;
  RETURN n;
END $$;

-- One row per inside host, outside address and hour in which the host
-- contacted an address whose view was malicious or suspicious or carried an
-- alert tag: the profile's bad contacts, and the one-event-per-hour key.
CREATE TABLE flow_contacts (
  host           inet NOT NULL,
  remote         inet NOT NULL,
  hour           timestamptz NOT NULL,
  classification text NOT NULL,
  tags           text[] NOT NULL,
  bytes          bigint NOT NULL,
  PRIMARY KEY (host, remote, hour)
);
CREATE INDEX flow_contacts_hour ON flow_contacts (hour DESC);

-- The countries and organisations each inside host has used, with when it
-- first did: a new one is an event.
CREATE TABLE flow_host_destinations (
  host       inet NOT NULL,
  kind       text NOT NULL CHECK (kind IN ('country', 'org')),
  value      text NOT NULL,
  first_seen timestamptz NOT NULL,
  PRIMARY KEY (host, kind, value)
);
