DROP TRIGGER events_notify ON events;
DROP TRIGGER events_alert_pending ON events;

CREATE OR REPLACE FUNCTION muninn_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('muninn_events', NEW.id::text);
  RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION muninn_events_notify();

CREATE OR REPLACE FUNCTION muninn_alert_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.kind NOT LIKE 'alert.%' THEN
    INSERT INTO alert_pending (event_id) VALUES (NEW.id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER events_alert_pending AFTER INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION muninn_alert_pending();
