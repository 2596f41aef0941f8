-- Alerts: channels (one shoutrrr URL each, sealed with the alert key), rules
-- (event kind + filters -> channels, grouping, rate limit, quiet hours), the
-- queue of events not yet matched, open groups, sent messages (for the rate
-- limit) and the conditions the periodic checks have already reported.
CREATE TABLE alert_channels (
  id           bigserial PRIMARY KEY,
  name         text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
  service      text NOT NULL,
  url_sealed   bytea NOT NULL,
  url_redacted text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alert_rules (
  id              bigserial PRIMARY KEY,
  name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
  kind            text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9._-]{0,63}$'),
  filters         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(filters) = 'object'),
  -- channels names the channels a message goes to; empty means every channel.
  channels        text[] NOT NULL DEFAULT '{}',
  group_wait_ms   bigint NOT NULL DEFAULT 0 CHECK (group_wait_ms >= 0),
  group_threshold int NOT NULL DEFAULT 0 CHECK (group_threshold >= 0),
  -- rate_per_hour bounds the messages of the rule in any hour (0: no bound).
  rate_per_hour   int NOT NULL DEFAULT 0 CHECK (rate_per_hour >= 0),
  -- quiet hours hold messages from quiet_start to quiet_end (minutes after
  -- midnight in quiet_tz); equal bounds mean none.
  quiet_start     int NOT NULL DEFAULT 0 CHECK (quiet_start BETWEEN 0 AND 1439),
  quiet_end       int NOT NULL DEFAULT 0 CHECK (quiet_end BETWEEN 0 AND 1439),
  quiet_tz        text NOT NULL DEFAULT 'UTC',
  enabled         boolean NOT NULL DEFAULT true,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every stored event waits here until the alert matcher has read it; the
-- trigger fills it in the transaction that stores the event, so the matcher
-- neither misses an event committed late nor reads one twice.
CREATE TABLE alert_pending (
  event_id bigint PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE
);
CREATE FUNCTION muninn_alert_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Alerting's own events (delivery failures) never feed alerting back.
  IF NEW.kind NOT LIKE 'alert.%' THEN
    INSERT INTO alert_pending (event_id) VALUES (NEW.id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER events_alert_pending AFTER INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION muninn_alert_pending();

-- An open group: the events of one rule collected since first_at.
CREATE TABLE alert_groups (
  rule_id   bigint PRIMARY KEY REFERENCES alert_rules (id) ON DELETE CASCADE,
  first_at  timestamptz NOT NULL,
  event_ids bigint[] NOT NULL
);

-- One row per message sent (per rule, whatever its channels), for the rate limit.
CREATE TABLE alert_sent (
  id      bigserial PRIMARY KEY,
  rule_id bigint NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
  at      timestamptz NOT NULL
);
CREATE INDEX alert_sent_rule_at ON alert_sent (rule_id, at);

-- Conditions the periodic checks reported (bouncer silent, enrichment failing):
-- one event when a condition starts, none while it lasts.
CREATE TABLE alert_conditions (
  key   text PRIMARY KEY,
  since timestamptz NOT NULL
);

-- The default set: a bouncer went silent, a feed failed, the guard removed a
-- prefix from a block set; to every channel, at most 12 messages an hour.
INSERT INTO alert_rules (name, kind, group_wait_ms, rate_per_hour) VALUES
  ('bouncer-silent', 'bouncer.silent', 0, 12),
  ('feed-failed', 'feed.failed', 0, 12),
  ('guard-removal', 'guard.removed', 30000, 12);
