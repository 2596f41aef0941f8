-- When each bouncer last confirmed (in a heartbeat) the version of a ruleset
-- that was current at the time: ruleset name -> timestamp. A bouncer's lag is
-- the time since then, so a dead bouncer's lag keeps growing.
ALTER TABLE bouncers ADD COLUMN confirmed jsonb NOT NULL DEFAULT '{}';

-- A disabled user cannot log in and has no live session; the row (and the
-- audit trail's references to it) stays until the user is deleted.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
