-- The cursor of a CrowdSec bouncer's decision durations. cs_seq: the
-- change-feed sequence of the facts the last pull computed durations from;
-- the next pull sends again, as new with their new durations, the decisions
-- on stored prefixes changed since (a source that re-asserts a ban with a
-- later expiry extends it). cs_rules: a fingerprint of the rule texts of the
-- rulesets the last pull served; whether a ban may outlive its assertions
-- depends on them, so when it changes every decision is sent again.
ALTER TABLE bouncers
  ADD COLUMN cs_seq   bigint NOT NULL DEFAULT 0,
  ADD COLUMN cs_rules text   NOT NULL DEFAULT '';
