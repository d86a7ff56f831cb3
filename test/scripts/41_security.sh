#!/usr/bin/env bash
# Invocations run as the role that invoked them, never as the superuser the
# executors connect as nor as the role that registered the function;
# invoking needs EXECUTE on the procedure; names belong to whoever
# registered them; search_path tricks change nothing.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap

as_role() {  # as_role ROLE SQL: run SQL after SET ROLE, print result or the error's SQLSTATE
  psql -XAtq -v VERBOSITY=sqlstate -d $db -c "SET ROLE $1" -c "$2" 2>&1 | sed 's/^ERROR:  //'
}
settled() { wait_for 30 $db "SELECT state <> 'pending' FROM dasa.get_promise('$1')"; }
outcome() { q $db "SELECT state || ' ' || coalesce(value->>'sqlstate', value::text) FROM dasa.get_promise('$1')"; }

cleanup() {
  PGOPTIONS='-c client_min_messages=warning' q $db "
  DROP SCHEMA IF EXISTS sec_evil CASCADE;
  DELETE FROM dasa.functions WHERE owner::text IN ('sec_alice', 'sec_bob');
  DO \$\$ BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'sec_alice') THEN
      DROP OWNED BY sec_alice, sec_bob; DROP ROLE sec_alice; DROP ROLE sec_bob;
    END IF;
  END \$\$;
  DROP TABLE IF EXISTS sec_secret;" >/dev/null
}
cleanup
q $db "
CREATE ROLE sec_alice; CREATE ROLE sec_bob;
GRANT dasa_user TO sec_alice, sec_bob;
GRANT CREATE ON SCHEMA public TO sec_alice, sec_bob;
CREATE TABLE sec_secret (v text); INSERT INTO sec_secret VALUES ('classified');
CREATE SCHEMA sec_evil AUTHORIZATION sec_bob;" >/dev/null

as_role sec_alice "
CREATE FUNCTION sec_whoami(args jsonb) RETURNS jsonb LANGUAGE sql
  AS \$\$ SELECT jsonb_build_object('current_user', current_user::text) \$\$;
CREATE FUNCTION sec_peek(args jsonb) RETURNS jsonb LANGUAGE sql
  AS \$\$ SELECT to_jsonb((SELECT v FROM sec_secret)) \$\$;
CREATE FUNCTION sec_escalate(args jsonb) RETURNS jsonb LANGUAGE plpgsql
  AS \$\$ BEGIN SET ROLE postgres; RETURN to_jsonb(current_user::text); END \$\$;
CREATE FUNCTION sec_read_file(args jsonb) RETURNS jsonb LANGUAGE sql
  AS \$\$ SELECT to_jsonb(pg_read_file('postgresql.conf')) \$\$;
CREATE FUNCTION sec_private(args jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT '1'::jsonb \$\$;
REVOKE EXECUTE ON FUNCTION sec_private(jsonb) FROM PUBLIC;
CREATE FUNCTION sec_unpin(args jsonb) RETURNS jsonb LANGUAGE plpgsql
  AS \$\$ BEGIN PERFORM set_config('search_path', 'nowhere', false); RETURN '\"unpinned\"'; END \$\$;
SELECT count(*) FROM (
  SELECT dasa.register('sec_whoami', 'sec_whoami(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('sec_peek', 'sec_peek(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('sec_escalate', 'sec_escalate(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('sec_read_file', 'sec_read_file(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('sec_private', 'sec_private(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('sec_unpin', 'sec_unpin(jsonb)', max_attempts => 1)) r" >/dev/null

is "$(as_role sec_alice "SELECT owner FROM dasa.functions WHERE name = 'sec_whoami'")" sec_alice \
   "a registration belongs to the role that registered it"

as_role sec_bob "SELECT dasa.invoke('sec_whoami', '{}', 'sec-1')" >/dev/null
settled sec-1
is "$(q $db "SELECT value->>'current_user' FROM dasa.get_promise('sec-1')")" sec_bob \
   "current_user inside the function is the role that invoked it, not the one that registered it"

as_role sec_alice "SELECT dasa.invoke('sec_peek', '{}', 'sec-2')" >/dev/null
settled sec-2
is "$(outcome sec-2)" "rejected 42501" "it cannot read a table its role cannot read (42501)"

as_role sec_alice "SELECT dasa.invoke('sec_escalate', '{}', 'sec-3')" >/dev/null
settled sec-3
is "$(outcome sec-3)" "rejected 42501" "it cannot SET ROLE back to the executor's superuser"

as_role sec_alice "SELECT dasa.invoke('sec_read_file', '{}', 'sec-4')" >/dev/null
settled sec-4
is "$(outcome sec-4)" "rejected 42501" "it has no superuser powers (pg_read_file is refused)"

is "$(as_role sec_bob "SELECT dasa.invoke('sec_private', '{}', 'sec-5')")" 42501 \
   "a role without EXECUTE on the procedure cannot invoke it"
is "$(as_role sec_alice "SELECT dasa.invoke('sec_private', '{}', 'sec-6')")" sec-6 \
   "its owner can"
is "$(as_role sec_bob "SELECT dasa.register('sec_whoami', 'sec_private(jsonb)')")" 42501 \
   "another role cannot re-register the name"
is "$(as_role sec_bob "SELECT dasa.unregister('sec_whoami')")" 42501 "nor unregister it"
is "$(as_role sec_bob "SELECT dasa.register('bob_private', 'sec_private(jsonb)')")" 42501 \
   "nobody can register a procedure they may not execute"
is "$(psql -XAtq -v VERBOSITY=sqlstate -d $db -c "CREATE ROLE sec_nobody" -c "SET ROLE sec_nobody" \
      -c "SELECT dasa.invoke('sec_whoami')" 2>&1 | sed 's/^ERROR:  //'; q $db 'DROP ROLE sec_nobody')" 42501 \
   "a role outside dasa_user cannot invoke at all"

# search_path tricks: a shadowing function, and a session path pointing elsewhere
as_role sec_bob "
CREATE FUNCTION sec_evil.sec_whoami(args jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT '\"evil\"'::jsonb \$\$;" >/dev/null
psql -XAtq -d $db -c "SET ROLE sec_bob" -c "SET search_path = sec_evil, public" \
  -c "SELECT dasa.invoke('sec_whoami', '{}', 'sec-7')" >/dev/null
is "$(psql -XAtq -d $db -c "SET search_path = sec_evil, public" -c "SELECT sec_whoami('{}')")" '"evil"' \
   "(the shadowing function is what that search_path resolves to)"
settled sec-7
is "$(q $db "SELECT value->>'current_user' FROM dasa.get_promise('sec-7')")" sec_bob \
   "the executor runs the registered procedure, not a same-named one on the invoker's search_path"

# user code that changes session settings does not change the executor
as_role sec_alice "SELECT dasa.invoke('sec_unpin', '{}', 'sec-8')" >/dev/null
settled sec-8
as_role sec_alice "SELECT dasa.invoke('sec_whoami', '{}', 'sec-9')" >/dev/null
settled sec-9
is "$(outcome sec-8)/$(q $db "SELECT value->>'current_user' FROM dasa.get_promise('sec-9')")" "resolved \"unpinned\"/sec_alice" \
   "a function's SET of search_path is undone: later invocations run normally"

cleanup
done_testing
