-- dasa 0.9.0 -> 0.10.0: the tasks of limited functions queue apart.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.10.0'" to load this file. \quit

-- A task of a function registered with max_running is marked limited when
-- it is written, and claimed through an index of its own, a few at a time:
-- the claims of everything else no longer step over the backlog of a
-- function waiting for its turn (a limited function's tasks may pile up by
-- design). The mark stays as written: a task written before its function
-- got (or lost) a limit is claimed as it was written, and the limit is
-- checked when it runs either way.
ALTER TABLE dasa.tasks ADD COLUMN limited boolean NOT NULL DEFAULT false;
UPDATE dasa.tasks t SET limited = true
    FROM dasa.functions f
    WHERE f.name = t.function AND f.max_running IS NOT NULL AND t.state = 'pending' AND t.queue IS NULL;
CREATE INDEX tasks_limited_due ON dasa.tasks (run_at)
    WHERE state = 'pending' AND queue IS NULL AND limited;
DROP INDEX dasa.tasks_due;
CREATE INDEX tasks_due ON dasa.tasks (run_at)
    WHERE state = 'pending' AND queue IS NULL AND NOT limited;
DROP INDEX dasa.tasks_due_priority;
CREATE INDEX tasks_due_priority ON dasa.tasks (priority DESC, run_at)
    WHERE state = 'pending' AND queue IS NULL AND priority > 0 AND NOT limited;

-- dasa._stats reads the pending tasks through both indexes (as it read them
-- through tasks_due before): the same query, the first branch split in two.
CREATE OR REPLACE FUNCTION dasa._stats("window" interval, viewer regrole)
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
        WHERE t.state = 'pending' AND t.queue IS NULL AND NOT t.limited AND t.run_at > '-infinity'
          AND t.id NOT IN (SELECT task_id FROM running_here) AND dasa._may_see_as(p.owner, viewer)
        UNION ALL
        SELECT t.function, CASE WHEN t.run_at <= now() THEN 'due' ELSE 'scheduled' END, t.run_at
        FROM dasa.tasks t CROSS JOIN LATERAL (SELECT x.owner, x.state FROM dasa.promises x WHERE x.id = t.id OFFSET 0) p
        WHERE t.state = 'pending' AND t.queue IS NULL AND t.limited AND t.run_at > '-infinity'
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
