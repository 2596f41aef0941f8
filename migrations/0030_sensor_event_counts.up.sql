-- Sensor events fold (issue 15): the events of one address, kind, host and
-- format within one second of one stored batch are one row with their count
-- n, the newest event's time and line. A scan or brute force sends many
-- lines a second from one address; one row each made the table's inserts
-- the endpoint's bottleneck. Detections add n.
ALTER TABLE sensor_events ADD COLUMN n integer NOT NULL DEFAULT 1 CHECK (n >= 1);
