DROP TABLE detection_offenders;
DROP TABLE detections;
DROP TABLE passive_dns;
DROP TABLE sensor_events;
