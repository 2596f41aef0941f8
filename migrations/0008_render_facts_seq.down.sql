ALTER TABLE renders DROP COLUMN facts_seq;
