-- dasa 0.5.0 -> 0.6.0: an external worker's session can work on a claimed
-- task (its invocations become the task's children) and give a claim back.

\echo Use "ALTER EXTENSION dasa UPDATE TO '0.6.0'" to load this file. \quit

-- From now on this session works on the claimed task: what it invokes or
-- creates are the task's children ("<task>.<n>"), deadlines capped at the
-- task's. Completing, failing or releasing the task (or leave_task) ends it.
CREATE FUNCTION dasa.enter_task(id text, version bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'dasa_enter_task'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa.enter_task(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.enter_task(text, bigint) TO dasa_user;

CREATE FUNCTION dasa.leave_task()
RETURNS boolean
AS 'MODULE_PATHNAME', 'dasa_leave_task'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa.leave_task() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.leave_task() TO dasa_user;

-- Give a claimed task back, due at once, without spending an attempt (a
-- worker shutting down).
CREATE FUNCTION dasa.release(id text, version bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'dasa_release'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION dasa.release(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dasa.release(text, bigint) TO dasa_user;
