-- Web UI: people who log in with a password, their sessions and failed logins.

CREATE TABLE users (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name          text        NOT NULL UNIQUE,
  role          text        NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
  -- argon2id in the PHC string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
  password_hash text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_login_at timestamptz
);

-- Only the SHA-256 of a session secret is stored: a database leak yields no
-- usable cookie. The CSRF token is per session and sent in every form.
CREATE TABLE sessions (
  hash       bytea       PRIMARY KEY,
  user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  csrf       text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  ip         text        NOT NULL DEFAULT '',
  user_agent text        NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Failed logins per (username, client address), counted over a window to
-- rate-limit password guessing across every muninn process.
CREATE TABLE login_failures (
  username text        NOT NULL,
  ip       text        NOT NULL,
  at       timestamptz NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (username, ip, at);

-- Every per-prefix read of assertions (GET /ips containing query, the UI's
-- pages, search projections) joins on prefix_id across all kinds; the two
-- partial unique indexes cannot serve that, so without this index each such
-- read scans the whole table (100 ms at 600k assertions, growing linearly).
CREATE INDEX assertions_prefix ON assertions (prefix_id);
