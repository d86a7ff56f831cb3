#!/usr/bin/env bash
# One role can't reach another's work through dasa. Ordinary roles alice and
# bob (both granted dasa_user), an approver granted alice's privileges, an
# auditor granted dasa_admin:
#  - nothing an invocation leaves in an executor's session is seen by the
#    next (temporary objects and LISTEN are refused; advisory locks, prepared
#    statements, cursors, settings and lastval are cleared), with the
#    temporary-table trigger attack tried against an ordinary and a
#    superuser's invocation;
#  - an invocation runs as the role that invoked it and needs what a direct
#    call needs (USAGE on the schema, EXECUTE on the procedure);
#  - promises belong to their creator: to others they do not exist (P0002),
#    ids cannot be squatted or reused for something else (23505), members of
#    the owner's role (approvals) and dasa_admin may act on them;
#  - CALL dasa.call works for an application role; attempts are readable by
#    their owner only; dasa.executors() shows only this database.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap

as_role() {  # as_role ROLE SQL: run SQL after SET ROLE, print the result or the error's SQLSTATE
  psql -XAtq -v VERBOSITY=sqlstate -d $db -c "SET ROLE $1" -c "$2" 2>&1 | sed 's/^ERROR:  //'
}
settled() { wait_for 30 $db "SELECT state <> 'pending' FROM dasa.promises WHERE id = '$1'"; }
outcome() { q $db "SELECT state || ' ' || coalesce(value->>'sqlstate', value::text) FROM dasa.promises WHERE id = '$1'"; }
executors() { q $db "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = '$db'"; }

cleanup() {
  PGOPTIONS='-c client_min_messages=warning' q $db "
  DELETE FROM dasa.functions WHERE name LIKE 'iso_%';
  DROP TABLE IF EXISTS public.iso_audit_log, public.iso_su_only;
  DO \$\$ BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'iso_alice') THEN
      DROP OWNED BY iso_alice, iso_bob, iso_approver, iso_auditor;
      DROP ROLE iso_alice, iso_bob, iso_approver, iso_auditor;
    END IF;
  END \$\$;
  DROP FUNCTION IF EXISTS public.iso_su_audit(jsonb), public.iso_su_write(jsonb);" >/dev/null
}
cleanup
q $db "
CREATE ROLE iso_alice; CREATE ROLE iso_bob; CREATE ROLE iso_approver; CREATE ROLE iso_auditor;
GRANT dasa_user TO iso_alice, iso_bob, iso_approver;
GRANT iso_alice TO iso_approver;
GRANT dasa_admin TO iso_auditor;
CREATE SCHEMA iso_a AUTHORIZATION iso_alice;
CREATE SCHEMA iso_b AUTHORIZATION iso_bob;
CREATE TABLE public.iso_audit_log (who text, note text);
GRANT INSERT, SELECT ON public.iso_audit_log TO PUBLIC;
CREATE TABLE public.iso_su_only (v text);
-- a superuser's functions: one that writes the audit log, one that writes a table only it may write
CREATE FUNCTION public.iso_su_audit(args jsonb) RETURNS jsonb LANGUAGE plpgsql
  SET search_path = public AS \$\$
BEGIN INSERT INTO iso_audit_log VALUES (current_user, 'su'); RETURN '\"logged\"'; END \$\$;
CREATE FUNCTION public.iso_su_write(args jsonb) RETURNS jsonb LANGUAGE plpgsql
  SET search_path = public AS \$\$
BEGIN INSERT INTO iso_su_only VALUES (current_user); RETURN '\"written\"'; END \$\$;
SELECT count(*) FROM (SELECT dasa.register('iso_su_audit', 'public.iso_su_audit(jsonb)', max_attempts => 1)
                      UNION ALL SELECT dasa.register('iso_su_write', 'public.iso_su_write(jsonb)', max_attempts => 1)) r" >/dev/null

