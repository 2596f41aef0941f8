DROP INDEX passive_dns_last_seen;
