#!/usr/bin/env bash
# A function that crashes its server process (a C function calling abort(),
# built here) with 100 ordinary invocations beside it: each crash restarts
# the server, the attempt that died is counted against that invocation
# alone (from the executor's crash record), it then runs alone, and it is
# rejected (DA007) after max_attempts crashes: no restart loop, and the
# others all resolve. And a function that catches its own timeout in a loop
# is ended by its executor within the timeout plus a 2 s grace, as a failed
# attempt (57014), without holding the executor.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap
log=$DASA_WORK/server.log

cat >"$DASA_WORK/dasa_abort.c" <<'C'
#include "postgres.h"
#include "fmgr.h"
#include <stdlib.h>
PG_MODULE_MAGIC;
PG_FUNCTION_INFO_V1(dasa_test_abort);
Datum dasa_test_abort(PG_FUNCTION_ARGS) { abort(); }
C
ok "a tiny C module that calls abort() builds" \
   gcc -shared -fPIC -I"$("$PGBIN/pg_config" --includedir-server)" -o "$DASA_WORK/dasa_abort.so" "$DASA_WORK/dasa_abort.c"

q $db "
CREATE FUNCTION cl_abort() RETURNS void AS '$DASA_WORK/dasa_abort.so', 'dasa_test_abort' LANGUAGE C;
CREATE FUNCTION cl_crash(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN PERFORM cl_abort(); RETURN '\"unreachable\"'; END \$\$;
CREATE FUNCTION cl_ok(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN PERFORM pg_sleep(0.01); RETURN args; END \$\$;
SELECT count(*) FROM (SELECT dasa.register('cl_crash', 'cl_crash(jsonb)', max_attempts => 2, initial_backoff => '0 s')
                      UNION ALL SELECT dasa.register('cl_ok', 'cl_ok(jsonb)')) r" >/dev/null

crashes() { grep -c 'was terminated by signal 6' "$log"; }
before=$(crashes)
q $db "BEGIN;
       SELECT count(dasa.invoke('cl_ok', jsonb_build_object('i', i), 'cl-' || i)) FROM generate_series(1, 100) i;
       SELECT dasa.invoke('cl_crash', '{}', 'cl-crash');
       COMMIT" >/dev/null
ok "the crashing invocation is rejected" wait_for 120 $db "SELECT state = 'rejected' FROM dasa.promises WHERE id = 'cl-crash'"
is "$(q $db "SELECT (value->>'sqlstate') || ' ' || (value->>'attempts') FROM dasa.promises WHERE id = 'cl-crash'")" "DA007 2" \
   "after max_attempts (2) attempts that crashed, with DA007 naming the crash"
is "$(q $db "SELECT count(*) || ' ' || min(sqlstate) || ' ' || max(crashes) FROM dasa.attempts a JOIN dasa.tasks t ON t.id = a.task_id WHERE task_id = 'cl-crash'")" \
   "2 DA007 2" "each crash recorded as a failed attempt"
ok "the 100 invocations beside it all resolved" \
   wait_for 60 $db "SELECT count(*) = 100 FROM dasa.promises WHERE id LIKE 'cl-%' AND id <> 'cl-crash' AND state = 'resolved'"
sleep 2
is "$(( $(crashes) - before ))" 2 "the server crashed exactly twice: no restart loop"

# a function that will not stop: it catches the cancel of its timeout, forever
q $db "
CREATE FUNCTION cl_stubborn(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  LOOP
    BEGIN PERFORM pg_sleep(0.1); EXCEPTION WHEN query_canceled THEN NULL; END;
  END LOOP;
END \$\$;
SELECT count(*) FROM dasa.register('cl_stubborn', 'cl_stubborn(jsonb)', max_attempts => 1, attempt_timeout => '1 second')" >/dev/null
q $db "BEGIN;
       SELECT count(dasa.invoke('cl_ok', jsonb_build_object('i', i), 'cs-' || i)) FROM generate_series(1, 100) i;
       SELECT dasa.invoke('cl_stubborn', '{}', 'cs-stubborn', '1 hour');
       COMMIT" >/dev/null
ok "a function catching its own timeout is ended and rejected" \
   wait_for 60 $db "SELECT state = 'rejected' FROM dasa.promises WHERE id = 'cs-stubborn'"
is "$(q $db "SELECT (value->>'sqlstate') || ' ' || (value->>'message') FROM dasa.promises WHERE id = 'cs-stubborn'")" \
   "57014 the attempt outlived its timeout and its executor ended it" "as a failed attempt that says why"
is "$(q $db "SELECT a.failed_at - p.created_at < interval '10 s' FROM dasa.attempts a JOIN dasa.promises p ON p.id = a.task_id WHERE a.task_id = 'cs-stubborn'")" t \
   "within its 1 s timeout, the 2 s grace and an executor restart"
ok "the 100 invocations beside it all resolved" \
   wait_for 60 $db "SELECT count(*) = 100 FROM dasa.promises WHERE id LIKE 'cs-%' AND id <> 'cs-stubborn' AND state = 'resolved'"
done_testing
