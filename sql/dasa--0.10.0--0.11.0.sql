-- dasa 0.10.0 -> 0.11.0: the Resonate protocol's tasks, callbacks and timers.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.11.0'" to load this file. \quit

-- A Resonate task: the unit of work of a promise created with a
-- resonate:target tag (same id as its promise, which owns it). Its
-- transitions are the protocol's (docs/resonate-protocol.md, section 4.2);
-- timer_at is its one timer: while pending, when its execute message is
-- sent again; while acquired, when its lease runs out.
CREATE TABLE resonate.tasks (
    id       text COLLATE "C" PRIMARY KEY,
    state    text NOT NULL CHECK (state IN ('pending', 'acquired', 'suspended', 'halted', 'fulfilled')),
    version  integer NOT NULL,
    pid      text,
    ttl      bigint,
    resumes  text[] NOT NULL DEFAULT '{}',
    target   text NOT NULL,
    timer_at timestamptz,
    owner    regrole NOT NULL
);
CREATE INDEX tasks_timer ON resonate.tasks (timer_at) WHERE timer_at IS NOT NULL;
REVOKE ALL ON resonate.tasks FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('resonate.tasks', '');

-- A task waiting on a promise (awaiter is the task's id), in the order registered.
CREATE TABLE resonate.callbacks (
    awaited text COLLATE "C" NOT NULL,
    awaiter text COLLATE "C" NOT NULL,
    seq     bigserial,
    PRIMARY KEY (awaited, awaiter)
);
CREATE INDEX callbacks_awaiter ON resonate.callbacks (awaiter);
REVOKE ALL ON resonate.callbacks FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('resonate.callbacks', '');
SELECT pg_catalog.pg_extension_config_dump('resonate.callbacks_seq_seq', '');

-- At most one execute message waits per task: a newer one replaces it.
CREATE UNIQUE INDEX outbox_execute ON resonate.outbox (task_id) WHERE kind = 'execute';

-- A workflow's preload: the promises of its branch, found by tag.
CREATE INDEX promises_resonate_branch ON dasa.promises ((tags->>'resonate:branch'), created_at)
    WHERE tags ? 'resonate:branch';

-- The record helpers of 0.10.0 again, in PL/pgSQL: a function with a pinned
-- search_path is never inlined, and an SQL one is planned at every call;
-- these are called several times per request.
CREATE OR REPLACE FUNCTION resonate._ms(t timestamptz) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN round(extract(epoch FROM t) * 1000)::bigint; END $$;

CREATE OR REPLACE FUNCTION resonate._record(p dasa.promises) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object(
        'id', p.id, 'state', p.state::text, 'param', coalesce(p.param, '{}'),
        'value', CASE WHEN p.state <> 'pending' THEN coalesce(p.value, '{}') ELSE '{}' END,
        'tags', p.tags, 'timeoutAt', round(extract(epoch FROM p.timeout_at) * 1000)::bigint,
        'createdAt', round(extract(epoch FROM p.created_at) * 1000)::bigint)
        || CASE WHEN p.settled_at IS NULL THEN '{}'
                ELSE jsonb_build_object('settledAt', round(extract(epoch FROM p.settled_at) * 1000)::bigint) END;
END $$;

CREATE OR REPLACE FUNCTION resonate._reply(req jsonb, status integer, data jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object('kind', req->'kind',
                              'head', jsonb_build_object('corrId', req->'head'->'corrId', 'status', status,
                                                         'version', req->'head'->'version'),
                              'data', data);
END $$;

CREATE OR REPLACE FUNCTION resonate._error(req jsonb, status integer, message text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN resonate._reply(req, status, to_jsonb(message)); END $$;

-- The 0.10.0 functions called at every drain of every Resonate process, in
-- PL/pgSQL for the same reason as the helpers above.
CREATE OR REPLACE FUNCTION resonate.outbox_channel(address text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN 'resonate_' || md5(address); END $$;

CREATE OR REPLACE FUNCTION resonate._dequeue_unblock(address text, "limit" integer, viewer regrole)
RETURNS TABLE (promise jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_has_role(session_user, viewer, 'MEMBER') THEN
        RETURN;
    END IF;
    RETURN QUERY
    DELETE FROM resonate.outbox o
    WHERE o.id IN (SELECT x.id FROM resonate.outbox x
                   WHERE x.address = _dequeue_unblock.address AND x.kind = 'unblock'
                     AND (x.owner = viewer OR dasa._may_see_as(x.owner, viewer))
                   ORDER BY x.id LIMIT greatest(_dequeue_unblock."limit", 0) FOR UPDATE SKIP LOCKED)
    RETURNING o.promise;
END $$;

CREATE OR REPLACE FUNCTION resonate.dequeue_unblock(address text, "limit" integer)
RETURNS TABLE (promise jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT * FROM resonate._dequeue_unblock(address, "limit", current_user::regrole);
END $$;

-- Read a promise as the protocol does on every request that names it: its
-- deadline applied (and everything that sets off), marked awaited if watch
-- (so that its settlement reaches the tasks), NULL if the caller cannot see it.
CREATE FUNCTION dasa._touch(id text, watch boolean DEFAULT false)
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_touch'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa._touch(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa._touch(text, boolean) TO dasa_user;

CREATE OR REPLACE FUNCTION resonate._visible(id text) RETURNS dasa.promises
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN dasa._touch(id, false); END $$;

-- The protocol's clock, and how long a pending task waits to be sent again.
CREATE FUNCTION resonate._retry() RETURNS interval
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN coalesce(current_setting('dasa.resonate_retry_timeout', true), '30s')::interval; END $$;

-- viewer may act on work of owner, and the session may act as viewer.
CREATE FUNCTION resonate._may(owner regrole, viewer regrole) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF owner = viewer AND viewer = session_user::regrole THEN
        RETURN true;                -- the common case: an application acting on its own work
    END IF;
    RETURN pg_has_role(session_user, viewer, 'MEMBER') AND dasa._may_see_as(owner, viewer);
END $$;

-- Do the fields of d have these JSON types (pairs: 'id', 'string', 'version', 'number', ...)?
CREATE FUNCTION resonate._shaped(d jsonb, VARIADIC spec text[]) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(d) IS DISTINCT FROM 'object' THEN
        RETURN false;
    END IF;
    FOR i IN 1 .. coalesce(array_length(spec, 1), 0) / 2 LOOP
        IF jsonb_typeof(d->spec[2 * i - 1]) IS DISTINCT FROM spec[2 * i] THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END $$;

CREATE FUNCTION resonate._task_record(t resonate.tasks) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object('id', t.id, 'state', t.state, 'version', t.version, 'resumes', to_jsonb(t.resumes))
        || CASE WHEN t.state = 'acquired'
                THEN jsonb_strip_nulls(jsonb_build_object('pid', t.pid, 'ttl', t.ttl)) ELSE '{}' END;
END $$;

-- Is the promise id settled, or past its deadline (or not one viewer may see)?
CREATE FUNCTION resonate._settled_now(id text, viewer regrole) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NOT EXISTS (SELECT 1 FROM dasa.promises p
                       WHERE p.id = _settled_now.id AND p.state = 'pending' AND p.timeout_at > clock_timestamp()
                         AND resonate._may(p.owner, viewer));
END $$;

-- The other promises of id's branch (tag resonate:branch), oldest first, that viewer may see.
CREATE FUNCTION resonate._preload(id text, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- in the collation of the index on the tag (a caller passing a task's id,
    -- whose collation is "C", would otherwise give it its own, and a full scan)
    branch text COLLATE "default" := (SELECT o.tags->>'resonate:branch' FROM dasa.promises o
                                      WHERE o.id = _preload.id AND o.tags ? 'resonate:branch');
BEGIN
    IF branch IS NULL THEN
        RETURN '[]';
    END IF;
    RETURN (SELECT coalesce(jsonb_agg(resonate._record(p) ORDER BY p.created_at, p.id), '[]')
            FROM dasa.promises p
            WHERE p.tags ? 'resonate:branch' AND p.tags->>'resonate:branch' = branch
              AND p.id <> _preload.id AND resonate._may(p.owner, viewer));
END $$;

-- Queue an execute message for task t (replacing one still waiting) and wake its address.
CREATE FUNCTION resonate._send_execute(t resonate.tasks) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO resonate.outbox (address, kind, task_id, version, owner)
    VALUES (t.target, 'execute', t.id, t.version, t.owner)
    ON CONFLICT (task_id) WHERE kind = 'execute'
    DO UPDATE SET address = EXCLUDED.address, version = EXCLUDED.version, owner = EXCLUDED.owner;
    PERFORM pg_notify(resonate.outbox_channel(t.target), '');
END $$;

-- The task of promise id, written when the promise is: fulfilled if the
-- promise is settled already; acquired by pid (version 1) if pid is given
-- (task.create); else pending (version 0), sent now or at its
-- resonate:delay. NULL if the promise has no target or the task exists.
CREATE FUNCTION resonate._task_new(id text, pid text, ttl bigint, viewer regrole) RETURNS resonate.tasks
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p dasa.promises;
    t resonate.tasks;
    now timestamptz := clock_timestamp();
    delay_at timestamptz;
BEGIN
    SELECT * INTO p FROM dasa.promises x WHERE x.id = _task_new.id;
    IF NOT FOUND OR NOT resonate._may(p.owner, viewer) OR coalesce(p.tags->>'resonate:target', '') = '' THEN
        RETURN NULL;
    END IF;
    t := ROW(id, 'pending', 0, NULL, NULL, '{}', p.tags->>'resonate:target', NULL, p.owner);
    IF p.state <> 'pending' OR p.timeout_at <= now THEN
        t.state := 'fulfilled';
    ELSIF pid IS NOT NULL THEN
        t := ROW(id, 'acquired', 1, pid, ttl, '{}', t.target, now + ttl * interval '1 ms', p.owner);
    ELSE
        IF p.tags->>'resonate:delay' ~ '^\s*[0-9]{1,15}(\.[0-9]*)?\s*$' THEN
            delay_at := to_timestamp((p.tags->>'resonate:delay')::numeric / 1000);
        END IF;
        t.timer_at := CASE WHEN delay_at > now THEN delay_at ELSE now + resonate._retry() END;
    END IF;
    INSERT INTO resonate.tasks VALUES (t.*) ON CONFLICT DO NOTHING RETURNING * INTO t;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF t.state = 'pending' AND NOT coalesce(delay_at > now, false) THEN
        PERFORM resonate._send_execute(t);
    END IF;
    RETURN t;
END $$;

-- The task id locked, if viewer may act on it.
CREATE FUNCTION resonate._task_locked(id text, viewer regrole, lock boolean DEFAULT true) RETURNS resonate.tasks
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t resonate.tasks;
BEGIN
    IF lock THEN
        SELECT * INTO t FROM resonate.tasks x WHERE x.id = _task_locked.id FOR UPDATE;
    ELSE
        SELECT * INTO t FROM resonate.tasks x WHERE x.id = _task_locked.id;
    END IF;
    IF NOT FOUND OR NOT resonate._may(t.owner, viewer) THEN
        RETURN NULL;
    END IF;
    RETURN t;
END $$;

-- Acquire the pending task id for pid (version + 1, a lease of ttl ms): the response data.
CREATE FUNCTION resonate._take(id text, pid text, ttl bigint, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t resonate.tasks;
BEGIN
    UPDATE resonate.tasks x SET state = 'acquired', version = x.version + 1, pid = _take.pid, ttl = _take.ttl,
        resumes = '{}', timer_at = clock_timestamp() + _take.ttl * interval '1 ms'
    WHERE x.id = _take.id AND x.state = 'pending' AND resonate._may(x.owner, viewer) RETURNING * INTO t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task "%" is not pending', id USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM resonate.outbox o WHERE o.kind = 'execute' AND o.task_id = t.id;
    RETURN jsonb_build_object('task', resonate._task_record(t),
                              'promise', (SELECT resonate._record(p) FROM dasa.promises p WHERE p.id = t.id),
                              'preload', resonate._preload(t.id, viewer));
END $$;

-- task.acquire {id, version, pid, ttl}
CREATE FUNCTION resonate._task_acquire(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    t resonate.tasks;
BEGIN
    IF NOT resonate._shaped(d, 'id', 'string', 'version', 'number', 'pid', 'string', 'ttl', 'number') THEN
        RETURN resonate._error(req, 400, 'task.acquire needs id and pid (strings), version and ttl (numbers)');
    END IF;
    PERFORM dasa._touch(d->>'id');
    t := resonate._task_locked(d->>'id', viewer);
    IF t IS NULL THEN
        RETURN resonate._error(req, 404, 'Task not found');
    ELSIF t.state <> 'pending' THEN
        RETURN resonate._error(req, 409, 'Task not in pending state');
    ELSIF resonate._settled_now(t.id, viewer) THEN
        RETURN resonate._error(req, 409, 'Task logically fulfilled');
    ELSIF t.version <> (d->>'version')::numeric THEN
        RETURN resonate._error(req, 409, 'Version mismatch');
    END IF;
    RETURN resonate._reply(req, 200, resonate._take(t.id, d->>'pid', (d->>'ttl')::numeric::bigint, viewer));
END $$;

-- The acquired task id at version (locked if lock), or the error response
-- (the message for a wrong state given). A promise past its deadline counts
-- as settled here: the answer is the one its timeout, written first, would give.
CREATE FUNCTION resonate._task_held(req jsonb, id text, version numeric, viewer regrole, message text,
                                    lock boolean, OUT t resonate.tasks, OUT error jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    t := resonate._task_locked(id, viewer, lock);
    IF t IS NULL THEN
        error := resonate._error(req, 404, 'Task not found');
    ELSIF t.state <> 'acquired' OR resonate._settled_now(t.id, viewer) THEN
        error := resonate._error(req, 409, message);
    ELSIF t.version <> version THEN
        error := resonate._error(req, 409, 'Version mismatch');
    END IF;
END $$;

-- task.release {id, version}: back to pending, sent again at once.
CREATE FUNCTION resonate._task_release_held(id text, version integer, viewer regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t resonate.tasks;
BEGIN
    UPDATE resonate.tasks x SET state = 'pending', pid = NULL, ttl = NULL,
        timer_at = clock_timestamp() + resonate._retry()
    WHERE x.id = _task_release_held.id AND x.state = 'acquired' AND x.version = _task_release_held.version
      AND resonate._may(x.owner, viewer)
    RETURNING * INTO t;
    IF FOUND THEN
        PERFORM resonate._send_execute(t);
    END IF;
END $$;

CREATE FUNCTION resonate._task_release(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    h record;
BEGIN
    IF NOT resonate._shaped(d, 'id', 'string', 'version', 'number') THEN
        RETURN resonate._error(req, 400, 'task.release needs id (string) and version (number)');
    END IF;
    PERFORM dasa._touch(d->>'id');
    h := resonate._task_held(req, d->>'id', (d->>'version')::numeric, viewer, 'Task not acquired', true);
    IF h.error IS NOT NULL THEN
        RETURN h.error;
    END IF;
    PERFORM resonate._task_release_held((h.t).id, (h.t).version, viewer);
    RETURN resonate._reply(req, 200, '{}');
END $$;

-- task.fulfill {id, version, action: promise.settle}: the settlement fulfils the task (resonate._settled).
CREATE FUNCTION resonate._task_fulfill(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    h record;
    inner_reply jsonb;
BEGIN
    IF NOT resonate._shaped(d, 'id', 'string', 'version', 'number', 'action', 'object') THEN
        RETURN resonate._error(req, 400, 'task.fulfill needs id (string), version (number) and action (object)');
    ELSIF d->'action'->'data'->>'id' IS DISTINCT FROM d->>'id' THEN
        RETURN resonate._error(req, 400, 'Promise ID must match task ID');
    END IF;
    h := resonate._task_held(req, d->>'id', (d->>'version')::numeric, viewer, 'Task not acquired', true);
    IF h.error IS NOT NULL THEN
        RETURN h.error;
    END IF;
    inner_reply := resonate._promise_settle(d->'action');
    IF (inner_reply->'head'->>'status')::int <> 200 THEN
        RETURN resonate._reply(req, (inner_reply->'head'->>'status')::int, inner_reply->'data');
    END IF;
    RETURN resonate._reply(req, 200, inner_reply->'data');
END $$;

-- task.fence {id, version, action: promise.create | promise.settle}
-- The fence of task id at version, in one read: 200 (acquired at that
-- version, its promise pending), 409, or 404 (no such task viewer may see).
CREATE FUNCTION resonate._fence_status(id text, version numeric, viewer regrole) RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN coalesce((
        SELECT CASE WHEN NOT resonate._may(t.owner, viewer) THEN 404
                    WHEN t.state = 'acquired' AND t.version = _fence_status.version AND p.state = 'pending'
                         AND p.timeout_at > clock_timestamp() THEN 200
                    ELSE 409 END
        FROM resonate.tasks t LEFT JOIN dasa.promises p ON p.id = t.id
        WHERE t.id = _fence_status.id), 404);
END $$;

CREATE FUNCTION resonate._task_fence(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    h record;
    inner_reply jsonb;
BEGIN
    IF jsonb_typeof(d->'id') IS DISTINCT FROM 'string' OR jsonb_typeof(d->'version') IS DISTINCT FROM 'number'
       OR jsonb_typeof(d->'action') IS DISTINCT FROM 'object'
       OR d->'action'->>'kind' IS NULL OR d->'action'->>'kind' NOT IN ('promise.create', 'promise.settle') THEN
        RETURN resonate._error(req, 400, 'task.fence needs id (string), version (number) and action (promise.create or promise.settle)');
    END IF;
    CASE resonate._fence_status(d->>'id', (d->>'version')::numeric, viewer)
    WHEN 404 THEN
        RETURN resonate._error(req, 404, 'Task not found');
    WHEN 409 THEN
        RETURN resonate._error(req, 409, 'Fence check failed');
    ELSE
    END CASE;
    inner_reply := CASE d->'action'->>'kind' WHEN 'promise.create' THEN resonate._promise_create(d->'action')
                                               ELSE resonate._promise_settle(d->'action') END;
    RETURN resonate._reply(req, 200, jsonb_build_object('action', inner_reply, 'preload', '[]'::jsonb));
END $$;

-- task.suspend on the awaited promises: 300 if one has settled (run again), else suspended with callbacks.
CREATE FUNCTION resonate._task_suspend_held(req jsonb, id text, awaited_ids text[], viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t resonate.tasks;
    seen integer;
    settled boolean;
BEGIN
    SELECT * INTO t FROM resonate.tasks x WHERE x.id = _task_suspend_held.id AND x.state = 'acquired' FOR UPDATE;
    IF NOT FOUND OR NOT resonate._may(t.owner, viewer) THEN
        RETURN resonate._error(req, 404, 'Task not found');
    END IF;
    SELECT count(*), bool_or(p.state <> 'pending' OR p.timeout_at <= clock_timestamp())
    INTO seen, settled
    FROM dasa.promises p WHERE p.id = ANY(awaited_ids) AND resonate._may(p.owner, viewer);
    IF seen < (SELECT count(DISTINCT a) FROM unnest(awaited_ids) a) THEN
        RETURN resonate._reply(req, 422, '{}');
    ELSIF settled THEN
        UPDATE resonate.tasks x SET resumes = '{}' WHERE x.id = t.id;
        RETURN resonate._reply(req, 300, jsonb_build_object('preload', resonate._preload(t.id, viewer)));
    END IF;
    INSERT INTO resonate.callbacks (awaited, awaiter)
    SELECT a, t.id FROM unnest(awaited_ids) WITH ORDINALITY u(a, n) ORDER BY n
    ON CONFLICT DO NOTHING;
    UPDATE resonate.tasks x SET state = 'suspended', pid = NULL, ttl = NULL, resumes = '{}', timer_at = NULL
    WHERE x.id = t.id;
    RETURN resonate._reply(req, 200, '{}');
END $$;

-- task.suspend {id, version, actions: [promise.register_callback {awaited, awaiter: id}]}
CREATE FUNCTION resonate._task_suspend(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    awaited text[];
    h record;
    a text;
BEGIN
    IF NOT resonate._shaped(d, 'id', 'string', 'version', 'number', 'actions', 'array')
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(d->'actions') x
                  WHERE NOT resonate._shaped(x->'data', 'awaited', 'string', 'awaiter', 'string')) THEN
        RETURN resonate._error(req, 400, 'task.suspend needs id (string), version (number) and actions (register_callback requests)');
    ELSIF jsonb_array_length(d->'actions') = 0 THEN
        RETURN resonate._error(req, 400, 'Actions list must not be empty');
    ELSIF EXISTS (SELECT 1 FROM jsonb_array_elements(d->'actions') x WHERE x->'data'->>'awaiter' <> d->>'id') THEN
        RETURN resonate._error(req, 400, 'Awaiter must be the suspending task');
    ELSIF EXISTS (SELECT 1 FROM jsonb_array_elements(d->'actions') x WHERE x->'data'->>'awaited' = d->>'id') THEN
        RETURN resonate._error(req, 400, 'Task cannot await its own promise');
    END IF;
    SELECT array_agg(x->'data'->>'awaited' ORDER BY n) INTO awaited
    FROM jsonb_array_elements(d->'actions') WITH ORDINALITY e(x, n);
    PERFORM dasa._touch(d->>'id');
    h := resonate._task_held(req, d->>'id', (d->>'version')::numeric, viewer, 'Task not acquired', true);
    IF h.error IS NOT NULL THEN
        RETURN h.error;
    END IF;
    -- marked awaited (and locked) before the callbacks are written: a racing settlement waits for them
    FOREACH a IN ARRAY awaited LOOP
        PERFORM dasa._touch(a, true);
    END LOOP;
    RETURN resonate._task_suspend_held(req, (h.t).id, awaited, viewer);
END $$;

-- task.heartbeat {pid, tasks: [{id, version}]}: extends the leases pid holds.
CREATE FUNCTION resonate._task_heartbeat(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
BEGIN
    IF NOT resonate._shaped(d, 'pid', 'string', 'tasks', 'array') THEN
        RETURN resonate._error(req, 400, 'task.heartbeat needs pid (string) and tasks (array)');
    END IF;
    UPDATE resonate.tasks t SET timer_at = clock_timestamp() + coalesce(t.ttl, 30000) * interval '1 ms'
    FROM (SELECT x->>'id' AS id, x->'version' AS version FROM jsonb_array_elements(d->'tasks') x
          WHERE jsonb_typeof(x->'id') = 'string' AND jsonb_typeof(x->'version') = 'number') h
    WHERE t.id = h.id AND t.version = (h.version::text)::numeric AND t.state = 'acquired' AND t.pid = d->>'pid'
      AND resonate._may(t.owner, viewer) AND NOT resonate._settled_now(t.id, viewer);
    RETURN resonate._reply(req, 200, '{}');
END $$;

-- task.get {id}
CREATE FUNCTION resonate._task_get(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t resonate.tasks;
BEGIN
    IF NOT resonate._shaped(req->'data', 'id', 'string') THEN
        RETURN resonate._error(req, 400, 'task.get needs id (string)');
    END IF;
    PERFORM dasa._touch(req->'data'->>'id');
    t := resonate._task_locked(req->'data'->>'id', viewer, false);
    IF t IS NULL THEN
        RETURN resonate._error(req, 404, 'Task not found');
    END IF;
    RETURN resonate._reply(req, 200, jsonb_build_object('task', resonate._task_record(t)));
END $$;

-- task.halt {id} / task.continue {id}
CREATE FUNCTION resonate._task_halt_or_continue(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t resonate.tasks;
BEGIN
    IF NOT resonate._shaped(req->'data', 'id', 'string') THEN
        RETURN resonate._error(req, 400, format('%s needs id (string)', req->>'kind'));
    END IF;
    t := resonate._task_locked(req->'data'->>'id', viewer);
    IF t IS NULL THEN
        RETURN resonate._error(req, 404, 'Task not found');
    ELSIF req->>'kind' = 'task.halt' THEN
        IF t.state = 'fulfilled' THEN
            RETURN resonate._error(req, 409, 'Task is fulfilled');
        END IF;
        UPDATE resonate.tasks x SET state = 'halted', pid = NULL, ttl = NULL, timer_at = NULL
        WHERE x.id = t.id AND x.state <> 'halted';
    ELSIF t.state <> 'halted' THEN
        RETURN resonate._error(req, 409, 'Task is not halted');
    ELSE
        UPDATE resonate.tasks x SET state = 'pending', timer_at = clock_timestamp() + resonate._retry()
        WHERE x.id = t.id RETURNING * INTO t;
        PERFORM resonate._send_execute(t);
    END IF;
    RETURN resonate._reply(req, 200, '{}');
END $$;

-- task.create for a task that exists already, or a promise without one:
-- the response, or NULL when neither exists (the promise is to be created).
CREATE FUNCTION resonate._task_create_existing(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    task_id text := d->'action'->'data'->>'id';
    t resonate.tasks;
    p dasa.promises;
BEGIN
    SELECT * INTO t FROM resonate.tasks x WHERE x.id = task_id FOR UPDATE;
    IF FOUND THEN
        IF NOT resonate._may(t.owner, viewer) OR t.state IN ('acquired', 'suspended', 'halted') THEN
            RETURN resonate._error(req, 409, 'Task already exists');
        ELSIF t.state = 'pending' THEN
            RETURN resonate._reply(req, 200, resonate._take(t.id, d->>'pid', (d->>'ttl')::numeric::bigint, viewer));
        END IF;
        RETURN resonate._reply(req, 200, jsonb_build_object(
            'task', resonate._task_record(t),
            'promise', (SELECT resonate._record(x) FROM dasa.promises x WHERE x.id = t.id),
            'preload', resonate._preload(t.id, viewer)));
    END IF;
    SELECT * INTO p FROM dasa.promises x WHERE x.id = task_id;
    IF NOT FOUND THEN
        RETURN NULL;
    ELSIF resonate._may(p.owner, viewer) AND coalesce(p.tags->>'resonate:target', '') = '' THEN
        RETURN resonate._error(req, 422, 'Promise has no address');
    END IF;
    RETURN resonate._error(req, 409, 'Promise already exists');
END $$;

-- task.create {pid, ttl, action: promise.create}: a promise and its task, acquired at once.
CREATE FUNCTION resonate._task_create(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    a jsonb := d->'action';
    reply jsonb;
    p dasa.promises;
    t resonate.tasks;
BEGIN
    IF NOT resonate._shaped(d, 'pid', 'string', 'ttl', 'number', 'action', 'object')
       OR NOT resonate._shaped(a->'data', 'id', 'string', 'timeoutAt', 'number') THEN
        RETURN resonate._error(req, 400, 'task.create needs pid (string), ttl (number) and action (a promise.create request)');
    ELSIF jsonb_typeof(a->'data'->'tags'->'resonate:target') IS DISTINCT FROM 'string'
          OR a->'data'->'tags'->>'resonate:target' = '' THEN
        RETURN resonate._error(req, 400, 'Action must have a resonate:target tag');
    END IF;
    PERFORM dasa._touch(a->'data'->>'id');
    reply := resonate._task_create_existing(req, viewer);
    IF reply IS NOT NULL THEN
        RETURN reply;
    END IF;
    IF jsonb_typeof(coalesce(a->'data'->'param', '{}')) <> 'object' OR jsonb_typeof(a->'data'->'tags') <> 'object' THEN
        RETURN resonate._error(req, 400, 'promise.create needs id (string), timeoutAt (number), param and tags (objects)');
    END IF;
    p := dasa._create_promise_at(a->'data'->>'id', to_timestamp((a->'data'->>'timeoutAt')::numeric / 1000),
                                 coalesce(a->'data'->'param', '{}'), a->'data'->'tags');
    p := dasa._touch(p.id, true);
    t := resonate._task_new(p.id, d->>'pid', (d->>'ttl')::numeric::bigint, viewer);
    IF t IS NULL THEN
        RETURN resonate._error(req, 409, 'Task already exists');
    END IF;
    RETURN resonate._reply(req, 200, jsonb_build_object(
        'task', resonate._task_record(t), 'promise', resonate._record(p),
        'preload', CASE WHEN t.state = 'fulfilled' THEN '[]'::jsonb ELSE resonate._preload(t.id, viewer) END));
END $$;

-- A promise as promise.create makes it (nothing if id exists): with a
-- target, its task too, sent to the target. The promise, as the caller sees it.
CREATE FUNCTION resonate._create(id text, timeout_at timestamptz, param jsonb, tags jsonb) RETURNS dasa.promises
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p dasa.promises;
BEGIN
    IF coalesce(tags->>'resonate:target', '') = '' THEN
        -- no task to make: create, or read the one there (the same answer; its deadline applies when read)
        RETURN dasa._create_promise_at(id, timeout_at, param, tags);
    END IF;
    p := dasa._touch(id);
    IF p IS NULL THEN
        p := dasa._create_promise_at(id, timeout_at, param, tags);
        IF coalesce(p.tags->>'resonate:target', '') <> '' THEN
            p := dasa._touch(p.id, true);
            PERFORM resonate._task_new(p.id, NULL, NULL, current_user::regrole);
        END IF;
    END IF;
    RETURN p;
END $$;

-- promise.create {id, timeoutAt, param, tags}
CREATE OR REPLACE FUNCTION resonate._promise_create(req jsonb) RETURNS jsonb
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
    RETURN resonate._reply(req, 200, jsonb_build_object('promise', resonate._record(resonate._create(
        d->>'id', to_timestamp((d->>'timeoutAt')::numeric / 1000), coalesce(d->'param', '{}'), coalesce(d->'tags', '{}')))));
END $$;

-- promise.settle {id, state, value}: through the kernel, idempotent.
CREATE OR REPLACE FUNCTION resonate._promise_settle(req jsonb) RETURNS jsonb
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
    BEGIN
        p := CASE d->>'state' WHEN 'resolved' THEN dasa.resolve(id, v)
                              WHEN 'rejected' THEN dasa.reject(id, v)
                              ELSE dasa.cancel(id, v) END;
    EXCEPTION WHEN no_data_found THEN
        RETURN resonate._error(req, 404, 'Promise not found');
    END;
    RETURN resonate._reply(req, 200, jsonb_build_object('promise', resonate._record(p)));
END $$;

-- promise.register_callback {awaited, awaiter}: awaiter's task resumes when awaited settles.
CREATE FUNCTION resonate._add_callback(awaited_id text, awaiter_id text, viewer regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO resonate.callbacks (awaited, awaiter)
    SELECT awaited_id, awaiter_id
    WHERE (SELECT resonate._may(p.owner, viewer) FROM dasa.promises p WHERE p.id = awaited_id)
      AND (SELECT resonate._may(p.owner, viewer) FROM dasa.promises p WHERE p.id = awaiter_id)
    ON CONFLICT DO NOTHING;
END $$;

CREATE FUNCTION resonate._promise_register_callback(req jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    awaited dasa.promises;
    awaiter dasa.promises;
BEGIN
    IF NOT resonate._shaped(d, 'awaited', 'string', 'awaiter', 'string') THEN
        RETURN resonate._error(req, 400, 'promise.register_callback needs awaited and awaiter (strings)');
    ELSIF d->>'awaited' = d->>'awaiter' THEN
        RETURN resonate._error(req, 400, 'Awaited and awaiter must be different');
    END IF;
    awaited := dasa._touch(d->>'awaited', true);
    awaiter := dasa._touch(d->>'awaiter');
    IF awaited IS NULL THEN
        RETURN resonate._error(req, 404, 'Awaited promise not found');
    ELSIF awaiter IS NULL THEN
        RETURN resonate._error(req, 422, 'Awaiter promise not found');
    ELSIF coalesce(awaiter.tags->>'resonate:target', '') = '' THEN
        RETURN resonate._error(req, 422, 'Awaiter has no address');
    END IF;
    IF awaited.state = 'pending' AND awaiter.state = 'pending' THEN
        PERFORM resonate._add_callback(awaited.id, awaiter.id, current_user::regrole);
    END IF;
    RETURN resonate._reply(req, 200, jsonb_build_object('promise', resonate._record(awaited)));
END $$;

-- What a settlement of the promises ids sets off for Resonate tasks (called
-- by the kernel as the extension owner, in the settling transaction): their
-- own tasks are fulfilled, and the tasks waiting on them are resumed (a
-- suspended one is sent again) or keep them in resumes.
CREATE FUNCTION resonate._settled(ids text[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w record;
    t resonate.tasks;
BEGIN
    WITH done AS (UPDATE resonate.tasks SET state = 'fulfilled', pid = NULL, ttl = NULL, resumes = '{}', timer_at = NULL
                  WHERE id = ANY(ids) AND state <> 'fulfilled' RETURNING id),
         waits AS (DELETE FROM resonate.callbacks WHERE awaiter IN (SELECT id FROM done))
    DELETE FROM resonate.outbox WHERE kind = 'execute' AND task_id IN (SELECT id FROM done);
    FOR w IN
        WITH fired AS (DELETE FROM resonate.callbacks WHERE awaited = ANY(ids) RETURNING awaited, awaiter, seq)
        SELECT f.awaiter, array_agg(f.awaited ORDER BY f.seq) AS settled FROM fired f GROUP BY f.awaiter
    LOOP
        SELECT * INTO t FROM resonate.tasks x WHERE x.id = w.awaiter FOR UPDATE;
        IF t.state = 'suspended' THEN
            UPDATE resonate.tasks x SET state = 'pending', resumes = w.settled,
                timer_at = clock_timestamp() + resonate._retry()
            WHERE x.id = t.id RETURNING * INTO t;
            PERFORM resonate._send_execute(t);
        ELSIF t.state IN ('pending', 'acquired', 'halted') THEN
            UPDATE resonate.tasks x SET resumes = x.resumes || w.settled WHERE x.id = t.id;
        END IF;
    END LOOP;
END $$;

-- Up to batch due task timers at now: a lease run out returns its task to
-- pending, a pending task is sent again; both wait the retry time next.
CREATE FUNCTION resonate._fire_timers(now timestamptz, batch integer) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
    addresses text[];
BEGIN
    WITH due AS (SELECT x.id FROM resonate.tasks x WHERE x.timer_at <= now
                 ORDER BY x.timer_at LIMIT batch FOR UPDATE SKIP LOCKED),
         moved AS (UPDATE resonate.tasks t SET
                       state = CASE WHEN t.state = 'acquired' THEN 'pending' ELSE t.state END,
                       pid = CASE WHEN t.state = 'acquired' THEN NULL ELSE t.pid END,
                       ttl = CASE WHEN t.state = 'acquired' THEN NULL ELSE t.ttl END,
                       timer_at = CASE WHEN t.state IN ('acquired', 'pending') THEN now + resonate._retry() END
                   FROM due WHERE t.id = due.id
                   RETURNING t.id, t.version, t.target, t.owner, t.state),
         sent AS (INSERT INTO resonate.outbox (address, kind, task_id, version, owner)
                  SELECT m.target, 'execute', m.id, m.version, m.owner FROM moved m WHERE m.state = 'pending'
                  ON CONFLICT (task_id) WHERE kind = 'execute'
                  DO UPDATE SET address = EXCLUDED.address, version = EXCLUDED.version, owner = EXCLUDED.owner
                  RETURNING address)
    SELECT (SELECT count(*) FROM moved), (SELECT array_agg(DISTINCT s.address) FROM sent s)
    INTO n, addresses;
    PERFORM pg_notify(resonate.outbox_channel(a), '') FROM unnest(addresses) a;
    RETURN n;
END $$;

CREATE FUNCTION resonate._process_timeouts() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    now timestamptz := clock_timestamp();
BEGIN
    -- the earliest timer, read from the end of its index (not "any timer due", which
    -- the planner may answer by reading every task)
    IF (SELECT min(timer_at) FROM resonate.tasks) <= now
       AND pg_try_advisory_xact_lock(hashtext('resonate.process_timeouts')) THEN
        PERFORM resonate._fire_timers(now, 1000);
    END IF;
END $$;

-- Called by every Resonate process several times a second: the database
-- worker drives the timers (promise deadlines, retries, leases); this only
-- helps it along, one caller at a time, and costs one index probe when
-- nothing is due.
CREATE FUNCTION resonate.process_timeouts() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN PERFORM resonate._process_timeouts(); END $$;

-- Take up to "limit" execute messages for address that viewer may see.
CREATE FUNCTION resonate._dequeue_execute(address text, "limit" integer, viewer regrole)
RETURNS TABLE (task_id text, version integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_has_role(session_user, viewer, 'MEMBER') THEN
        RETURN;
    END IF;
    RETURN QUERY
    DELETE FROM resonate.outbox o
    WHERE o.id IN (SELECT x.id FROM resonate.outbox x
                   WHERE x.address = _dequeue_execute.address AND x.kind = 'execute'
                     AND (x.owner = viewer OR dasa._may_see_as(x.owner, viewer))
                   ORDER BY x.id LIMIT greatest(_dequeue_execute."limit", 0) FOR UPDATE SKIP LOCKED)
    RETURNING o.task_id, o.version;
END $$;

-- Take (delete) up to "limit" execute messages for address: tasks to
-- acquire, at the version given. At least once: a message taken and lost
-- is sent again when the task's retry time comes.
CREATE FUNCTION resonate.dequeue_execute(address text, "limit" integer)
RETURNS TABLE (task_id text, version integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT * FROM resonate._dequeue_execute(address, "limit", current_user::regrole);
END $$;

-- Schedules: a Resonate schedule is a dasa schedule (dasa.schedules) whose
-- firings are promises, not invocations (function 'resonate:promise'; args
-- holds the promise's param and timeout): fired by the database worker,
-- once per firing time, as the role that made it.
CREATE FUNCTION resonate._schedule_record(s dasa.schedules) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'id', s.name, 'cron', s.cron, 'promiseId', s.promise_id,
        'promiseTimeout', coalesce((s.args->'promiseTimeout')::bigint,
                                   round(extract(epoch FROM s.timeout) * 1000)::bigint, 0),
        'promiseParam', coalesce(s.args->'promiseParam', '{}'), 'promiseTags', s.tags,
        'createdAt', resonate._ms(s.created_at), 'nextRunAt', resonate._ms(s.next_run_at))
        || CASE WHEN s.last_run_at IS NULL THEN '{}'
                ELSE jsonb_build_object('lastRunAt', resonate._ms(s.last_run_at)) END
$$;

-- A firing (called by the worker as the schedule's owner): promise id, due at + promiseTimeout.
CREATE FUNCTION resonate._schedule_fired(name text, id text, at timestamptz, args jsonb, tags jsonb) RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (resonate._create(id, at + coalesce((args->>'promiseTimeout')::numeric, 0) * interval '1 ms',
                             coalesce(args->'promiseParam', '{}'),
                             tags || jsonb_build_object('resonate:schedule', name))).id
$$;

-- schedule.create {id, cron, promiseId, promiseTimeout, promiseParam, promiseTags}
CREATE FUNCTION resonate._schedule_create(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := req->'data';
    s dasa.schedules;
    next_at timestamptz;
BEGIN
    IF NOT resonate._shaped(d, 'id', 'string', 'cron', 'string', 'promiseId', 'string', 'promiseTimeout', 'number', 'promiseTags', 'object')
       OR jsonb_typeof(coalesce(d->'promiseParam', '{}')) <> 'object' THEN
        RETURN resonate._error(req, 400, 'schedule.create needs id, cron and promiseId (strings), promiseTimeout (number), promiseParam and promiseTags (objects)');
    ELSIF NOT d->'promiseTags' ? 'resonate:target' THEN
        RETURN resonate._error(req, 400, 'promiseTags must include a resonate:target tag');
    ELSIF NOT pg_has_role(session_user, viewer, 'MEMBER') THEN
        RETURN resonate._error(req, 403, 'not allowed');
    END IF;
    SELECT * INTO s FROM dasa.schedules x WHERE x.name = d->>'id';
    IF FOUND THEN
        IF resonate._may(s.owner, viewer) THEN
            RETURN resonate._reply(req, 200, jsonb_build_object('schedule', resonate._schedule_record(s)));
        END IF;
        RETURN resonate._error(req, 409, 'Schedule already exists');
    END IF;
    BEGIN
        next_at := dasa.cron_next(d->>'cron', clock_timestamp(), 'UTC');
    EXCEPTION WHEN invalid_parameter_value THEN
        next_at := NULL;
    END;
    IF next_at IS NULL OR d->>'cron' ~ '^\s*[0-9]+\s+(second|minute|hour)' THEN
        RETURN resonate._error(req, 400, 'Invalid cron expression');
    END IF;
    INSERT INTO dasa.schedules (name, cron, time_zone, function, args, timeout, promise_id, tags, owner,
                                created_at, next_run_at)
    VALUES (d->>'id', d->>'cron', 'UTC', 'resonate:promise',
            jsonb_build_object('promiseParam', coalesce(d->'promiseParam', '{}'), 'promiseTimeout', d->'promiseTimeout'),
            NULL, d->>'promiseId', d->'promiseTags', viewer, clock_timestamp(), next_at)
    ON CONFLICT (name) DO NOTHING
    RETURNING * INTO s;
    IF NOT FOUND THEN
        RETURN resonate._error(req, 409, 'Schedule already exists');
    END IF;
    RETURN resonate._reply(req, 200, jsonb_build_object('schedule', resonate._schedule_record(s)));
END $$;

-- schedule.get {id} / schedule.delete {id}
CREATE FUNCTION resonate._schedule_get_or_delete(req jsonb, viewer regrole) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s dasa.schedules;
BEGIN
    IF NOT resonate._shaped(req->'data', 'id', 'string') THEN
        RETURN resonate._error(req, 400, format('%s needs id (string)', req->>'kind'));
    END IF;
    SELECT * INTO s FROM dasa.schedules x WHERE x.name = req->'data'->>'id' FOR UPDATE;
    IF NOT FOUND OR NOT resonate._may(s.owner, viewer) THEN
        RETURN resonate._error(req, 404, 'Schedule not found');
    ELSIF req->>'kind' = 'schedule.get' THEN
        RETURN resonate._reply(req, 200, jsonb_build_object('schedule', resonate._schedule_record(s)));
    ELSIF s.owner <> viewer AND NOT coalesce((SELECT rolsuper FROM pg_roles WHERE oid = viewer), false) THEN
        RETURN resonate._error(req, 403, format('Schedule belongs to role %s; only it can delete it', s.owner));
    END IF;
    DELETE FROM dasa.schedules x WHERE x.name = s.name;
    RETURN resonate._reply(req, 200, '{}');
END $$;

-- task.fence in C for the common shapes (NULL: not one of them).
CREATE FUNCTION dasa._resonate_fence(req jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'dasa_resonate_fence'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa._resonate_fence(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa._resonate_fence(jsonb) TO dasa_user;

-- One request of the protocol in, its response out (see docs/resonate-protocol.md).
-- The fences of a workflow's steps, most of its requests, are answered in C.
CREATE OR REPLACE FUNCTION resonate.resonate_rpc(req jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    answer jsonb;
BEGIN
    IF req->>'kind' = 'task.fence' THEN
        answer := dasa._resonate_fence(req);
        IF answer IS NOT NULL THEN
            RETURN answer;
        END IF;
    END IF;
    RETURN resonate._rpc(req);
END $$;

-- Every request (see resonate_rpc). An error in a request writes nothing and is answered with a status.
CREATE FUNCTION resonate._rpc(req jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    viewer regrole := current_user::regrole;
BEGIN
    IF jsonb_typeof(req) IS DISTINCT FROM 'object' OR jsonb_typeof(req->'kind') IS DISTINCT FROM 'string'
       OR jsonb_typeof(req->'data') IS DISTINCT FROM 'object' THEN
        RETURN resonate._error(req, 400, 'A request is an object with a kind (string) and data (object)');
    END IF;
    CASE req->>'kind'
    WHEN 'promise.get' THEN RETURN resonate._promise_get(req);
    WHEN 'promise.create' THEN RETURN resonate._promise_create(req);
    WHEN 'promise.settle' THEN RETURN resonate._promise_settle(req);
    WHEN 'promise.register_callback' THEN RETURN resonate._promise_register_callback(req);
    WHEN 'promise.register_listener' THEN RETURN resonate._promise_register_listener(req);
    WHEN 'task.create' THEN RETURN resonate._task_create(req, viewer);
    WHEN 'task.acquire' THEN RETURN resonate._task_acquire(req, viewer);
    WHEN 'task.release' THEN RETURN resonate._task_release(req, viewer);
    WHEN 'task.fulfill' THEN RETURN resonate._task_fulfill(req, viewer);
    WHEN 'task.suspend' THEN RETURN resonate._task_suspend(req, viewer);
    WHEN 'task.fence' THEN RETURN resonate._task_fence(req, viewer);
    WHEN 'task.heartbeat' THEN RETURN resonate._task_heartbeat(req, viewer);
    WHEN 'task.get' THEN RETURN resonate._task_get(req, viewer);
    WHEN 'task.halt', 'task.continue' THEN RETURN resonate._task_halt_or_continue(req, viewer);
    WHEN 'schedule.create' THEN RETURN resonate._schedule_create(req, viewer);
    WHEN 'schedule.get', 'schedule.delete' THEN RETURN resonate._schedule_get_or_delete(req, viewer);
    WHEN 'promise.search', 'task.search', 'schedule.search' THEN
        RETURN resonate._error(req, 501, 'Not implemented');
    ELSE
        RETURN resonate._error(req, 400, format('Unknown request kind: %s', req->>'kind'));
    END CASE;
EXCEPTION
    WHEN unique_violation THEN
        RETURN resonate._error(req, 409, SQLERRM);
    WHEN no_data_found THEN
        RETURN resonate._error(req, 404, SQLERRM);
    WHEN insufficient_privilege THEN
        RETURN resonate._error(req, 403, SQLERRM);
    WHEN data_exception OR invalid_parameter_value OR null_value_not_allowed THEN
        RETURN resonate._error(req, 400, SQLERRM);
    WHEN OTHERS THEN
        RETURN resonate._error(req, 500, format('%s (SQLSTATE %s)', SQLERRM, SQLSTATE));
END $$;

CREATE FUNCTION resonate._promise_get(req jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p dasa.promises;
BEGIN
    IF NOT resonate._shaped(req->'data', 'id', 'string') THEN
        RETURN resonate._error(req, 400, 'promise.get needs id (string)');
    END IF;
    p := dasa._touch(req->'data'->>'id');
    IF p IS NULL THEN
        RETURN resonate._error(req, 404, 'Promise not found');
    END IF;
    RETURN resonate._reply(req, 200, jsonb_build_object('promise', resonate._record(p)));
END $$;

COMMENT ON SCHEMA resonate IS 'The Resonate protocol over dasa''s promises: promises, tasks, callbacks, listeners and the outbox.';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA resonate FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA resonate TO dasa_user;
-- what only the kernel, the worker and the definer functions call
REVOKE EXECUTE ON FUNCTION resonate._settled(text[]), resonate._fire_timers(timestamptz, integer),
    resonate._send_execute(resonate.tasks) FROM dasa_user;
