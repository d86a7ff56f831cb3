-- dasa 0.1.0: durable promises.
-- Released install script: never edit it; later changes go into dasa--0.1.0--X.sql.

\echo Use "CREATE EXTENSION dasa" to load this file. \quit

-- The role a database owner grants to let an ordinary role use dasa.
-- Roles are cluster-wide, so it may already exist from another database.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'dasa_user') THEN
        CREATE ROLE dasa_user NOLOGIN;
    END IF;
END
$$;

CREATE TYPE dasa.promise_state AS ENUM (
    'pending',
    'resolved',
    'rejected',
    'rejected_canceled',
    'rejected_timedout'
);

CREATE TABLE dasa.promises (
    id          text COLLATE "C" PRIMARY KEY,
    state       dasa.promise_state NOT NULL DEFAULT 'pending',
    param       jsonb,
    value       jsonb,
    tags        jsonb NOT NULL DEFAULT '{}',
    timeout_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    settled_at  timestamptz,
    parent_id   text COLLATE "C",
    root_id     text COLLATE "C"
);
-- No CHECK constraints: a single-row INSERT prepares every check expression
-- anew, which costs more than the rest of the insert. The C functions are the
-- only writers and keep the invariants: settled_at IS NULL exactly while
-- pending, tags an object of strings.

COMMENT ON TABLE dasa.promises IS
    'Durable promises. Raw rows: a pending row past timeout_at is settled by the dasa worker shortly after; read through dasa.get_promise / dasa.search_promises to see the timeout applied at once.';

-- The timeout sweep reads only what has expired: cost follows the expired rows,
-- not the table. The predicate is settled_at IS NULL (the same rows as state =
-- 'pending') so that lookups by id that also test the state can never be
-- planned onto this index instead of the primary key.
CREATE INDEX promises_unsettled_timeout ON dasa.promises (timeout_at) WHERE settled_at IS NULL;
-- Tag containment search; untagged promises (the common case) stay out of the index.
CREATE INDEX promises_tags ON dasa.promises USING gin (tags jsonb_path_ops) WHERE tags <> '{}';

-- Promises ------------------------------------------------------------------

CREATE FUNCTION dasa.create_promise(
    id text,
    timeout interval,
    param jsonb DEFAULT NULL,
    tags jsonb DEFAULT '{}')
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_create_promise'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.get_promise(id text)
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_get_promise'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.resolve(id text, value jsonb DEFAULT NULL)
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_resolve'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.reject(id text, value jsonb DEFAULT NULL)
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_reject'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.cancel(id text, value jsonb DEFAULT NULL)
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_cancel'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.await(id text, timeout interval DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'dasa_await'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

-- A raw row as readers must see it: a pending row past its deadline reads as settled.
CREATE FUNCTION dasa._project(p dasa.promises)
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_project'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.search_promises(
    id text DEFAULT '*',
    state dasa.promise_state DEFAULT NULL,
    tags jsonb DEFAULT '{}',
    "limit" integer DEFAULT 100,
    after text DEFAULT NULL)
RETURNS SETOF dasa.promises
LANGUAGE plpgsql STABLE SECURITY DEFINER
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
    RETURN QUERY EXECUTE format($q$
        SELECT x.*
        FROM dasa.promises p
        CROSS JOIN LATERAL dasa._project(p) x
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

-- Tells the launcher, at commit, that this database now has dasa installed.
CREATE FUNCTION dasa._notify_launcher()
RETURNS void
AS 'MODULE_PATHNAME', 'dasa_notify_launcher'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

SELECT dasa._notify_launcher();

-- Privileges ----------------------------------------------------------------
-- Tables are written only through the functions above (SECURITY DEFINER).
-- Ordinary roles get dasa through membership in dasa_user.

REVOKE ALL ON ALL TABLES IN SCHEMA dasa FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dasa FROM PUBLIC;
GRANT USAGE ON SCHEMA dasa TO dasa_user;
GRANT USAGE ON TYPE dasa.promise_state TO dasa_user;
GRANT EXECUTE ON FUNCTION
    dasa.create_promise(text, interval, jsonb, jsonb),
    dasa.get_promise(text),
    dasa.resolve(text, jsonb),
    dasa.reject(text, jsonb),
    dasa.cancel(text, jsonb),
    dasa.await(text, interval),
    dasa.search_promises(text, dasa.promise_state, jsonb, integer, text)
TO dasa_user;
