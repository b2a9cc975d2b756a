-- The round-trip floor: what any query costs.
SELECT 1;
