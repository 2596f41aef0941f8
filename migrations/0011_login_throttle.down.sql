DROP TABLE server_keys;
DROP TABLE login_throttle;
CREATE TABLE login_failures (
  username text        NOT NULL,
  ip       text        NOT NULL,
  at       timestamptz NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (username, ip, at);
