-- Core model: prefixes, assertions, sightings, tags, tokens, audit, enrichment.

-- muninn_severity orders classifications: malicious > suspicious > benign > unknown.
CREATE FUNCTION muninn_severity(c text) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE c WHEN 'malicious' THEN 3 WHEN 'suspicious' THEN 2 WHEN 'benign' THEN 1 ELSE 0 END
$$;

CREATE TABLE prefixes (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  prefix      cidr        NOT NULL UNIQUE,
  first_seen  timestamptz NOT NULL,
  last_seen   timestamptz NOT NULL,
  sightings   bigint      NOT NULL DEFAULT 0,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- "Which stored prefixes contain this address" is one GiST probe (>>=).
CREATE INDEX prefixes_prefix_gist ON prefixes USING gist (prefix inet_ops);
CREATE INDEX prefixes_last_seen ON prefixes (last_seen);

CREATE TABLE assertions (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  prefix_id   bigint      NOT NULL REFERENCES prefixes (id) ON DELETE CASCADE,
  source      text        NOT NULL,
  kind        text        NOT NULL CHECK (kind IN ('tag', 'classification', 'note', 'suppress')),
  value       text        NOT NULL,
  first_seen  timestamptz NOT NULL,
  last_seen   timestamptz NOT NULL,
  expires_at  timestamptz,
  created_by  text        NOT NULL
);
-- A source says a tag (or suppresses one) once per prefix...
CREATE UNIQUE INDEX assertions_multi ON assertions (prefix_id, source, kind, value)
  WHERE kind IN ('tag', 'suppress');
-- ...and has one classification and one note per prefix.
CREATE UNIQUE INDEX assertions_single ON assertions (prefix_id, source, kind)
  WHERE kind IN ('classification', 'note');
CREATE INDEX assertions_kind_value ON assertions (kind, value);
CREATE INDEX assertions_expires ON assertions (expires_at) WHERE expires_at IS NOT NULL;

-- Raw sighting events, kept for MUNINN_SIGHTING_RETENTION; counts live on prefixes.
CREATE TABLE sightings (
  prefix_id bigint      NOT NULL REFERENCES prefixes (id) ON DELETE CASCADE,
  source    text        NOT NULL,
  seen_at   timestamptz NOT NULL
);
CREATE INDEX sightings_prefix ON sightings (prefix_id, seen_at);
CREATE INDEX sightings_seen_at ON sightings USING brin (seen_at);

CREATE TABLE tags (
  name        text PRIMARY KEY,
  description text        NOT NULL DEFAULT '',
  color       text        NOT NULL DEFAULT '',
  default_ttl interval,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name         text        NOT NULL UNIQUE,
  role         text        NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
  hash         bytea       NOT NULL UNIQUE,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  last_used_at timestamptz
);

CREATE TABLE audit (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor       text        NOT NULL,
  action      text        NOT NULL,
  object      text        NOT NULL,
  before      jsonb,
  after       jsonb
);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_object ON audit (object text_pattern_ops);

-- Geo/ASN networks loaded from the configured geo databases.
CREATE TABLE geo_networks (
  network    cidr PRIMARY KEY,
  country    text   NOT NULL DEFAULT '',
  continent  text   NOT NULL DEFAULT '',
  city       text   NOT NULL DEFAULT '',
  asn        bigint NOT NULL DEFAULT 0,
  as_org     text   NOT NULL DEFAULT '',
  source     text   NOT NULL DEFAULT ''
);
CREATE INDEX geo_networks_gist ON geo_networks USING gist (network inet_ops);

-- RDAP/whois answers, cached per returned network.
CREATE TABLE rdap_networks (
  network     cidr PRIMARY KEY,
  handle      text NOT NULL DEFAULT '',
  name        text NOT NULL DEFAULT '',
  org         text NOT NULL DEFAULT '',
  country     text NOT NULL DEFAULT '',
  abuse_email text NOT NULL DEFAULT '',
  registry    text NOT NULL DEFAULT '',
  raw         jsonb,
  fetched_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rdap_networks_gist ON rdap_networks USING gist (network inet_ops);

-- Names of an address: PTR answers and passive DNS from ingest.
CREATE TABLE hostnames (
  address    inet        NOT NULL,
  name       text        NOT NULL,
  source     text        NOT NULL,
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (address, name, source)
);
