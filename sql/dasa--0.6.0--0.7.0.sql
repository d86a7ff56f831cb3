-- dasa 0.6.0 -> 0.7.0: a queue that history cannot slow.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.7.0'" to load this file. \quit

-- The plan of an executor's claim as it would run now, with the buffers it
-- reads. Claims read the queue index from a floor kept in shared memory, so
-- the entries finished tasks leave behind are not read again.
CREATE FUNCTION dasa._explain_claim(batch integer DEFAULT 100)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'dasa_explain_claim'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa._explain_claim(integer) FROM PUBLIC;

-- Vacuum the queue tables after 2% of their rows died, not 20%: settled
-- history stays in them, and the 20% of a table that keeps growing comes
-- ever later. Claims never read the dead entries (see above); vacuum keeps
-- the files and the partial indexes from growing with them.
ALTER TABLE dasa.tasks SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE dasa.promises SET (autovacuum_vacuum_scale_factor = 0.02);
