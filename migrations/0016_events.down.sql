DROP TRIGGER IF EXISTS events_notify ON events;
DROP FUNCTION IF EXISTS muninn_events_notify();
DROP TABLE IF EXISTS events;
