-- The change-feed sequence of the facts the CrowdSec stream's last pull
-- computed its decisions' durations from: the next pull sends again, as new
-- with their new durations, the decisions on stored prefixes changed since
-- (a source that re-asserts a ban with a later expiry extends it).
ALTER TABLE bouncers ADD COLUMN cs_seq bigint NOT NULL DEFAULT 0;
