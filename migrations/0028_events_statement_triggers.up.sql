-- The two triggers of events ran once per row (a PL/pgSQL call and a
-- one-row INSERT each): a detection batch storing 1,000 events spent most of
-- its time there. They now run once per statement over its new rows, with the
-- same effect: every new event is announced with its id, and every event not
-- of alerting's own kinds waits in alert_pending.
DROP TRIGGER events_notify ON events;
DROP TRIGGER events_alert_pending ON events;

CREATE OR REPLACE FUNCTION muninn_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('muninn_events', id::text) FROM new_events ORDER BY id;
  RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
  REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION muninn_events_notify();

CREATE OR REPLACE FUNCTION muninn_alert_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Alerting's own events (delivery failures) never feed alerting back.
  INSERT INTO alert_pending (event_id) SELECT id FROM new_events WHERE kind NOT LIKE 'alert.%' ORDER BY id;
  RETURN NULL;
END $$;
CREATE TRIGGER events_alert_pending AFTER INSERT ON events
  REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION muninn_alert_pending();
