-- Rulesets, named lists, the operator's never-block guard, renders, bouncers
-- and the CrowdSec stream cursors.

CREATE TABLE rulesets (
  name       text PRIMARY KEY,
  text       text        NOT NULL,
  json       jsonb       NOT NULL,
  version    bigint      NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text        NOT NULL DEFAULT ''
);

-- Every distinct render of a ruleset; a new row only when the content hash changes.
-- Not a foreign key: a deleted ruleset keeps its history until it is pruned.
CREATE TABLE renders (
  ruleset      text        NOT NULL,
  version      bigint      NOT NULL,
  hash         text        NOT NULL,
  body         bytea       NOT NULL,
  generated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (ruleset, version)
);

CREATE TABLE lists (
  name       text PRIMARY KEY,
  selector   text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text        NOT NULL DEFAULT ''
);

-- The operator's own never-block entries; the built-in tier lives in the binary.
CREATE TABLE guard_entries (
  prefix     cidr PRIMARY KEY,
  reason     text        NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bouncers (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name       text        NOT NULL UNIQUE,
  key_hash   bytea       NOT NULL UNIQUE,
  rulesets   text[]      NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  last_seen  timestamptz,
  applied    jsonb       NOT NULL DEFAULT '{}',
  hostname   text        NOT NULL DEFAULT '',
  version    text        NOT NULL DEFAULT '',
  last_error text        NOT NULL DEFAULT '',
  counters   jsonb       NOT NULL DEFAULT '[]'
);

-- What the CrowdSec stream last sent a bouncer: the render versions it was
-- built from (an unchanged pull compares only these) and value -> scenario of
-- every decision, so the next pull can answer with what is new and deleted.
CREATE TABLE crowdsec_cursors (
  bouncer_id bigint      PRIMARY KEY REFERENCES bouncers (id) ON DELETE CASCADE,
  versions   jsonb       NOT NULL DEFAULT '{}',
  sent       jsonb       NOT NULL DEFAULT '{}',
  updated_at timestamptz NOT NULL DEFAULT now()
);
