ALTER TABLE bouncers DROP COLUMN confirmed;
