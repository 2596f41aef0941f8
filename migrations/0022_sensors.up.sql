-- Sensors (issue 15): raw log events, passive DNS, detection rules and
-- repeat offenders.

-- One row per parsed event: the line it came from, its kind and host. Kept
-- as long as other raw sightings (MUNINN_SIGHTING_RETENTION); detections
-- count these rows, so every serve process counts the same events.
CREATE TABLE sensor_events (
  addr   inet        NOT NULL,
  kind   text        NOT NULL,
  host   text        NOT NULL,
  format text        NOT NULL,
  at     timestamptz NOT NULL,
  line   text        NOT NULL
);
CREATE INDEX sensor_events_addr ON sensor_events (addr, kind, at);
CREATE INDEX sensor_events_at ON sensor_events USING brin (at);

-- Passive DNS: names an address was seen answering for.
CREATE TABLE passive_dns (
  addr       inet        NOT NULL,
  name       text        NOT NULL,
  client     inet,
  first_seen timestamptz NOT NULL,
  last_seen  timestamptz NOT NULL,
  seen       bigint      NOT NULL DEFAULT 1,
  PRIMARY KEY (addr, name)
);

-- Detection rules: threshold events of kinds from one address within win,
-- or any one event of instant_kinds, tag it with tag for ttl × n² (n:
-- firings since the last quiet period), at most max_ttl.
CREATE TABLE detections (
  name            text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,63}$'),
  kinds           text[]   NOT NULL,
  instant_kinds   text[]   NOT NULL DEFAULT '{}',
  threshold       integer  NOT NULL CHECK (threshold >= 1),
  win             interval NOT NULL,
  tag             text     NOT NULL,
  ttl             interval NOT NULL,
  max_ttl         interval NOT NULL,
  quiet           interval NOT NULL,
  include_private boolean  NOT NULL DEFAULT false,
  enabled         boolean  NOT NULL DEFAULT true
);
INSERT INTO detections (name, kinds, instant_kinds, threshold, win, tag, ttl, max_ttl, quiet) VALUES
  ('ssh-bruteforce', '{ssh-auth-failure,ssh-max-auth}', '{}', 5, '10 minutes', 'ssh-bruteforce', '5 minutes', '30 days', '7 days'),
  ('http-probing', '{http-400,http-401,http-403,http-404,http-405,http-444}', '{http-exploit-path}', 20, '1 minute', 'http-probing', '5 minutes', '30 days', '7 days'),
  ('honeypot', '{}', '{honeypot-connect,honeypot-login,honeypot-login-success,honeypot-command,honeypot-download,honeypot-event}', 1, '1 minute', 'honeypot', '1 hour', '30 days', '7 days');

-- Repeat offenders: how often a detection fired for an address, when last,
-- and until when its tag lives.
CREATE TABLE detection_offenders (
  detection  text        NOT NULL,
  addr       inet        NOT NULL,
  fires      integer     NOT NULL,
  last_fired timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (addr, detection)
);
