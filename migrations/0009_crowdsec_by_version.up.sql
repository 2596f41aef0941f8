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
