-- flow_sat clamps a flow count (bytes, packets, flows: a sum or a sum of
-- two bigints, as numeric) to what a bigint holds. The flow tables add
-- counts from exporters, whose fields are 32 or 64 bits wide and multiplied
-- by sampling rates: a count that reaches the limit stays there instead of
-- failing the whole write ("bigint out of range") and losing every other
-- record of the batch. Counts are never negative.
CREATE FUNCTION flow_sat(n numeric) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT least(greatest(n, 0), 9223372036854775807)::bigint $$;
