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
