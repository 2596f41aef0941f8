CREATE INDEX prefixes_prefix_gist ON prefixes USING gist (prefix inet_ops);
