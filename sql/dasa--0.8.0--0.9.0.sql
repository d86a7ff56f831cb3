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

-- dasa.invocations keeps its columns' meaning while an invocation runs and
-- after: task_state reads 'claimed' while an executor runs it, started_at and
-- executor_pid are those of its last attempt once it has ended (written with
-- the attempt's outcome), and completed_at says when its task ended.
ALTER TABLE dasa.tasks ADD COLUMN started_at timestamptz, ADD COLUMN executor_pid integer;
CREATE OR REPLACE VIEW dasa.invocations AS
SELECT t.id,
       t.function,
       x.state,
       CASE WHEN r.pid IS NOT NULL AND t.state = 'pending' THEN 'claimed'::dasa.task_state
            ELSE t.state END AS task_state,
       t.attempt AS attempts,
       a.sqlstate AS last_sqlstate,
       a.message AS last_error,
       x.created_at,
       t.run_at AS next_run_at,
       coalesce(r.started_at, t.started_at) AS started_at,
       x.settled_at,
       coalesce(r.pid, t.executor_pid) AS executor_pid,
       p.owner,
       p.parent_id,
       p.root_id,
       t.replays,
       t.completed_at,
       t.rerun_of
FROM dasa.tasks t
JOIN dasa.promises p ON p.id = t.id
CROSS JOIN LATERAL dasa._project(p) x
LEFT JOIN LATERAL (
    SELECT sqlstate, message FROM dasa.attempts
    WHERE task_id = t.id ORDER BY attempt DESC LIMIT 1) a ON true
LEFT JOIN dasa.executors() r ON r.task_id = t.id
WHERE dasa._may_see(p.owner);

-- Failures, found by index: the promises that ended rejected, canceled or
-- timed out (few, next to the resolved ones).
CREATE INDEX promises_failed ON dasa.promises (settled_at)
    WHERE state IN ('rejected', 'rejected_canceled', 'rejected_timedout');
CREATE FUNCTION dasa.failures(
    function text DEFAULT NULL,
    since interval DEFAULT '1 day',
    "limit" integer DEFAULT 100)
RETURNS TABLE (id text, function text, state dasa.promise_state, settled_at timestamptz,
               attempts integer, sqlstate text, message text, error jsonb, root_id text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.id, t.function, p.state, p.settled_at, t.attempts, p.value->>'sqlstate', p.value->>'message',
           p.value, p.root_id
    FROM dasa.visible_promises p
    JOIN dasa.invocations t ON t.id = p.id
    WHERE p.state IN ('rejected', 'rejected_canceled', 'rejected_timedout')
      AND p.settled_at >= now() - since
      AND ($1 IS NULL OR t.function = $1)
    ORDER BY p.settled_at DESC
    LIMIT "limit"
$$;
COMMENT ON FUNCTION dasa.failures(text, interval, integer) IS
    'Invocations that ended rejected, canceled or timed out since a while ago (by index), newest first.';
REVOKE ALL ON FUNCTION dasa.failures(text, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.failures(text, interval, integer) TO dasa_user;
