ALTER TABLE bouncers DROP COLUMN cs_seq;
