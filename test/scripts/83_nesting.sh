#!/usr/bin/env bash
# Nesting: an external handler's session enters its claimed task
# (dasa.enter_task); what it invokes or creates are the task's children,
# named "<task>.<n>", deadlines capped; it awaits in-database and external
# children; a re-run after release re-attaches to the same children;
# cancelling the root reaches them; release gives a claim back without
# spending an attempt. The handler is test/lib/nesting.py (psycopg).
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_nesting
quiet() { PGOPTIONS='-c client_min_messages=warning' q "$@"; }
quiet postgres "DROP DATABASE IF EXISTS $db" >/dev/null
quiet postgres "DROP ROLE IF EXISTS nest_stranger" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q postgres "CREATE ROLE nest_stranger IN ROLE dasa_user" >/dev/null
q $db "CREATE TABLE bookings (nights int)" >/dev/null
q $db "CREATE FUNCTION book_hotel(a jsonb) RETURNS jsonb LANGUAGE sql
       AS \$\$ INSERT INTO bookings VALUES ((a->>'nights')::int); SELECT to_jsonb(100 * (a->>'nights')::int) \$\$" >/dev/null
q $db "CREATE FUNCTION enters(a jsonb) RETURNS jsonb LANGUAGE sql
       AS \$\$ SELECT dasa.enter_task('trip-1', 1); SELECT '1'::jsonb \$\$" >/dev/null
q $db "SELECT dasa.register('book_hotel', 'book_hotel(jsonb)'), dasa.register('enters', 'enters(jsonb)', max_attempts => 1),
              dasa.register_external('trip', 'trips'), dasa.register_external('book_flight', 'flights')" >/dev/null
q $db "GRANT SELECT ON bookings TO PUBLIC" >/dev/null

/usr/bin/python3 "$DASA_SUITE/lib/nesting.py" $db >"$DASA_WORK/nesting.out" 2>"$DASA_WORK/nesting.err"
status=$?
while IFS=$'\t' read -r description got expected; do
  is "$got" "$expected" "$description"
done <"$DASA_WORK/nesting.out"
is "$status" 0 "the handler ran to its end"
[ "$status" = 0 ] || sed 's/^/#   /' "$DASA_WORK/nesting.err" | tail -15 >&2
done_testing
