-- Privileges: ordinary roles use dasa through membership in dasa_user and
-- only through its functions; the tables are not theirs to write.
-- each test starts from an empty table
TRUNCATE dasa.promises;
CREATE ROLE regress_dasa_alice;
CREATE ROLE regress_dasa_bob;
GRANT dasa_user TO regress_dasa_alice;

-- without the grant: no access at all
SET ROLE regress_dasa_bob;
SELECT dasa.create_promise('priv-0', '1 hour');
SELECT dasa.get_promise('priv-0');
RESET ROLE;

-- with the grant: the whole promise API
SET ROLE regress_dasa_alice;
SELECT id, state FROM dasa.create_promise('priv-1', '1 hour');
SELECT id, state, value FROM dasa.resolve('priv-1', '"done"');
SELECT dasa.await('priv-1');
SELECT id, state FROM dasa.search_promises('priv-*');

-- but never the tables or the internals directly
INSERT INTO dasa.promises (id, timeout_at, created_at) VALUES ('forged', now(), now());
UPDATE dasa.promises SET state = 'pending' WHERE id = 'priv-1';
DELETE FROM dasa.promises;
SELECT count(*) FROM dasa.promises;
SELECT dasa._notify_launcher();
SELECT count(*) FROM dasa.tasks;
SELECT count(*) FROM dasa.attempts;
UPDATE dasa.functions SET owner = 'postgres';
DELETE FROM dasa.tasks;
RESET ROLE;

SELECT id, state, value FROM dasa.promises ORDER BY id;

-- every function the extension creates pins search_path; the one exception
-- is the procedure dasa.call, which commits (PostgreSQL forbids a SET clause
-- there) and pins search_path in its C code instead
SELECT p.oid::regprocedure AS function, p.prokind, p.proconfig
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'dasa'
WHERE NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false);

-- objects shadowing dasa's own in the caller's search_path change nothing
CREATE SCHEMA regress_shadow;
CREATE TABLE regress_shadow.promises (LIKE dasa.promises);
CREATE TEMP TABLE promises (LIKE dasa.promises);
SET search_path = regress_shadow, public;
SELECT id, state FROM dasa.create_promise('priv-2', '1 hour');
SELECT (SELECT count(*) FROM regress_shadow.promises) AS shadow_rows,
       (SELECT count(*) FROM pg_temp.promises) AS temp_rows,
       (SELECT count(*) FROM dasa.promises WHERE id = 'priv-2') AS dasa_rows;
RESET search_path;
DROP SCHEMA regress_shadow CASCADE;

REVOKE dasa_user FROM regress_dasa_alice;
DROP ROLE regress_dasa_alice;
DROP ROLE regress_dasa_bob;
