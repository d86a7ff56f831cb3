-- dasa 0.7.0 -> 0.8.0: schedules, and settled history removed after a while.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.8.0'" to load this file. \quit

-- Schedules ------------------------------------------------------------------
-- A schedule invokes a registered function at the times of a cron
-- expression, as the role that made it. Each firing is an invocation whose id
-- comes from the schedule and the firing time (promise_id, a template with
-- {{.id}}, {{.time}} and {{.timestamp}}), so it happens once whoever fires it
-- and however often. The dasa worker fires them; next_run_at is the next
-- firing, last_run_at the last one fired.
CREATE TABLE dasa.schedules (
    name            text COLLATE "C" PRIMARY KEY,
    cron            text NOT NULL,
    time_zone       text NOT NULL,
    function        text NOT NULL,
    args            jsonb NOT NULL,
    timeout         interval,
    promise_id      text NOT NULL,
    tags            jsonb NOT NULL,
    owner           regrole NOT NULL,
    created_at      timestamptz NOT NULL,
    next_run_at     timestamptz NOT NULL,
    last_run_at     timestamptz,
    last_invocation text,
    last_error      text
);
CREATE INDEX schedules_next ON dasa.schedules (next_run_at);
SELECT pg_catalog.pg_extension_config_dump('dasa.schedules', '');

COMMENT ON TABLE dasa.schedules IS
    'Schedules (dasa.schedule, dasa.unschedule): each firing invokes function with a deterministic id. Each role sees its own.';

ALTER TABLE dasa.schedules ENABLE ROW LEVEL SECURITY;
CREATE POLICY schedules_of_visible_roles ON dasa.schedules
    FOR SELECT USING (dasa._may_see(owner));

CREATE FUNCTION dasa.schedule(
    name text,
    cron text,
    function text,
    args jsonb DEFAULT '{}',
    timeout interval DEFAULT NULL,
    time_zone text DEFAULT 'UTC',
    promise_id text DEFAULT '{{.id}}:{{.time}}',
    tags jsonb DEFAULT '{}')
RETURNS dasa.schedules
AS 'MODULE_PATHNAME', 'dasa_schedule'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION dasa.unschedule(name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dasa_unschedule'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;

-- When cron fires next after a time, in a time zone (NULL: never).
CREATE FUNCTION dasa.cron_next(cron text, after timestamptz DEFAULT now(), time_zone text DEFAULT 'UTC')
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'dasa_cron_next_sql'
LANGUAGE C STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;

-- Retention ------------------------------------------------------------------
-- A settled tree goes once its root has been settled for longer than
-- dasa.retention. What a task that may still run has read must stay: a
-- hold is written for each promise of another tree that a task awaited,
-- when that task suspends or fails and will run again.
CREATE TABLE dasa.holds (
    promise_id  text COLLATE "C" NOT NULL,
    task_id     text COLLATE "C" NOT NULL,
    PRIMARY KEY (promise_id, task_id)
);
CREATE INDEX holds_task ON dasa.holds (task_id);
SELECT pg_catalog.pg_extension_config_dump('dasa.holds', '');

-- The settled roots, by when they settled: what retention reads.
CREATE INDEX promises_settled_roots ON dasa.promises (settled_at, id)
    WHERE parent_id IS NULL AND settled_at IS NOT NULL;

CREATE FUNCTION dasa.purge(older_than interval DEFAULT '0')
RETURNS bigint
AS 'MODULE_PATHNAME', 'dasa_purge'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON dasa.schedules, dasa.holds FROM PUBLIC;
REVOKE ALL ON FUNCTION
    dasa.schedule(text, text, text, jsonb, interval, text, text, jsonb),
    dasa.unschedule(text),
    dasa.purge(interval)
FROM PUBLIC;
GRANT SELECT ON dasa.schedules TO dasa_user;
GRANT EXECUTE ON FUNCTION
    dasa.schedule(text, text, text, jsonb, interval, text, text, jsonb),
    dasa.unschedule(text),
    dasa.purge(interval)
TO dasa_user;
