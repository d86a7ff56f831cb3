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

-- A promise due at a given time (the Resonate protocol's timeoutAt): as
-- dasa.create_promise, the deadline a time instead of a length; one already
-- past is created at its deadline and reads as timed out (or resolved, for
-- a timer) at once.
CREATE FUNCTION dasa._create_promise_at(id text, timeout_at timestamptz, param jsonb DEFAULT NULL,
                                        tags jsonb DEFAULT '{}')
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_create_promise_at'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa._create_promise_at(text, timestamptz, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa._create_promise_at(text, timestamptz, jsonb, jsonb) TO dasa_user;

-- The Resonate protocol (in progress: its promise kinds). Resonate promises
-- are dasa's promises: the same rows, the same owners and rules.
CREATE SCHEMA resonate;
COMMENT ON SCHEMA resonate IS 'The Resonate protocol over dasa''s promises (so far: promise.get, promise.create, promise.settle, promise.register_listener).';
GRANT USAGE ON SCHEMA resonate TO dasa_user;

-- A time as the protocol writes it: milliseconds since the Unix epoch.
CREATE FUNCTION resonate._ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT round(extract(epoch FROM t) * 1000)::bigint $$;

-- A promise as the protocol's record: optional fields left out, not null.
CREATE FUNCTION resonate._record(p dasa.promises) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'state', p.state::text, 'param', coalesce(p.param, '{}'),
        'value', CASE WHEN p.state <> 'pending' THEN coalesce(p.value, '{}') ELSE '{}' END,
        'tags', p.tags, 'timeoutAt', resonate._ms(p.timeout_at), 'createdAt', resonate._ms(p.created_at))
        || CASE WHEN p.settled_at IS NULL THEN '{}'
                ELSE jsonb_build_object('settledAt', resonate._ms(p.settled_at)) END
$$;

