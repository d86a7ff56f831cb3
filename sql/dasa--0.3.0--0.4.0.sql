-- dasa 0.3.0 -> 0.4.0: owners. Every promise and invocation belongs to the
-- role that created it; an invocation runs as that role; nobody else sees
-- it (except roles with that role's privileges, dasa_admin and superusers).
-- Released upgrade script once shipped: never edit it; later changes go into the next one.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.4.0'" to load this file. \quit

-- Members of dasa_admin see and settle every promise in the database.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'dasa_admin') THEN
        CREATE ROLE dasa_admin NOLOGIN;
    END IF;
END
$$;

-- The role that created the promise (for an invocation: the role it runs as).
ALTER TABLE dasa.promises ADD COLUMN owner regrole;

-- A registration binds a name to a procedure and a retry policy; its owner
-- is the only role (with superusers) that may change it. It no longer says
-- whom the procedure runs as.
ALTER TABLE dasa.functions RENAME COLUMN run_as TO owner;

-- Existing invocations go on running as the role they would have run as
-- before (the registering role); promises under them belong to their root's
-- owner; other promises to the extension's owner (visible to dasa_admin).
UPDATE dasa.promises p SET owner = f.owner
FROM dasa.tasks t JOIN dasa.functions f ON f.name = t.function
WHERE t.id = p.id;
UPDATE dasa.promises p SET owner = r.owner
FROM dasa.promises r
WHERE p.owner IS NULL AND r.id = p.root_id AND r.owner IS NOT NULL;
UPDATE dasa.promises SET owner = (SELECT relowner FROM pg_catalog.pg_class
                                  WHERE oid = 'dasa.promises'::pg_catalog.regclass)
WHERE owner IS NULL;
ALTER TABLE dasa.promises ALTER COLUMN owner SET NOT NULL;

-- Attempts that died with their server process (counted when an executor
-- starts again); such a task then runs alone in a batch of its own.
ALTER TABLE dasa.tasks ADD COLUMN crashes integer NOT NULL DEFAULT 0;

-- Failed attempts carry their invocation's owner, who may read them.
ALTER TABLE dasa.attempts ADD COLUMN owner regrole;
UPDATE dasa.attempts a SET owner = p.owner FROM dasa.promises p WHERE p.id = a.task_id;

-- May the current role see promises of this owner? (Its own, those of roles
-- whose privileges it has, or all of them as dasa_admin or a superuser.)
CREATE FUNCTION dasa._may_see(owner regrole)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dasa_may_see'
LANGUAGE C STABLE STRICT
SET search_path = pg_catalog, pg_temp;

ALTER TABLE dasa.attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY attempts_of_visible_invocations ON dasa.attempts
    FOR SELECT USING (dasa._may_see(owner));

-- The promises the current role may see, raw (the timeout rule not applied).
CREATE VIEW dasa.visible_promises AS
SELECT p.* FROM dasa.promises p WHERE dasa._may_see(p.owner);

-- The calling role's identity matters now: these functions check it and
-- switch to the extension's owner in C where they write.
ALTER FUNCTION dasa.create_promise(text, interval, jsonb, jsonb) SECURITY INVOKER;
ALTER FUNCTION dasa.get_promise(text) SECURITY INVOKER;
ALTER FUNCTION dasa.resolve(text, jsonb) SECURITY INVOKER;
ALTER FUNCTION dasa.reject(text, jsonb) SECURITY INVOKER;
ALTER FUNCTION dasa.cancel(text, jsonb) SECURITY INVOKER;
ALTER FUNCTION dasa.await(text, interval) SECURITY INVOKER;
ALTER FUNCTION dasa.sleep(interval) SECURITY INVOKER;
ALTER FUNCTION dasa.await_all(text[], interval) SECURITY INVOKER;
ALTER FUNCTION dasa.await_any(text[], interval) SECURITY INVOKER;

CREATE OR REPLACE FUNCTION dasa.search_promises(
    id text DEFAULT '*',
    state dasa.promise_state DEFAULT NULL,
    tags jsonb DEFAULT '{}',
    "limit" integer DEFAULT 100,
    after text DEFAULT NULL)
