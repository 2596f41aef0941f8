-- The change-feed sequence of the facts a render was computed from. A process
-- whose in-memory index lags behind the newest stored render's facts must not
-- store its older content as a newer version (bouncers would see a block come
-- and go); it waits for its index to catch up instead.
ALTER TABLE renders ADD COLUMN facts_seq bigint NOT NULL DEFAULT 0;
