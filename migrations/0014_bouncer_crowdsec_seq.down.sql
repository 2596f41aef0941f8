ALTER TABLE bouncers DROP COLUMN cs_seq, DROP COLUMN cs_rules;
