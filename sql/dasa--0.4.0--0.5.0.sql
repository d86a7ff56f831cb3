-- dasa 0.4.0 -> 0.5.0: state that survives pg_dump, pg_restore and
-- pg_upgrade, and copies of a database that do not run its work again.
-- Released upgrade script once shipped: never edit it; later changes go into the next one.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.5.0'" to load this file. \quit

-- A registration names its procedure by signature (schema-qualified text,
-- resolved when used): a procedure restored from a dump has a new oid, and
-- pg_upgrade refuses tables with regprocedure columns.
SET LOCAL search_path = pg_catalog;	-- so that the signatures come out schema-qualified
ALTER TABLE dasa.functions ALTER COLUMN proc TYPE text COLLATE "C" USING proc::text;

-- Where this database's dasa state was recorded: the cluster (its system
-- identifier) and the database. The worker writes the row; a row naming
-- another place means the state came from a copy (CREATE DATABASE ...
-- TEMPLATE: it waits, paused, for dasa.resume_after_copy()), a restored dump
-- or pg_upgrade (it carries on once the restoring sessions have ended).
CREATE TABLE dasa.origin (
    system_identifier bigint NOT NULL,
    database_oid      oid NOT NULL,
    database_name     name NOT NULL,
    paused            boolean NOT NULL DEFAULT false,
    copied_from       name,
    recorded_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO dasa.origin (system_identifier, database_oid, database_name)
SELECT c.system_identifier, d.oid, d.datname
FROM pg_catalog.pg_control_system() c, pg_catalog.pg_database d
WHERE d.datname = pg_catalog.current_database();
REVOKE ALL ON dasa.origin FROM PUBLIC;
GRANT SELECT ON dasa.origin TO dasa_admin;

-- Let a copied database run its pending invocations (see dasa.origin).
CREATE FUNCTION dasa.resume_after_copy()
RETURNS boolean
AS 'MODULE_PATHNAME', 'dasa_resume_after_copy'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa.resume_after_copy() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.resume_after_copy() TO dasa_admin;

-- dasa's state is the database's data: pg_dump saves it with the rest.
SELECT pg_catalog.pg_extension_config_dump('dasa.promises', '');
SELECT pg_catalog.pg_extension_config_dump('dasa.functions', '');
SELECT pg_catalog.pg_extension_config_dump('dasa.tasks', '');
SELECT pg_catalog.pg_extension_config_dump('dasa.attempts', '');
SELECT pg_catalog.pg_extension_config_dump('dasa.callbacks', '');
SELECT pg_catalog.pg_extension_config_dump('dasa.origin', '');

-- External functions: carried out by workers outside the database that
-- claim their tasks from a queue. A registration has a procedure or a queue.
ALTER TABLE dasa.functions ALTER COLUMN proc DROP NOT NULL;
ALTER TABLE dasa.functions ADD COLUMN queue text COLLATE "C";
ALTER TABLE dasa.functions ADD CONSTRAINT functions_procedure_or_queue
    CHECK ((proc IS NULL) <> (queue IS NULL));
CREATE INDEX functions_queue ON dasa.functions (queue) WHERE queue IS NOT NULL;

-- An external task: its queue, and while claimed the worker, when it was
-- claimed and for how long (the lease, extended by the worker's heartbeats).
ALTER TABLE dasa.tasks
    ADD COLUMN queue text COLLATE "C",
    ADD COLUMN worker text COLLATE "C",
    ADD COLUMN claimed_at timestamptz,
    ADD COLUMN lease interval;
DROP INDEX dasa.tasks_due;
CREATE INDEX tasks_due ON dasa.tasks (run_at) WHERE state = 'pending' AND queue IS NULL;
CREATE INDEX tasks_queue_due ON dasa.tasks (queue, run_at) WHERE state = 'pending' AND queue IS NOT NULL;
CREATE INDEX tasks_claimed ON dasa.tasks (worker) WHERE state = 'claimed';

-- External workers, one narrow row each: a heartbeat rewrites this row
-- only. The session of its last claim or heartbeat (NULL when it claimed
-- with bind_session => false, as behind a transaction-mode pooler): when
-- that session ends, its claims are released within seconds; leases are
-- the fallback.
CREATE TABLE dasa.workers (
    name          text COLLATE "C" PRIMARY KEY,
    owner         regrole NOT NULL,
    heartbeat_at  timestamptz NOT NULL,
    backend_pid   integer,
    backend_start timestamptz
) WITH (fillfactor = 50);
REVOKE ALL ON dasa.workers FROM PUBLIC;
GRANT SELECT ON dasa.workers TO dasa_user;
SELECT pg_catalog.pg_extension_config_dump('dasa.workers', '');

CREATE FUNCTION dasa.register_external(
    name text,
    queue text,
    max_attempts integer DEFAULT 3,
    initial_backoff interval DEFAULT '1 second',
    max_backoff interval DEFAULT '1 minute',
    jitter double precision DEFAULT 0.1,
    timeout interval DEFAULT '1 hour')
RETURNS dasa.functions
AS 'MODULE_PATHNAME', 'dasa_register_external'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

-- The channel workers of a queue LISTEN on (always a valid identifier of
-- at most 63 bytes, whatever the queue's name).
CREATE FUNCTION dasa.queue_channel(queue text)
RETURNS text
AS 'MODULE_PATHNAME', 'dasa_queue_channel_sql'
LANGUAGE C IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.claim(
    queue text,
    worker text,
    max integer DEFAULT 1,
    lease interval DEFAULT '30 seconds',
    bind_session boolean DEFAULT true,
    OUT id text, OUT function text, OUT args jsonb, OUT attempt integer, OUT version bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dasa_claim'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.heartbeat(worker text)
RETURNS integer
AS 'MODULE_PATHNAME', 'dasa_heartbeat'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.complete(id text, version bigint, value jsonb DEFAULT NULL)
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_complete'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.fail(id text, version bigint, error jsonb DEFAULT NULL, retry boolean DEFAULT true)
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_fail'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION
    dasa.register_external(text, text, integer, interval, interval, double precision, interval),
    dasa.claim(text, text, integer, interval, boolean),
    dasa.heartbeat(text),
    dasa.complete(text, bigint, jsonb),
    dasa.fail(text, bigint, jsonb, boolean)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    dasa.register_external(text, text, integer, interval, interval, double precision, interval),
    dasa.claim(text, text, integer, interval, boolean),
    dasa.heartbeat(text),
    dasa.complete(text, bigint, jsonb),
    dasa.fail(text, bigint, jsonb, boolean)
TO dasa_user;

-- Listeners: a promise -> a channel NOTIFYed (payload: the id) by the
-- commit that settles it. The promise is marked awaited, as for callbacks.
CREATE TABLE dasa.listeners (
    promise_id text COLLATE "C" NOT NULL,
    channel    text NOT NULL,
    PRIMARY KEY (promise_id, channel)
);
REVOKE ALL ON dasa.listeners FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('dasa.listeners', '');

CREATE FUNCTION dasa.notify_on_settle(id text, channel text DEFAULT 'dasa_settled')
RETURNS dasa.promises
AS 'MODULE_PATHNAME', 'dasa_notify_on_settle'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa.notify_on_settle(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.notify_on_settle(text, text) TO dasa_user;

-- Complete many claimed tasks at once (a worker's batch): those still held
-- at the given versions are completed; returns how many.
CREATE FUNCTION dasa.complete_all(ids text[], versions bigint[], "values" jsonb[] DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'dasa_complete_all'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa.complete_all(text[], bigint[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.complete_all(text[], bigint[], jsonb[]) TO dasa_user;
