-- Failed logins are throttled per username, not per (username, address): a
-- proxy in front made every user share one address, and many addresses had
-- no limit at all. One row per username: the failures in a row, when the
-- next attempt may start, and when the row was last touched (rows older than
-- the window are pruned, so distinct guessed names do not pile up).
DROP TABLE login_failures;
CREATE TABLE login_throttle (
  username   text        PRIMARY KEY,
  failures   integer     NOT NULL,
  next_at    timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);

-- Keys the server derives secrets from that every process must share (the
-- HMAC key of login CSRF tokens).
CREATE TABLE server_keys (
  name text  PRIMARY KEY,
  key  bytea NOT NULL
);
