DROP TABLE hostnames, rdap_networks, geo_networks, audit, tokens, tags, sightings, assertions, prefixes;
DROP FUNCTION muninn_severity(text);
