ALTER TABLE users DROP COLUMN disabled_at;
ALTER TABLE bouncers DROP COLUMN confirmed;