-- The response to req: its kind, its corrId and version echoed, status, data.
CREATE FUNCTION resonate._reply(req jsonb, status integer, data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('kind', req->'kind',
                              'head', jsonb_build_object('corrId', req->'head'->'corrId', 'status', status,
                                                         'version', req->'head'->'version'),
                              'data', data)
$$;

CREATE FUNCTION resonate._error(req jsonb, status integer, message text) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT resonate._reply(req, status, to_jsonb(message)) $$;

-- The promise id as the caller may see it, or NULL.
CREATE FUNCTION resonate._visible(id text) RETURNS dasa.promises
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN dasa.get_promise(id);
EXCEPTION WHEN no_data_found THEN
    RETURN NULL;
END $$;

CREATE FUNCTION resonate._promise_create(req jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
BEGIN
    IF jsonb_typeof(d->'id') IS DISTINCT FROM 'string' OR jsonb_typeof(d->'timeoutAt') IS DISTINCT FROM 'number'
       OR jsonb_typeof(coalesce(d->'param', '{}')) <> 'object' OR jsonb_typeof(coalesce(d->'tags', '{}')) <> 'object' THEN
        RETURN resonate._error(req, 400, 'promise.create needs id (string), timeoutAt (number), param and tags (objects)');
    END IF;
    RETURN resonate._reply(req, 200, jsonb_build_object('promise', resonate._record(
        dasa._create_promise_at(d->>'id', to_timestamp((d->>'timeoutAt')::numeric / 1000),
                                coalesce(d->'param', '{}'), coalesce(d->'tags', '{}')))));
END $$;

CREATE FUNCTION resonate._promise_settle(req jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    id text := d->>'id';
    v jsonb := coalesce(d->'value', '{}');
    p dasa.promises;
BEGIN
    IF jsonb_typeof(d->'id') IS DISTINCT FROM 'string'
       OR d->>'state' IS NULL OR d->>'state' NOT IN ('resolved', 'rejected', 'rejected_canceled') THEN
        RETURN resonate._error(req, 400, 'promise.settle needs id (string) and state (resolved, rejected or rejected_canceled)');
    END IF;
    IF resonate._visible(id) IS NULL THEN
        RETURN resonate._error(req, 404, 'Promise not found');
    END IF;
    p := CASE d->>'state' WHEN 'resolved' THEN dasa.resolve(id, v)
                          WHEN 'rejected' THEN dasa.reject(id, v)
                          ELSE dasa.cancel(id, v) END;
    RETURN resonate._reply(req, 200, jsonb_build_object('promise', resonate._record(p)));
END $$;

-- One request of the protocol in, its response out (see docs/resonate-protocol.md).
CREATE FUNCTION resonate.resonate_rpc(req jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p dasa.promises;
BEGIN
    IF jsonb_typeof(req) IS DISTINCT FROM 'object' OR jsonb_typeof(req->'kind') IS DISTINCT FROM 'string'
       OR jsonb_typeof(req->'data') IS DISTINCT FROM 'object' THEN
        RETURN resonate._error(req, 400, 'A request is an object with a kind (string) and data (object)');
    END IF;
    CASE req->>'kind'
    WHEN 'promise.get' THEN
        IF jsonb_typeof(req->'data'->'id') IS DISTINCT FROM 'string' THEN
            RETURN resonate._error(req, 400, 'promise.get needs id (string)');
        END IF;
        p := resonate._visible(req->'data'->>'id');
        IF p IS NULL THEN
            RETURN resonate._error(req, 404, 'Promise not found');
        END IF;
        RETURN resonate._reply(req, 200, jsonb_build_object('promise', resonate._record(p)));
    WHEN 'promise.create' THEN
        RETURN resonate._promise_create(req);
    WHEN 'promise.settle' THEN
        RETURN resonate._promise_settle(req);
    WHEN 'promise.register_listener' THEN
        RETURN resonate._promise_register_listener(req);
    WHEN 'promise.search', 'task.search', 'schedule.search' THEN
        RETURN resonate._error(req, 501, 'Not implemented');
    ELSE
        RETURN resonate._error(req, 400, format('Unknown request kind: %s', req->>'kind'));
    END CASE;
END $$;

-- The outbox: messages for Resonate processes, by address, taken by
-- dequeue_unblock (and dequeue_execute, to come) with SKIP LOCKED; each
-- belongs to the owner of its promise, and only roles that may see that
-- owner's work take it.
CREATE TABLE resonate.outbox (
    id      bigserial PRIMARY KEY,
    address text NOT NULL,
    kind    text NOT NULL CHECK (kind IN ('execute', 'unblock')),
    task_id text COLLATE "C",
    version integer,
    promise jsonb,
    owner   regrole NOT NULL
);
CREATE INDEX outbox_address ON resonate.outbox (address, kind, id);
REVOKE ALL ON resonate.outbox FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('resonate.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('resonate.outbox_id_seq', '');

-- A Resonate listener is a dasa listener with an address: the settling
-- commit puts an unblock message for it in the outbox (core/listeners.c).
ALTER TABLE dasa.listeners ADD COLUMN address text;

CREATE FUNCTION dasa._listen_at(id text, address text, channel text)
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_listen_at'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa._listen_at(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa._listen_at(text, text, text) TO dasa_user;

-- The channel to LISTEN on for an address (poll://any@group, poll://uni@group/pid).
CREATE FUNCTION resonate.outbox_channel(address text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'resonate_' || md5(address) $$;

CREATE FUNCTION resonate._promise_register_listener(req jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    p dasa.promises;
BEGIN
    IF jsonb_typeof(d->'awaited') IS DISTINCT FROM 'string' OR jsonb_typeof(d->'address') IS DISTINCT FROM 'string' THEN
        RETURN resonate._error(req, 400, 'promise.register_listener needs awaited and address (strings)');
    END IF;
    p := resonate._visible(d->>'awaited');
    IF p IS NULL THEN
        RETURN resonate._error(req, 404, 'Promise not found');
    END IF;
    -- only a promise somebody outside the awaiting process settles can be listened to
    IF NOT coalesce(p.tags->>'resonate:scope' = 'global' OR p.tags->>'resonate:external' = 'true'
                    OR p.tags ? 'resonate:target' OR p.tags->>'resonate:timer' = 'true', false) THEN
        RETURN resonate._error(req, 422, 'Awaited promise is not awaitable');
    END IF;
    p := dasa._listen_at(d->>'awaited', d->>'address', resonate.outbox_channel(d->>'address'));
    RETURN resonate._reply(req, 200, jsonb_build_object('promise', resonate._record(p)));
END $$;

-- Take up to "limit" unblock messages for address that viewer may see.
CREATE FUNCTION resonate._dequeue_unblock(address text, "limit" integer, viewer regrole)
RETURNS TABLE (promise jsonb)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM resonate.outbox o
    WHERE o.id IN (SELECT x.id FROM resonate.outbox x
                   WHERE x.address = _dequeue_unblock.address AND x.kind = 'unblock'
                     AND dasa._may_see_as(x.owner, viewer) AND pg_has_role(session_user, viewer, 'MEMBER')
                   ORDER BY x.id LIMIT greatest(_dequeue_unblock."limit", 0) FOR UPDATE SKIP LOCKED)
    RETURNING o.promise
$$;

-- Take (delete) up to "limit" unblock messages for address: the records of
-- promises it listened to that have settled. At least once: a process that
-- dies after taking them listens again and reads the promises.
CREATE FUNCTION resonate.dequeue_unblock(address text, "limit" integer)
RETURNS TABLE (promise jsonb)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM resonate._dequeue_unblock(address, "limit", current_user::regrole) $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA resonate FROM PUBLIC;
GRANT EXECUTE ON FUNCTION resonate.dequeue_unblock(text, integer), resonate._dequeue_unblock(text, integer, regrole),
    resonate._promise_register_listener(jsonb) TO dasa_user;
GRANT EXECUTE ON FUNCTION resonate.resonate_rpc(jsonb), resonate.outbox_channel(text) TO dasa_user;
GRANT EXECUTE ON FUNCTION resonate._ms(timestamptz), resonate._record(dasa.promises), resonate._reply(jsonb, integer, jsonb),
    resonate._error(jsonb, integer, text), resonate._visible(text), resonate._promise_create(jsonb),
    resonate._promise_settle(jsonb) TO dasa_user;
