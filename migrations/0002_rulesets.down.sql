DROP TABLE crowdsec_cursors;
DROP TABLE bouncers;
DROP TABLE guard_entries;
DROP TABLE lists;
DROP TABLE renders;
DROP TABLE rulesets;
