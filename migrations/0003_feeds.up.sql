-- Feeds: remote or local lists refreshed on a schedule, their run history, and
-- the bookkeeping of enrichment lookups (RDAP, PTR) so failures are not retried
-- on every scan.

CREATE TABLE feeds (
  name              text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
  url               text        NOT NULL,
  format            text        NOT NULL,
  options           jsonb       NOT NULL DEFAULT '{}',
  tag               text        NOT NULL DEFAULT '',
  classification    text        NOT NULL DEFAULT ''
                    CHECK (classification IN ('', 'malicious', 'suspicious', 'benign', 'unknown')),
  -- ttl sets expires_at = refresh time + ttl on the feed's assertions; NULL is never.
  ttl               interval,
  schedule          interval    NOT NULL DEFAULT '1 hour' CHECK (schedule >= '1 minute'),
  enabled           boolean     NOT NULL DEFAULT false,
  etag              text        NOT NULL DEFAULT '',
  last_modified     text        NOT NULL DEFAULT '',
  -- Guards: widest prefix accepted per family (0 = the parser's default) and
  -- the largest share of entries one refresh may remove without force.
  max_prefix_len_v4 int         NOT NULL DEFAULT 0 CHECK (max_prefix_len_v4 BETWEEN -1 AND 32),
  max_prefix_len_v6 int         NOT NULL DEFAULT 0 CHECK (max_prefix_len_v6 BETWEEN -1 AND 128),
  max_drop_share    double precision NOT NULL DEFAULT 0.5 CHECK (max_drop_share BETWEEN 0 AND 1),
  last_run          timestamptz,
  last_success      timestamptz,
  entries           bigint      NOT NULL DEFAULT 0,
  rejected          bigint      NOT NULL DEFAULT 0,
  last_error        text        NOT NULL DEFAULT '',
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE feed_runs (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  feed        text        NOT NULL REFERENCES feeds (name) ON DELETE CASCADE,
  started_at  timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  status      text        NOT NULL CHECK (status IN ('ok', 'not_modified', 'failed', 'refused')),
  forced      boolean     NOT NULL DEFAULT false,
  lines       bigint      NOT NULL DEFAULT 0,
  entries     bigint      NOT NULL DEFAULT 0,
  added       bigint      NOT NULL DEFAULT 0,
  removed     bigint      NOT NULL DEFAULT 0,
  rejected    bigint      NOT NULL DEFAULT 0,
  duplicates  bigint      NOT NULL DEFAULT 0,
  error       text        NOT NULL DEFAULT ''
);
CREATE INDEX feed_runs_feed ON feed_runs (feed, id DESC);

-- One row per address and lookup kind: when it was last tried and how it went.
CREATE TABLE enrich_attempts (
  address      inet        NOT NULL,
  kind         text        NOT NULL CHECK (kind IN ('rdap', 'ptr')),
  attempted_at timestamptz NOT NULL,
  error        text        NOT NULL DEFAULT '',
  PRIMARY KEY (address, kind)
);
