-- Events: things that happened and that a person may want to be told about
-- (a detection fired, a honeypot was touched, a feed failed, a bouncer went
-- silent, the guard removed a prefix, an inside host talked to a bad
-- address, ...). Alert rules read them; the API and the UI list them; they
-- are pruned after a retention. subject_type says what subject names:
-- address, prefix, feed, bouncer, ruleset, host, detection, channel.
CREATE TABLE events (
  id           bigserial PRIMARY KEY,
  at           timestamptz NOT NULL,
  kind         text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9._-]{0,63}$'),
  subject_type text NOT NULL CHECK (subject_type ~ '^[a-z][a-z0-9_-]{0,31}$'),
  subject      text NOT NULL CHECK (length(subject) <= 1024),
  details      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_at ON events (at DESC, id DESC);
CREATE INDEX events_kind_at ON events (kind, at DESC, id DESC);
CREATE INDEX events_subject ON events (subject_type, subject, at DESC);

-- NOTIFY on muninn_events with the new id lets a process react at once
-- (alerting) instead of polling; a listener that missed some reads by id.
CREATE FUNCTION muninn_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('muninn_events', NEW.id::text);
  RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION muninn_events_notify();
