-- dasa 0.8.0 -> 0.9.0: delayed starts.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.9.0'" to load this file. \quit

-- dasa.invoke(..., start_at, priority): the task is due from start_at on
-- (NULL: at once), the invocation's timeout counting from then; among due
-- tasks, those with a higher priority (above the default 0) run first,
-- claimed through an index of their own (the others' claim is unchanged).
ALTER TABLE dasa.tasks ADD COLUMN priority smallint NOT NULL DEFAULT 0;
CREATE INDEX tasks_due_priority ON dasa.tasks (priority DESC, run_at)
    WHERE state = 'pending' AND queue IS NULL AND priority > 0;
DROP FUNCTION dasa.invoke(text, jsonb, text, interval);
CREATE FUNCTION dasa.invoke(
    name text,
    args jsonb DEFAULT '{}',
    id text DEFAULT NULL,
    timeout interval DEFAULT NULL,
    start_at timestamptz DEFAULT NULL,
    priority integer DEFAULT 0)
RETURNS text
AS 'MODULE_PATHNAME', 'dasa_invoke'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION dasa.invoke(text, jsonb, text, interval, timestamptz, integer) IS
    'Invoke a registered function: its id at once; it runs once this transaction commits (from start_at on, if given; before lower priorities).';
REVOKE ALL ON FUNCTION dasa.invoke(text, jsonb, text, interval, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.invoke(text, jsonb, text, interval, timestamptz, integer) TO dasa_user;

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
-- max_running: at most so many invocations of the function run at once,
-- across all executors of the database (NULL: no limit).
ALTER TABLE dasa.functions ADD COLUMN max_running integer
    CHECK (max_running BETWEEN 1 AND 10000);
DROP FUNCTION dasa.register(text, regprocedure, integer, interval, interval, double precision, interval);
CREATE FUNCTION dasa.register(
    name text,
    fn regprocedure,
    max_attempts integer DEFAULT 3,
    initial_backoff interval DEFAULT '1 second',
    max_backoff interval DEFAULT '1 minute',
    jitter double precision DEFAULT 0.1,
    timeout interval DEFAULT '7 days',
    attempt_timeout interval DEFAULT '10 minutes',
    max_running integer DEFAULT NULL)
RETURNS dasa.functions
AS 'MODULE_PATHNAME', 'dasa_register'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa.register(text, regprocedure, integer, interval, interval, double precision, interval, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.register(text, regprocedure, integer, interval, interval, double precision, interval, interval, integer) TO dasa_user;

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

-- dasa.stats: per function, what is waiting, running and suspended now, and
-- what ended over a recent window (counts, failures, run time and wait from
-- due to start, p50 and p99), for a monitoring scraper. Each part is read
-- through an index (the queues, the suspended tasks, the tasks completed
-- lately, the attempts failed lately), never the whole history. A role sees
-- the invocations it may see (dasa._may_see), as everywhere.
CREATE INDEX tasks_suspended ON dasa.tasks (function) WHERE state = 'suspended' AND function > '';
CREATE INDEX tasks_completed ON dasa.tasks (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX attempts_failed_at ON dasa.attempts (failed_at);

-- May viewer see what owner made? (dasa._may_see, for a role named rather than the current one.)
CREATE FUNCTION dasa._may_see_as(owner regrole, viewer regrole)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT owner = viewer OR pg_has_role(viewer, owner, 'USAGE')
        OR pg_has_role(viewer, 'dasa_admin', 'USAGE')
        OR coalesce((SELECT rolsuper FROM pg_roles WHERE oid = viewer), false)
$$;
REVOKE ALL ON FUNCTION dasa._may_see_as(regrole, regrole) FROM PUBLIC;

-- The statistics as viewer sees them. It reads the tables as their owner,
-- so it answers only for a role the session's login role is a member of
-- (what SET ROLE could reach): dasa.stats passes current_user.
CREATE FUNCTION dasa._stats("window" interval, viewer regrole)
RETURNS TABLE (function text, due bigint, scheduled bigint, running bigint, suspended bigint,
               oldest_due_age interval, resolved bigint, failed bigint, failed_attempts bigint,
               run_p50_ms double precision, run_p99_ms double precision,
               wait_p50_ms double precision, wait_p99_ms double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    WITH allowed AS (SELECT pg_has_role(session_user, viewer, 'MEMBER') AS ok),
    running_here AS (
        SELECT r.task_id, r.function FROM dasa.executors() r
        CROSS JOIN LATERAL (SELECT x.owner FROM dasa.promises x WHERE x.id = r.task_id OFFSET 0) p
        WHERE r.task_id IS NOT NULL AND dasa._may_see_as(p.owner, viewer)),
    live AS (
        SELECT t.function, CASE WHEN t.run_at <= now() THEN 'due' ELSE 'scheduled' END AS what, t.run_at
        FROM dasa.tasks t CROSS JOIN LATERAL (SELECT x.owner, x.state FROM dasa.promises x WHERE x.id = t.id OFFSET 0) p
        WHERE t.state = 'pending' AND t.queue IS NULL AND t.run_at > '-infinity'
          AND t.id NOT IN (SELECT task_id FROM running_here) AND dasa._may_see_as(p.owner, viewer)
        UNION ALL
        SELECT t.function, CASE WHEN t.run_at <= now() THEN 'due' ELSE 'scheduled' END, t.run_at
        FROM dasa.tasks t CROSS JOIN LATERAL (SELECT x.owner, x.state FROM dasa.promises x WHERE x.id = t.id OFFSET 0) p
        WHERE t.state = 'pending' AND t.queue IS NOT NULL AND t.queue > '' AND dasa._may_see_as(p.owner, viewer)
        UNION ALL
        SELECT t.function, 'suspended', NULL
        FROM dasa.tasks t CROSS JOIN LATERAL (SELECT x.owner, x.state FROM dasa.promises x WHERE x.id = t.id OFFSET 0) p
        WHERE t.state = 'suspended' AND t.function > '' AND dasa._may_see_as(p.owner, viewer)
        UNION ALL
        SELECT t.function, 'running', NULL
        FROM dasa.tasks t CROSS JOIN LATERAL (SELECT x.owner, x.state FROM dasa.promises x WHERE x.id = t.id OFFSET 0) p
        WHERE t.state = 'claimed' AND t.worker > '' AND dasa._may_see_as(p.owner, viewer)
        UNION ALL
        SELECT r.function, 'running', NULL FROM running_here r),
    now_by_function AS (
        SELECT l.function,
               count(*) FILTER (WHERE what = 'due') AS due,
               count(*) FILTER (WHERE what = 'scheduled') AS scheduled,
               count(*) FILTER (WHERE what = 'running') AS running,
               count(*) FILTER (WHERE what = 'suspended') AS suspended,
               now() - min(run_at) FILTER (WHERE what = 'due') AS oldest_due_age
        FROM live l GROUP BY l.function),
    ended AS (
        SELECT t.function, p.state = 'resolved' AS resolved,
               extract(epoch FROM t.completed_at - t.started_at) * 1000 AS run_ms,
               extract(epoch FROM t.started_at - t.run_at) * 1000 AS wait_ms
        FROM dasa.tasks t CROSS JOIN LATERAL (SELECT x.owner, x.state FROM dasa.promises x WHERE x.id = t.id OFFSET 0) p
        WHERE t.completed_at >= now() - "window" AND dasa._may_see_as(p.owner, viewer)),
    ended_by_function AS (
        SELECT e.function, count(*) FILTER (WHERE resolved) AS resolved,
               count(*) FILTER (WHERE NOT resolved) AS failed,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY run_ms) AS run_p50_ms,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY run_ms) AS run_p99_ms,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_ms) AS wait_p50_ms,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY wait_ms) AS wait_p99_ms
        FROM ended e GROUP BY e.function),
    failed_attempts AS (
        SELECT t.function, count(*) AS n
        FROM dasa.attempts a CROSS JOIN LATERAL (SELECT x.function FROM dasa.tasks x WHERE x.id = a.task_id OFFSET 0) t
        WHERE a.failed_at >= now() - "window" AND dasa._may_see_as(a.owner, viewer)
        GROUP BY t.function)
    SELECT function, coalesce(n.due, 0), coalesce(n.scheduled, 0), coalesce(n.running, 0),
           coalesce(n.suspended, 0), n.oldest_due_age, coalesce(e.resolved, 0), coalesce(e.failed, 0),
           coalesce(a.n, 0), e.run_p50_ms, e.run_p99_ms, e.wait_p50_ms, e.wait_p99_ms
    FROM now_by_function n
    FULL JOIN ended_by_function e USING (function)
    FULL JOIN failed_attempts a USING (function)
    WHERE (SELECT ok FROM allowed)
    ORDER BY 1
$$;
REVOKE ALL ON FUNCTION dasa._stats(interval, regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa._stats(interval, regrole) TO dasa_user;

CREATE FUNCTION dasa.stats("window" interval DEFAULT '5 minutes')
RETURNS TABLE (function text, due bigint, scheduled bigint, running bigint, suspended bigint,
               oldest_due_age interval, resolved bigint, failed bigint, failed_attempts bigint,
               run_p50_ms double precision, run_p99_ms double precision,
               wait_p50_ms double precision, wait_p99_ms double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM dasa._stats("window", current_user::regrole) $$;
COMMENT ON FUNCTION dasa.stats(interval) IS
    'Per function: due, scheduled, running and suspended invocations now, the oldest due one''s age, and over the window: resolved, failed, failed attempts, run time and wait (due to start) p50/p99 in ms.';
REVOKE ALL ON FUNCTION dasa.stats(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.stats(interval) TO dasa_user;
