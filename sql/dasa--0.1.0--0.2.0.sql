-- dasa 0.1.0 -> 0.2.0: durable functions run by in-database executors.
-- Released upgrade script once shipped: never edit it; later changes go into the next one.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.2.0'" to load this file. \quit

CREATE TYPE dasa.task_state AS ENUM ('pending', 'claimed', 'suspended', 'completed');

-- Registered functions: a name bound to a procedure (jsonb) -> jsonb and to
-- the role that registered it, which is the role it runs as.
CREATE TABLE dasa.functions (
    name            text COLLATE "C" PRIMARY KEY,
    proc            regprocedure NOT NULL,
    run_as          regrole NOT NULL,
    max_attempts    integer NOT NULL,
    initial_backoff interval NOT NULL,
    max_backoff     interval NOT NULL,
    jitter          double precision NOT NULL,
    timeout         interval NOT NULL,
    registered_at   timestamptz NOT NULL
);

-- The schedulable part of an invocation; its id is the invocation's promise
-- id. Kept narrow: arguments live in the promise, errors in dasa.attempts.
-- An in-database executor claims a task by locking it (FOR UPDATE SKIP
-- LOCKED) in the transaction that runs it and records the outcome, so a
-- crash leaves nothing claimed: the task is simply pending again.
CREATE TABLE dasa.tasks (
    id           text COLLATE "C" PRIMARY KEY,
    function     text COLLATE "C" NOT NULL,
    state        dasa.task_state NOT NULL DEFAULT 'pending',
    attempt      integer NOT NULL DEFAULT 0,
    version      bigint NOT NULL DEFAULT 0,
    run_at       timestamptz NOT NULL,
    completed_at timestamptz
);
CREATE INDEX tasks_due ON dasa.tasks (run_at) WHERE state = 'pending';

-- One row per failed attempt (successful attempts leave no row).
CREATE TABLE dasa.attempts (
    task_id   text COLLATE "C" NOT NULL,
    attempt   integer NOT NULL,
    sqlstate  text NOT NULL,
    message   text NOT NULL,
    detail    text,
    failed_at timestamptz NOT NULL,
    PRIMARY KEY (task_id, attempt)
);

REVOKE ALL ON dasa.functions, dasa.tasks, dasa.attempts FROM PUBLIC;

CREATE FUNCTION dasa.register(
    name text,
    fn regprocedure,
    max_attempts integer DEFAULT 3,
    initial_backoff interval DEFAULT '1 second',
    max_backoff interval DEFAULT '1 minute',
    jitter double precision DEFAULT 0.1,
    timeout interval DEFAULT '1 hour')
RETURNS dasa.functions
AS 'MODULE_PATHNAME', 'dasa_register'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.unregister(name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dasa_unregister'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.invoke(
    name text,
    args jsonb DEFAULT '{}',
    id text DEFAULT NULL,
    timeout interval DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'dasa_invoke'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

-- Invoke, commit, and wait for the value: CALL dasa.call('fn', '{"n": 1}').
-- No SET clause: PostgreSQL forbids COMMIT in a procedure that has one, so
-- the C code pins search_path itself around each of its transactions.
CREATE PROCEDURE dasa.call(
    name text,
    args jsonb DEFAULT '{}',
    id text DEFAULT NULL,
    timeout interval DEFAULT NULL,
    INOUT result jsonb DEFAULT NULL)
AS 'MODULE_PATHNAME', 'dasa_call'
LANGUAGE C;

-- Executors and the task each runs now (from shared memory).
CREATE FUNCTION dasa.executors(
    OUT pid integer, OUT database oid, OUT task_id text, OUT function text,
    OUT started_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'dasa_executors'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE VIEW dasa.invocations AS
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
       r.pid AS executor_pid
FROM dasa.tasks t
JOIN dasa.promises p ON p.id = t.id
CROSS JOIN LATERAL dasa._project(p) x
LEFT JOIN LATERAL (
    SELECT sqlstate, message FROM dasa.attempts
    WHERE task_id = t.id ORDER BY attempt DESC LIMIT 1) a ON true
LEFT JOIN dasa.executors() r ON r.task_id = t.id AND r.database = (
    SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());

REVOKE ALL ON FUNCTION
    dasa.register(text, regprocedure, integer, interval, interval, double precision, interval),
    dasa.unregister(text),
    dasa.invoke(text, jsonb, text, interval),
    dasa.executors()
FROM PUBLIC;
REVOKE ALL ON PROCEDURE dasa.call(text, jsonb, text, interval, jsonb) FROM PUBLIC;
REVOKE ALL ON dasa.invocations FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    dasa.register(text, regprocedure, integer, interval, interval, double precision, interval),
    dasa.unregister(text),
    dasa.invoke(text, jsonb, text, interval),
    dasa.executors()
TO dasa_user;
GRANT EXECUTE ON PROCEDURE dasa.call(text, jsonb, text, interval, jsonb) TO dasa_user;
GRANT SELECT ON dasa.invocations TO dasa_user;
-- The view calls these as the querying role.
GRANT EXECUTE ON FUNCTION dasa._project(dasa.promises) TO dasa_user;
GRANT SELECT ON dasa.functions TO dasa_user;