RETURNS SETOF dasa.promises
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    like_pattern text;
BEGIN
    IF search_promises.id IS NULL OR search_promises.id = '' THEN
        RAISE EXCEPTION 'id pattern must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''*'' to match every id.';
    END IF;
    IF search_promises."limit" IS NULL OR search_promises."limit" NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 1000'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The limit given was %s.', coalesce(search_promises."limit"::text, 'NULL')),
                  HINT = 'Page through larger results with the after parameter.';
    END IF;
    IF search_promises.tags IS NOT NULL AND jsonb_typeof(search_promises.tags) <> 'object' THEN
        RAISE EXCEPTION 'tags must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The tags given were %s.', search_promises.tags);
    END IF;

    -- '*' is the wildcard; LIKE's own metacharacters match literally.
    like_pattern := replace(replace(replace(replace(search_promises.id,
                        '\', '\\'), '%', '\%'), '_', '\_'), '*', '%');

    -- The pattern is inlined as a literal so the planner can turn its prefix
    -- into a range on the primary key; everything else stays a parameter.
    -- Only the promises the caller may see are searched.
    RETURN QUERY EXECUTE format($q$
        SELECT x.*
        FROM dasa.visible_promises p
        CROSS JOIN LATERAL dasa._project(ROW(p.*)::dasa.promises) x
        WHERE p.id LIKE %L
          AND ($1 IS NULL OR p.id > $1)
          AND ($2 IS NULL OR p.state = $2 OR (p.state = 'pending' AND p.timeout_at <= clock_timestamp()))
          AND ($2 IS NULL OR x.state = $2)
          AND ($3 = '{}' OR (p.tags <> '{}' AND p.tags @> $3))
        ORDER BY p.id
        LIMIT $4 $q$, like_pattern)
    USING search_promises.after, search_promises.state,
          coalesce(search_promises.tags, '{}'::jsonb), search_promises."limit";
END
$$;

-- Invocations the current role may see; parent, root, owner and replays added.
CREATE OR REPLACE VIEW dasa.invocations AS
SELECT t.id,
       t.function,
       x.state,
       t.state AS task_state,
       t.attempt AS attempts,
       a.sqlstate AS last_sqlstate,
       a.message AS last_error,
       x.created_at,
       t.run_at AS next_run_at,
       r.started_at,
       x.settled_at,
       r.pid AS executor_pid,
       p.owner,
       p.parent_id,
       p.root_id,
       t.replays
FROM dasa.tasks t
JOIN dasa.promises p ON p.id = t.id
CROSS JOIN LATERAL dasa._project(p) x
LEFT JOIN LATERAL (
    SELECT sqlstate, message FROM dasa.attempts
    WHERE task_id = t.id ORDER BY attempt DESC LIMIT 1) a ON true
LEFT JOIN dasa.executors() r ON r.task_id = t.id
WHERE dasa._may_see(p.owner);

-- The tree under a root, as far as the current role may see it.
CREATE OR REPLACE FUNCTION dasa.call_tree(root text)
RETURNS TABLE (id text, parent_id text, depth integer, function text, state dasa.promise_state,
               task_state dasa.task_state, attempts integer, replays integer,
               created_at timestamptz, settled_at timestamptz)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE tree AS (
        SELECT p.id, p.parent_id, 0 AS depth FROM dasa.visible_promises p WHERE p.id = call_tree.root
        UNION ALL
        SELECT c.id, c.parent_id, tree.depth + 1
        FROM dasa.visible_promises c JOIN tree ON c.parent_id = tree.id
    )
    SELECT tree.id, tree.parent_id, tree.depth, i.function, x.state, i.task_state,
           i.attempts, i.replays, x.created_at, x.settled_at
    FROM tree
    JOIN dasa.visible_promises p ON p.id = tree.id
    CROSS JOIN LATERAL dasa._project(ROW(p.*)::dasa.promises) x
    LEFT JOIN dasa.invocations i ON i.id = tree.id
    ORDER BY tree.depth, tree.id
$$;

REVOKE ALL ON FUNCTION dasa._may_see(regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa._may_see(regrole) TO dasa_user;
REVOKE ALL ON dasa.visible_promises FROM PUBLIC;
GRANT SELECT ON dasa.visible_promises, dasa.attempts TO dasa_user;
GRANT dasa_user TO dasa_admin;