as_role iso_alice "
CREATE TABLE iso_a.ledger (who text, amount int);
CREATE TABLE iso_a.stolen (who text);
CREATE FUNCTION iso_a.credit(args jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = iso_a AS \$\$
BEGIN INSERT INTO ledger VALUES (current_user, (args->>'amount')::int); RETURN '\"credited\"'; END \$\$;
-- the attack: a temporary table named like bob's audit log, granted to all, with a trigger
CREATE FUNCTION iso_a.steal() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO iso_a.stolen VALUES (current_user);
  BEGIN EXECUTE 'ALTER ROLE iso_alice SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
  RETURN NEW;
END \$\$;
GRANT USAGE ON SCHEMA iso_a TO PUBLIC;
GRANT INSERT ON iso_a.stolen TO PUBLIC;
CREATE FUNCTION iso_a.plant(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  CREATE TEMP TABLE iso_audit_log (who text, note text);
  GRANT ALL ON iso_audit_log TO PUBLIC;
  CREATE TRIGGER steal BEFORE INSERT ON iso_audit_log FOR EACH ROW EXECUTE FUNCTION iso_a.steal();
  RETURN '\"planted\"';
END \$\$;
-- leaves everything else a session can hold
CREATE SEQUENCE iso_a.seq;
CREATE FUNCTION iso_a.leave(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  EXECUTE 'PREPARE iso_p AS SELECT 1';
  EXECUTE 'DECLARE iso_c CURSOR WITH HOLD FOR SELECT 1';
  PERFORM set_config('iso.leak', 'alice was here', false);
  PERFORM nextval('iso_a.seq');
  PERFORM pg_advisory_lock(4242);
  RETURN '\"left\"';
END \$\$;
CREATE FUNCTION iso_a.listen(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN EXECUTE 'LISTEN iso_chan'; RETURN '\"listening\"'; END \$\$;
CREATE FUNCTION iso_a.lock_and_fail(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN PERFORM pg_advisory_lock(4343); RAISE EXCEPTION 'failing with a lock held'; END \$\$;
CREATE FUNCTION iso_a.echo(args jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT args \$\$;
CREATE FUNCTION iso_a.fail(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN RAISE EXCEPTION 'alice fails' USING ERRCODE = '22023'; END \$\$;
SELECT count(*) FROM (
  SELECT dasa.register('iso_credit', 'iso_a.credit(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('iso_plant', 'iso_a.plant(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('iso_leave', 'iso_a.leave(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('iso_listen', 'iso_a.listen(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('iso_lock_and_fail', 'iso_a.lock_and_fail(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('iso_echo', 'iso_a.echo(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('iso_fail', 'iso_a.fail(jsonb)', max_attempts => 2, initial_backoff => '0 s')) r" >/dev/null
as_role iso_alice "REVOKE USAGE ON SCHEMA iso_a FROM PUBLIC; GRANT USAGE ON SCHEMA iso_a TO iso_bob" >/dev/null

as_role iso_bob "
CREATE FUNCTION iso_b.audit(args jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = public AS \$\$
BEGIN INSERT INTO iso_audit_log VALUES (current_user, 'bob'); RETURN '\"logged\"'; END \$\$;
-- what an executor's session holds when bob's code runs
CREATE FUNCTION iso_b.probe(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE last text;
BEGIN
  BEGIN last := lastval()::text; EXCEPTION WHEN OTHERS THEN last := 'none'; END;
  RETURN jsonb_build_object(
    'prepared', (SELECT count(*) FROM pg_prepared_statements),
    'cursors', (SELECT count(*) FROM pg_cursors WHERE name LIKE 'iso%'),
    'listening', (SELECT count(*) FROM pg_listening_channels()),
    'setting', coalesce(current_setting('iso.leak', true), ''),
    'lastval', last,
    'temp', to_regclass('pg_temp.iso_audit_log') IS NOT NULL);
END \$\$;
SELECT count(*) FROM (SELECT dasa.register('iso_audit', 'iso_b.audit(jsonb)', max_attempts => 1)
                      UNION ALL SELECT dasa.register('iso_probe', 'iso_b.probe(jsonb)', max_attempts => 1)) r" >/dev/null

# One executor, so that every invocation below runs in the same session.
q $db "ALTER SYSTEM SET dasa.executors_per_database = 1" >/dev/null
q $db "SELECT pg_reload_conf()" >/dev/null
ok "(one executor for the session tests)" wait_for 30 $db \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = current_database()"

# --- the temporary-table trigger attack ---------------------------------------
as_role iso_alice "SELECT dasa.invoke('iso_plant', '{}', 'iso-plant')" >/dev/null
settled iso-plant
is "$(outcome iso-plant)" "rejected 0A000" "a function creating a temporary table is refused (0A000)"
as_role iso_bob "SELECT dasa.invoke('iso_audit', '{}', 'iso-audit-bob')" >/dev/null
q $db "SELECT dasa.invoke('iso_su_audit', '{}', 'iso-audit-su')" >/dev/null
settled iso-audit-bob; settled iso-audit-su
is "$(outcome iso-audit-bob) / $(outcome iso-audit-su)" 'resolved "logged" / resolved "logged"' \
   "bob's and a superuser's audit invocations run after it"
is "$(q $db "SELECT string_agg(who, ',' ORDER BY who) FROM public.iso_audit_log")" "iso_bob,postgres" \
   "their rows went to the real audit log, as bob and as the superuser"
is "$(q $db "SELECT count(*) FROM iso_a.stolen")" 0 "alice's trigger never ran"
is "$(q $db "SELECT rolsuper FROM pg_roles WHERE rolname = 'iso_alice'")" f "alice did not become a superuser"

# --- nothing else left behind ---------------------------------------------------
as_role iso_alice "SELECT dasa.invoke('iso_leave', '{}', 'iso-leave')" >/dev/null
settled iso-leave
is "$(outcome iso-leave)" 'resolved "left"' "alice's function prepares, declares a cursor, sets, uses a sequence and locks"
as_role iso_bob "SELECT dasa.invoke('iso_probe', '{}', 'iso-probe')" >/dev/null
settled iso-probe
is "$(q $db "SELECT value::text FROM dasa.promises WHERE id = 'iso-probe'")" \
   '{"temp": false, "cursors": 0, "lastval": "none", "setting": "", "prepared": 0, "listening": 0}' \
   "bob's next invocation in the same session sees none of it"
is "$(q $db "SELECT pg_try_advisory_lock(4242)")" t "alice's session advisory lock was released"
as_role iso_alice "SELECT dasa.invoke('iso_listen', '{}', 'iso-listen')" >/dev/null
settled iso-listen
is "$(outcome iso-listen)" "rejected 0A000" "LISTEN is refused in an executor (PostgreSQL refuses it in background processes)"
as_role iso_alice "SELECT dasa.invoke('iso_lock_and_fail', '{}', 'iso-lock')" >/dev/null
settled iso-lock
is "$(q $db "SELECT pg_try_advisory_lock(4343)")" t "and so was one taken by an attempt that failed"

q $db "ALTER SYSTEM RESET dasa.executors_per_database" >/dev/null
q $db "SELECT pg_reload_conf()" >/dev/null

# --- who an invocation runs as ------------------------------------------------
as_role iso_alice "REVOKE USAGE ON SCHEMA iso_a FROM iso_bob" >/dev/null
is "$(as_role iso_bob "SELECT dasa.invoke('iso_credit', '{\"amount\": 100}', 'iso-credit-1')")" 42501 \
   "bob cannot invoke alice's function without USAGE on its schema"
as_role iso_alice "GRANT USAGE ON SCHEMA iso_a TO iso_bob" >/dev/null
is "$(as_role iso_bob "SELECT dasa.invoke('iso_credit', '{\"amount\": 100}', 'iso-credit-2')")" iso-credit-2 \
   "with USAGE and EXECUTE he can"
settled iso-credit-2
is "$(outcome iso-credit-2)" "rejected 42501" "but it runs as bob, who may not write alice's ledger"
as_role iso_alice "SELECT dasa.invoke('iso_credit', '{\"amount\": 5}', 'iso-credit-3')" >/dev/null
settled iso-credit-3
is "$(q $db "SELECT string_agg(who || ':' || amount, ',') FROM iso_a.ledger")" "iso_alice:5" \
   "alice's own invocation writes it, as alice"
as_role iso_bob "SELECT dasa.invoke('iso_su_write', '{}', 'iso-su-write')" >/dev/null
settled iso-su-write
is "$(outcome iso-su-write)/$(q $db "SELECT count(*) FROM iso_su_only")" "rejected 42501/0" \
   "a superuser's registration gives bob nothing he could not do himself"

# --- who owns a promise ---------------------------------------------------------
as_role iso_alice "SELECT dasa.create_promise('iso-secret', '1 hour', '{\"card\": \"4111\"}')" >/dev/null
is "$(as_role iso_bob "SELECT param FROM dasa.get_promise('iso-secret')")" P0002 "bob cannot read alice's promise (P0002)"
is "$(as_role iso_bob "SELECT state FROM dasa.resolve('iso-secret', '1')")" P0002 "nor resolve it"
is "$(as_role iso_bob "SELECT state FROM dasa.cancel('iso-secret')")" P0002 "nor cancel it"
is "$(as_role iso_bob "SELECT dasa.await('iso-secret', '10 ms')")" P0002 "nor await it"
is "$(as_role iso_bob "SELECT count(*) FROM dasa.search_promises('iso-sec*')")" 0 "nor find it by search"
is "$(as_role iso_bob "SELECT count(*) FROM dasa.visible_promises WHERE id = 'iso-secret'")" 0 "nor see it in dasa.visible_promises"
is "$(as_role iso_bob "SELECT count(*) FROM dasa.call_tree('iso-credit-3')")" 0 "nor walk alice's call tree"
is "$(as_role iso_alice "SELECT state || ' ' || param FROM dasa.get_promise('iso-secret')")" 'pending {"card": "4111"}' \
   "alice still can"
is "$(as_role iso_bob "SELECT count(*) FROM dasa.invocations WHERE id LIKE 'iso-%'") / $(as_role iso_alice "SELECT count(*) FROM dasa.invocations WHERE id LIKE 'iso-%'")" \
   "4 / 5" "dasa.invocations shows each role its own invocations"

as_role iso_bob "SELECT dasa.create_promise('iso-squat', '1 hour')" >/dev/null
is "$(as_role iso_alice "SELECT dasa.invoke('iso_echo', '{}', 'iso-squat')")" 23505 \
   "an id squatted by bob cannot be invoked by alice (23505)"
is "$(as_role iso_alice "SELECT state FROM dasa.create_promise('iso-squat', '1 hour')")" 23505 "nor created"
is "$(as_role iso_alice "SELECT dasa.invoke('iso_echo', '{}', 'iso-secret')")" 23505 \
   "invoking under the id of one's own plain promise is a conflict"
as_role iso_alice "SELECT dasa.invoke('iso_echo', '{\"n\": 1}', 'iso-echo')" >/dev/null
is "$(as_role iso_alice "SELECT dasa.invoke('iso_credit', '{}', 'iso-echo')")" 23505 \
   "so is invoking another function under an invocation's id"
is "$(as_role iso_alice "SELECT dasa.invoke('iso_echo', '{\"n\": 2}', 'iso-echo')")/$(q $db "SELECT count(*) FROM dasa.tasks WHERE id = 'iso-echo'")" \
   "iso-echo/1" "the same invocation again starts nothing new"

# --- approvals through membership, dasa_admin ------------------------------------
as_role iso_alice "SELECT dasa.create_promise('iso-approve', '1 hour')" >/dev/null
is "$(as_role iso_bob "SELECT state FROM dasa.resolve('iso-approve', '\"yes\"')")" P0002 "bob cannot approve"
is "$(as_role iso_approver "SELECT state FROM dasa.resolve('iso-approve', '\"yes\"')")" resolved \
   "a role granted alice's privileges can (the approval pattern)"
is "$(as_role iso_alice "SELECT dasa.await('iso-approve')")" '"yes"' "and alice's await gets the approval"
is "$(as_role iso_auditor "SELECT count(*) FROM dasa.visible_promises WHERE id IN ('iso-secret', 'iso-squat')")" 2 \
   "a member of dasa_admin sees everybody's promises"

# --- CALL dasa.call, attempts, executors -----------------------------------------
is "$(as_role iso_alice "CALL dasa.call('iso_echo', '{\"called\": true}')")" '{"called": true}' \
   "CALL dasa.call works for an application role"
as_role iso_alice "SELECT dasa.invoke('iso_fail', '{}', 'iso-fail')" >/dev/null
settled iso-fail
is "$(as_role iso_alice "SELECT count(*) || ' ' || min(sqlstate) FROM dasa.attempts WHERE task_id = 'iso-fail'")" "2 22023" \
   "alice reads the attempts of her invocation"
is "$(as_role iso_bob "SELECT count(*) FROM dasa.attempts WHERE task_id = 'iso-fail'")" 0 "bob does not"
is "$(as_role iso_bob "SELECT count(*) FROM dasa.executors() WHERE database <> (SELECT oid FROM pg_database WHERE datname = current_database())")" 0 \
   "dasa.executors() shows only this database's executors"

ok "(executors back to their number)" wait_for 30 $db \
   "SELECT count(*) = current_setting('dasa.executors_per_database')::int FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = current_database()"
cleanup
done_testing
