-- The CrowdSec stream computes a pull's delta from render versions (the
-- bouncer's applied versions are its cursor) and the render hub's decision
-- history, so the per-bouncer copy of every decision sent goes. Bouncers get
-- their CrowdSec settings (range expansion), the usage metrics CrowdSec
-- bouncers push, and the count of ranges too wide to expand.
DROP TABLE crowdsec_cursors;

ALTER TABLE bouncers
  ADD COLUMN cs_expand     text    NOT NULL DEFAULT 'scopes' CHECK (cs_expand IN ('off', 'scopes', 'always')),
  ADD COLUMN cs_expand_v4  integer NOT NULL DEFAULT 24 CHECK (cs_expand_v4 BETWEEN 0 AND 32),
  ADD COLUMN cs_expand_v6  integer NOT NULL DEFAULT 120 CHECK (cs_expand_v6 BETWEEN 0 AND 128),
  ADD COLUMN cs_wide       bigint  NOT NULL DEFAULT 0,
  ADD COLUMN cs_epoch      bigint  NOT NULL DEFAULT 0,
  ADD COLUMN usage_metrics jsonb   NOT NULL DEFAULT '[]';

-- The change of one ruleset's CrowdSec decision set from render version base
-- to version (binary-encoded decisions), written by the process that computed
-- it: another process, or this one after a restart, answers a bouncer whose
-- cursor it does not hold in memory by composing them.
CREATE TABLE crowdsec_steps (
  ruleset    text        NOT NULL,
  base       bigint      NOT NULL,
  version    bigint      NOT NULL,
  added      bytea       NOT NULL,
  deleted    bytea       NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (ruleset, base, version)
);
