-- An 'enrich' change becomes 'all': a reader reloads everything.
UPDATE changes SET scope = 'all', prefixes = '{}' WHERE scope = 'enrich';
ALTER TABLE changes DROP CONSTRAINT changes_scope_check;
ALTER TABLE changes ADD CONSTRAINT changes_scope_check CHECK (scope IN ('prefixes', 'all', 'geo'));
