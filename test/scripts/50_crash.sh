#!/usr/bin/env bash
# Exactly-once under crashes: 1000 invocations of a function that inserts one
# row each, while the test kills an executor with kill -9 and, separately,
# stops the server with an immediate shutdown and starts it again, several
# times. No client asks for anything afterwards; every invocation must end
# resolved, with exactly one row each.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_crash
n=1000
pg_ctl=/usr/lib/postgresql/15/bin/pg_ctl

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q $db "
CREATE TABLE crash_effects (inv text NOT NULL);
CREATE FUNCTION crash_insert(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO crash_effects VALUES (args->>'inv');
  PERFORM pg_sleep(0.01);
  RETURN args;
END \$\$;
SELECT count(*) FROM dasa.register('crash_insert', 'crash_insert(jsonb)',
                                   max_attempts => 100, initial_backoff => '10 ms')" >/dev/null
q $db "SELECT count(dasa.invoke('crash_insert', jsonb_build_object('inv', 'c-' || i), 'c-' || i))
       FROM generate_series(1, $n) i" >/dev/null

resolved() { q $db "SELECT count(*) FROM dasa.promises WHERE id LIKE 'c-%' AND state = 'resolved'" 2>/dev/null; }
executor_pid() {
  q postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = '$db' LIMIT 1"
}

crashes=0
for round in 1 2 3 4; do
  sleep 0.8
  diag "round $round: $(resolved) of $n resolved before the crash"
  if [ $((round % 2)) = 1 ]; then
    pid=$(executor_pid)
    [ -n "$pid" ] && kill -9 "$pid" && crashes=$((crashes + 1))
    sleep 0.3
  else
    "$pg_ctl" -D "$DASA_PGDATA" -m immediate -w stop >/dev/null && crashes=$((crashes + 1))
    "$pg_ctl" -D "$DASA_PGDATA" -l "$DASA_WORK/server.log" -w start >/dev/null
  fi
  wait_ready 60
done
is "$crashes" 4 "two kill -9 of an executor and two immediate shutdowns happened"

ok "all $n invocations resolve after the crashes, with no client asking" \
   wait_for 180 $db "SELECT count(*) = $n FROM dasa.promises WHERE id LIKE 'c-%' AND state = 'resolved'"
is "$(q $db "SELECT count(*) FROM crash_effects")" $n "exactly $n effect rows"
is "$(q $db "SELECT count(*) FROM (SELECT inv FROM crash_effects GROUP BY inv HAVING count(*) > 1) d")" 0 \
   "no invocation's effect is there twice"
is "$(q $db "SELECT count(*) FROM dasa.promises p WHERE p.id LIKE 'c-%'
             AND NOT EXISTS (SELECT FROM crash_effects e WHERE e.inv = p.id)")" 0 \
   "every invocation's effect is there"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id LIKE 'c-%' AND value <> jsonb_build_object('inv', id)")" 0 \
   "each promise holds its own function's value"
is "$(q $db "SELECT count(*) FROM dasa.tasks WHERE state <> 'completed'")" 0 "every task is completed"
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE $db" >/dev/null
done_testing
