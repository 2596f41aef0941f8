-- The change feed: every write transaction that alters what an effective view
-- or a render reads (prefixes, assertions, sighting counts, geo networks)
-- records what it changed here, in the same transaction, with a sequence
-- number. muninn serve processes keep their in-memory index current from it:
-- NOTIFY on muninn_changes carries "change:<seq>", and a process that missed
-- notifications reads the rows after the last sequence it applied.
--
-- scope 'prefixes' lists the stored prefixes whose rows changed (added,
-- altered or deleted); 'all' says "reload everything" (bulk writes over more
-- prefixes than is worth listing); 'geo' says the geo networks were replaced.
CREATE SEQUENCE changes_seq;
CREATE TABLE changes (
  seq      bigint PRIMARY KEY,
  at       timestamptz NOT NULL DEFAULT now(),
  scope    text        NOT NULL CHECK (scope IN ('prefixes', 'all', 'geo')),
  prefixes cidr[]      NOT NULL DEFAULT '{}'
);
CREATE INDEX changes_at ON changes (at);

-- pruned_through is the highest sequence pruned away: a reader that applied
-- less than it cannot catch up from the table and reloads in full.
CREATE TABLE change_horizon (
  one            boolean PRIMARY KEY DEFAULT true CHECK (one),
  pruned_through bigint  NOT NULL DEFAULT 0
);
INSERT INTO change_horizon DEFAULT VALUES;

-- muninn_record_change records one change and announces it; it is the last
-- statement of every write transaction that calls it.
--
-- Commit order equals sequence order: a bigserial value taken early in a
-- transaction can become visible after a larger one taken by a concurrent
-- transaction that committed first, and a reader that advanced past the
-- larger one would never see the smaller. So the sequence is taken under a
-- transaction-level advisory lock, held until commit: the next writer waits
-- for it before taking its number, and by then the previous transaction is
-- visible (PostgreSQL releases a transaction's locks after it has become
-- visible to new snapshots). Only the tail of writes serialises (this
-- statement and the commit); the work before it runs concurrently. No
-- deadlock is possible: the lock holder waits for nothing but its commit.
--
-- Every 1,000th change prunes the rows older than 15 minutes (a reader
-- disconnected for longer reloads in full) and moves the horizon; the newest
-- row always stays, so the current sequence can be read from the table.
--
-- More than 100,000 prefixes are recorded as 'all': a reader reloads instead
-- of re-reading them one by one, and the row stays small.
CREATE FUNCTION muninn_record_change(p_scope text, p_prefixes cidr[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  s bigint;
BEGIN
  IF p_scope = 'prefixes' AND cardinality(p_prefixes) > 100000 THEN
    p_scope := 'all';
    p_prefixes := '{}';
  END IF;
  PERFORM pg_advisory_xact_lock(1836412518); -- "muNf": the change feed
  INSERT INTO changes (seq, scope, prefixes)
    VALUES (nextval('changes_seq'), p_scope, coalesce(p_prefixes, '{}')) RETURNING seq INTO s;
  PERFORM pg_notify('muninn_changes', 'change:' || s);
  IF s % 1000 = 0 THEN
    WITH gone AS (DELETE FROM changes WHERE at < now() - interval '15 minutes' AND seq < s RETURNING seq)
    UPDATE change_horizon SET pruned_through = greatest(pruned_through, (SELECT max(seq) FROM gone))
      WHERE EXISTS (SELECT 1 FROM gone);
  END IF;
  RETURN s;
END
$$;
