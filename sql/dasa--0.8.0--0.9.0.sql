-- dasa 0.8.0 -> 0.9.0: delayed starts.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.9.0'" to load this file. \quit

-- dasa.invoke(..., start_at): the task is due from start_at on (NULL: at
-- once), and the invocation's timeout counts from then.
DROP FUNCTION dasa.invoke(text, jsonb, text, interval);
CREATE FUNCTION dasa.invoke(
    name text,
    args jsonb DEFAULT '{}',
    id text DEFAULT NULL,
    timeout interval DEFAULT NULL,
    start_at timestamptz DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'dasa_invoke'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION dasa.invoke(text, jsonb, text, interval, timestamptz) IS
    'Invoke a registered function: its id at once; it runs once this transaction commits (from start_at on, if given).';
REVOKE ALL ON FUNCTION dasa.invoke(text, jsonb, text, interval, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.invoke(text, jsonb, text, interval, timestamptz) TO dasa_user;

-- Re-running failed work: dasa.rerun(id) invokes the function of a rejected,
-- canceled or timed-out invocation again, under a new id, with the same
-- arguments; its children that succeeded in the run it repeats are found
-- again (their recorded values), not run again. tasks.rerun_of says which
-- invocation a task repeats (a re-run, or a failed child of one re-run too).
ALTER TABLE dasa.tasks ADD COLUMN rerun_of text COLLATE "C";

CREATE FUNCTION dasa.rerun(
    id text,
    new_id text DEFAULT NULL,
    timeout interval DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'dasa_rerun'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION dasa.rerun(text, text, interval) IS
    'Run a rejected, canceled or timed-out invocation again under a new id (default <id>:rerun-<n>), reusing the results of its children that succeeded.';
REVOKE ALL ON FUNCTION dasa.rerun(text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.rerun(text, text, interval) TO dasa_user;

-- Two timeouts: attempt_timeout cuts one attempt (which is then retried by
-- the function's policy); timeout is the invocation's deadline (it ends the
-- invocation and everything under it). They used to be one: a registration
-- made before keeps that behaviour (attempt_timeout = timeout).
ALTER TABLE dasa.functions ADD COLUMN attempt_timeout interval;
UPDATE dasa.functions SET attempt_timeout = timeout;
ALTER TABLE dasa.functions ALTER COLUMN attempt_timeout SET NOT NULL,
    ALTER COLUMN attempt_timeout SET DEFAULT '10 minutes';
DROP FUNCTION dasa.register(text, regprocedure, integer, interval, interval, double precision, interval);
CREATE FUNCTION dasa.register(
    name text,
    fn regprocedure,
    max_attempts integer DEFAULT 3,
    initial_backoff interval DEFAULT '1 second',
    max_backoff interval DEFAULT '1 minute',
    jitter double precision DEFAULT 0.1,
    timeout interval DEFAULT '7 days',
    attempt_timeout interval DEFAULT '10 minutes')
RETURNS dasa.functions
AS 'MODULE_PATHNAME', 'dasa_register'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa.register(text, regprocedure, integer, interval, interval, double precision, interval, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.register(text, regprocedure, integer, interval, interval, double precision, interval, interval) TO dasa_user;
