DROP TABLE crowdsec_steps;

ALTER TABLE bouncers
  DROP COLUMN cs_expand,
  DROP COLUMN cs_expand_v4,
  DROP COLUMN cs_expand_v6,
  DROP COLUMN cs_wide,
  DROP COLUMN cs_epoch,
  DROP COLUMN usage_metrics;

CREATE TABLE crowdsec_cursors (
  bouncer_id bigint      PRIMARY KEY REFERENCES bouncers (id) ON DELETE CASCADE,
  versions   jsonb       NOT NULL DEFAULT '{}',
  sent       jsonb       NOT NULL DEFAULT '{}',
  updated_at timestamptz NOT NULL DEFAULT now()
);
