-- Baseline table: the same columns as dasa.promises, primary key only.
DROP TABLE IF EXISTS bench_plain;
CREATE TABLE bench_plain (LIKE dasa.promises INCLUDING DEFAULTS);
ALTER TABLE bench_plain ADD PRIMARY KEY (id);
-- dasa fills in the creating role; the baseline gets the same 4 bytes as a default.
ALTER TABLE bench_plain ALTER COLUMN owner TYPE oid, ALTER COLUMN owner SET DEFAULT 10;
