#!/usr/bin/env bash
# Database-level defaults do not reach dasa's processes: with
# default_transaction_read_only, serializable isolation, a 1 ms lock_timeout
# and a 1 ms statement_timeout set by ALTER DATABASE, 200 invocations that
# write (and one that waits a second for a lock) all resolve, and no
# executor exits meanwhile.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap
# this test's own sessions keep ordinary settings
export PGOPTIONS='-c default_transaction_read_only=off -c default_transaction_isolation=read\ committed -c lock_timeout=0 -c statement_timeout=0'

executors() { q $db "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type IN ('dasa executor', 'dasa worker') AND datname = current_database()"; }
restart_workers() {  # end dasa's processes in this database; the launcher starts new ones, which read the settings
  local old; old=$(executors)
  q $db "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type IN ('dasa executor', 'dasa worker') AND datname = current_database()" >/dev/null
  wait_for 30 $db "SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type IN ('dasa executor', 'dasa worker') AND datname = current_database()
                   AND NOT pid = ANY('{$old}'::int[])"
}

q $db "
CREATE TABLE st_rows (i int);
CREATE TABLE st_locked (i int);
CREATE FUNCTION st_write(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN INSERT INTO st_rows VALUES ((args->>'i')::int); RETURN args; END \$\$;
CREATE FUNCTION st_wait(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN INSERT INTO st_locked VALUES (1); RETURN '\"got the lock\"'; END \$\$;
SELECT count(*) FROM (SELECT dasa.register('st_write', 'st_write(jsonb)', max_attempts => 1)
                      UNION ALL SELECT dasa.register('st_wait', 'st_wait(jsonb)', max_attempts => 1)) r" >/dev/null
q $db "ALTER DATABASE $db SET default_transaction_read_only = on" >/dev/null
q $db "ALTER DATABASE $db SET default_transaction_isolation = 'serializable'" >/dev/null
q $db "ALTER DATABASE $db SET lock_timeout = '1ms'" >/dev/null
q $db "ALTER DATABASE $db SET statement_timeout = '1ms'" >/dev/null
ok "dasa's processes restart and read the database's new defaults" restart_workers
before=$(executors)

# hold a lock on st_locked for a second while st_wait needs it
psql -XAtq -d $db -c "BEGIN" -c "LOCK TABLE st_locked" -c "SELECT pg_sleep(1)" -c "COMMIT" >/dev/null 2>&1 &
locker=$!
sleep 0.2
q $db "BEGIN;
       SELECT count(dasa.invoke('st_write', jsonb_build_object('i', i), 'st-' || i)) FROM generate_series(1, 200) i;
       SELECT dasa.invoke('st_wait', '{}', 'st-wait');
       COMMIT" >/dev/null
ok "200 writing invocations resolve under read-only, serializable, 1 ms lock and statement timeouts" \
   wait_for 60 $db "SELECT count(*) = 200 FROM dasa.promises WHERE id LIKE 'st-%' AND id <> 'st-wait' AND state = 'resolved'"
is "$(q $db "SELECT count(*) FROM st_rows")" 200 "with their 200 rows"
ok "the one waiting a second for a lock resolves too" \
   wait_for 30 $db "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'st-wait'"
wait $locker
is "$(executors)" "$before" "no executor or worker exited meanwhile"

q $db "ALTER DATABASE $db RESET ALL" >/dev/null
ok "(and back to the defaults)" restart_workers
done_testing
