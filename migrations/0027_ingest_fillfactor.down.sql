ALTER TABLE prefixes RESET (fillfactor);
ALTER TABLE assertions RESET (fillfactor);
