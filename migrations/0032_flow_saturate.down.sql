DROP FUNCTION IF EXISTS flow_sat(numeric);
