-- dasa 0.2.0 -> 0.3.0: async/await inside functions (children, suspension and
-- replay, timers, cancellation down the tree).
-- Released upgrade script once shipped: never edit it; later changes go into the next one.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.3.0'" to load this file. \quit

-- Set when a suspended task waits on the promise: settling it must then
-- make the waiting tasks due, in the same transaction. Settling a promise
-- nobody awaits costs nothing extra.
ALTER TABLE dasa.promises ADD COLUMN awaited boolean NOT NULL DEFAULT false;

-- Children of an invocation (call trees, cancellation down the tree).
CREATE INDEX promises_parent ON dasa.promises (parent_id) WHERE parent_id IS NOT NULL;

-- A suspended task resumes when `blocked` more of the promises it waits on
-- have settled (1 for await_any).
ALTER TABLE dasa.tasks
    ADD COLUMN blocked integer NOT NULL DEFAULT 0,
    ADD COLUMN replays integer NOT NULL DEFAULT 0;

-- Callbacks: awaited promise -> suspended task (the Resonate model's callbacks).
CREATE TABLE dasa.callbacks (
    promise_id text COLLATE "C" NOT NULL,
    task_id    text COLLATE "C" NOT NULL,
    PRIMARY KEY (promise_id, task_id)
);
CREATE INDEX callbacks_task ON dasa.callbacks (task_id);
REVOKE ALL ON dasa.callbacks FROM PUBLIC;

CREATE FUNCTION dasa.current_invocation()
RETURNS text
AS 'MODULE_PATHNAME', 'dasa_current_invocation'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.sleep(duration interval)
RETURNS void
AS 'MODULE_PATHNAME', 'dasa_sleep'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.await_all(ids text[], timeout interval DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'dasa_await_all'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.await_any(ids text[], timeout interval DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'dasa_await_any'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

-- The tree of invocations and promises under a root, with what ran them.
CREATE FUNCTION dasa.call_tree(root text)
RETURNS TABLE (id text, parent_id text, depth integer, function text, state dasa.promise_state,
               task_state dasa.task_state, attempts integer, replays integer,
               created_at timestamptz, settled_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE tree AS (
        SELECT p.id, p.parent_id, 0 AS depth FROM dasa.promises p WHERE p.id = call_tree.root
        UNION ALL
        SELECT c.id, c.parent_id, tree.depth + 1
        FROM dasa.promises c JOIN tree ON c.parent_id = tree.id
    )
    SELECT tree.id, tree.parent_id, tree.depth, t.function, x.state, t.state,
           t.attempt, t.replays, x.created_at, x.settled_at
    FROM tree
    JOIN dasa.promises p ON p.id = tree.id
    CROSS JOIN LATERAL dasa._project(p) x
    LEFT JOIN dasa.tasks t ON t.id = tree.id
    ORDER BY tree.depth, tree.id
$$;

REVOKE ALL ON FUNCTION
    dasa.current_invocation(),
    dasa.sleep(interval),
    dasa.await_all(text[], interval),
    dasa.await_any(text[], interval),
    dasa.call_tree(text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    dasa.current_invocation(),
    dasa.sleep(interval),
    dasa.await_all(text[], interval),
    dasa.await_any(text[], interval),
    dasa.call_tree(text)
TO dasa_user;
