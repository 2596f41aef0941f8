DROP TABLE IF EXISTS alert_conditions;
DROP TABLE IF EXISTS alert_sent;
DROP TABLE IF EXISTS alert_groups;
DROP TRIGGER IF EXISTS events_alert_pending ON events;
DROP FUNCTION IF EXISTS muninn_alert_pending();
DROP TABLE IF EXISTS alert_pending;
DROP TABLE IF EXISTS alert_rules;
DROP TABLE IF EXISTS alert_channels;
