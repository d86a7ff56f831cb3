#!/usr/bin/env bash
# Copies don't re-run work: CREATE DATABASE ... TEMPLATE of a database whose
# executors are busy (one in a 8 s function) succeeds without FORCE; the
# original finishes each invocation once (the one cut short runs again, not
# counted as failed); the copy runs none of the copied work until
# dasa.resume_after_copy(), then finishes it, each effect once. A copy of a
# database with nothing unfinished runs its own work at once. DROP DATABASE
# of a database whose executor runs a long function needs no FORCE either.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
src=dasa_tc_src
copy=dasa_tc_copy
idle_copy=dasa_tc_idle
n=300
quiet() { PGOPTIONS='-c client_min_messages=warning' q "$@"; }
for d in $copy $idle_copy $src; do quiet postgres "DROP DATABASE IF EXISTS $d" >/dev/null; done
q postgres "CREATE DATABASE $src" >/dev/null
q $src "CREATE EXTENSION dasa" >/dev/null
q $src "
CREATE TABLE effects (inv text PRIMARY KEY);
CREATE FUNCTION tc_work(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO effects VALUES (dasa.current_invocation());
  PERFORM pg_sleep((args->>'s')::float8);
  RETURN args;
END \$\$;
SELECT count(dasa.register('tc_work', 'tc_work(jsonb)', max_attempts => 1));
SELECT dasa.invoke('tc_work', '{\"s\": 8}', 'tc-long');
SELECT count(dasa.invoke('tc_work', '{\"s\": 0.01}', 'tc-' || i)) FROM generate_series(1, $n) i" >/dev/null
ok "the source runs its invocations" wait_for 30 $src \
   "SELECT count(*) >= 20 FROM dasa.promises WHERE id LIKE 'tc-%' AND state = 'resolved'"
ok "one executor is in the 8 s function" wait_for 30 $src \
   "SELECT count(*) = 1 FROM dasa.executors() WHERE task_id = 'tc-long'"

started=$SECONDS
ok "CREATE DATABASE ... TEMPLATE of the busy database, without FORCE" \
   q postgres "CREATE DATABASE $copy TEMPLATE $src"
ok "without waiting for the 8 s function" test $((SECONDS - started)) -lt 5

ok "the source finishes every invocation" wait_for 90 $src \
   "SELECT count(*) = 0 FROM dasa.tasks WHERE state <> 'completed'"
is "$(q $src "SELECT count(*) FILTER (WHERE state = 'resolved') || '/' || count(*) FROM dasa.promises WHERE id LIKE 'tc-%'")" \
   "$((n + 1))/$((n + 1))" "all resolved in the source (max_attempts 1: the one cut short was not counted as failed)"
is "$(q $src "SELECT count(*) FROM effects")" $((n + 1)) "each effect once in the source"

copied=$(q $copy "SELECT count(*) FROM effects")
unfinished=$(q $copy "SELECT count(*) FROM dasa.tasks WHERE state <> 'completed'")
diag "the copy holds $copied effects and $unfinished unfinished invocations"
ok "the copy has unfinished invocations" test "$unfinished" -gt 0
sleep 3
is "$(q $copy "SELECT count(*) FROM effects") $(q $copy "SELECT count(*) FROM dasa.tasks WHERE state <> 'completed'")" \
   "$copied $unfinished" "none of them runs in the copy"
is "$(q $copy "SELECT paused || ' ' || copied_from FROM dasa.origin")" "true $src" "dasa.origin says the copy is paused"
ok "the log says so, with the way out" grep -q "database \"$copy\" is a copy of database \"$src\"; its unfinished invocations ($unfinished) are paused" "$DASA_WORK/server.log"
is "$(q $copy "SELECT dasa.resume_after_copy()")" t "dasa.resume_after_copy() lets them run"
ok "the copy then finishes them" wait_for 60 $copy \
   "SELECT count(*) = 0 FROM dasa.tasks WHERE state <> 'completed'"
is "$(q $copy "SELECT count(*) FROM effects")" $((n + 1)) "each effect once in the copy"
is "$(q $copy "SELECT dasa.resume_after_copy()")" f "resuming again changes nothing"

q $copy "SELECT dasa.invoke('tc_work', '{\"s\": 8}', 'tc-long-2')" >/dev/null
ok "an executor of the copy runs a 8 s function" wait_for 30 $copy \
   "SELECT count(*) = 1 FROM dasa.executors() WHERE task_id = 'tc-long-2'"
started=$SECONDS
ok "DROP DATABASE of it, without FORCE" q postgres "DROP DATABASE $copy"
ok "without waiting for the function" test $((SECONDS - started)) -lt 5

q postgres "CREATE DATABASE $idle_copy TEMPLATE $src" >/dev/null
q $idle_copy "SELECT dasa.invoke('tc_work', '{\"s\": 0}', 'tc-new')" >/dev/null
ok "a copy with nothing unfinished runs new work at once" wait_for 30 $idle_copy \
   "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'tc-new'"

# DROP EXTENSION under load: dasa's processes leave first, so neither side
# meets a deadlock, and they stay gone.
q $idle_copy "SELECT count(dasa.invoke('tc_work', '{\"s\": 0.005}', 'tc-load-' || i)) FROM generate_series(1, 400) i" >/dev/null
ok "the copy is busy" wait_for 20 $idle_copy \
   "SELECT count(*) >= 20 FROM dasa.promises WHERE id LIKE 'tc-load-%' AND state = 'resolved'"
log_lines=$(wc -l <"$DASA_WORK/server.log")
ok "DROP EXTENSION dasa CASCADE while invocations run" q $idle_copy "DROP EXTENSION dasa CASCADE"
ok "dasa's processes leave the database and stay gone" sh -c "sleep 2; psql -XAtq -d $idle_copy -c \"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type LIKE 'dasa %' AND datname = current_database()\" | grep -qx t"
is "$(tail -n +$((log_lines + 1)) "$DASA_WORK/server.log" | grep -c 'deadlock detected')" 0 "no deadlock in the log"
for d in $idle_copy $src; do quiet postgres "DROP DATABASE $d" >/dev/null; done
done_testing
