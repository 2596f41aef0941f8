DROP TABLE IF EXISTS alert_marks;
