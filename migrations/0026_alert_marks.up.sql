-- Alert marks: whether an address or prefix carries a tag or classification
-- in its effective view, as last reported by any serve process's index,
-- with the change feed sequence and snapshot instant of that report. A
-- report older than the stored one is ignored; a report that turns a mark
-- from absent to present stores one address.tag or address.classification
-- event in the same transaction, so several processes following the same
-- changes store one event per transition.
CREATE TABLE alert_marks (
  subject    text NOT NULL CHECK (length(subject) <= 64),
  mark       text NOT NULL CHECK (length(mark) <= 200),
  present    boolean NOT NULL,
  seq        bigint NOT NULL,
  at         timestamptz NOT NULL,
  PRIMARY KEY (subject, mark)
);
