-- Suricata IP reputation categories (issue 18): the id each tag has in the
-- exported categories.txt, kept so a new tag never renumbers the others
-- (Suricata reads categories.txt only at start; a renumbered id would give
-- the running Suricata's reputation lines the wrong category). Suricata
-- takes ids 1 to 60. A row stays when its tag is deleted (the tag made again
-- gets its id back); such ids are given to new tags only when none is free.
CREATE TABLE suricata_categories (
  id          smallint PRIMARY KEY CHECK (id BETWEEN 1 AND 60),
  tag         text NOT NULL UNIQUE,
  assigned_at timestamptz NOT NULL DEFAULT now()
);
