DROP FUNCTION muninn_record_change(text, cidr[]);
DROP TABLE change_horizon;
DROP TABLE changes;
DROP SEQUENCE changes_seq;
