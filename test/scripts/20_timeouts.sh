#!/usr/bin/env bash
# Timeouts settled by the database worker with nobody reading: the stored
# rows change by themselves, timers resolve, and the sweep reads the index of
# pending deadlines rather than scanning the table.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap

stat() {  # counters of dasa.promises: seq_scan of the table, idx_scan of the deadline index
  q $db "SELECT (SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'dasa.promises'::regclass)
             || ' ' || (SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = 'dasa.promises_unsettled_timeout'::regclass)"
}

# a table with history, so a scan would show; settling by id must go through
# the primary key, never walk the deadline index (that would cost O(pending))
q $db "ANALYZE dasa.promises"
before=$(stat)
q $db "SELECT count(dasa.resolve(id, '1')) FROM (SELECT (dasa.create_promise('hist-' || i, '1 hour')).id FROM generate_series(1, 20000) i) s" >/dev/null
sleep 1.2
set -- $before; seq_before=$1 idx_before=$2
set -- $(stat); seq_after=$1 idx_after=$2
is "$seq_after" "$seq_before" "20000 creates and resolves never scan the table"
ok "nor walk the deadline index ($idx_before -> $idx_after)" \
   test $((idx_after - idx_before)) -lt 100
q $db "ANALYZE dasa.promises"
before=$(stat)

q $db "SELECT count(*) FROM (
         SELECT dasa.create_promise('to-' || i, '300 ms') FROM generate_series(1, 50) i
         UNION ALL
         SELECT dasa.create_promise('timer-' || i, '300 ms', NULL, '{\"resonate:timer\": \"true\"}') FROM generate_series(1, 50) i) s" >/dev/null

is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id ~ '^(to|timer)-' AND state = 'pending'")" 100 \
   "100 promises are stored pending"
ok "the worker settles all of them with no reader" \
   wait_for 20 $db "SELECT count(*) = 0 FROM dasa.promises WHERE id ~ '^(to|timer)-' AND state = 'pending'"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id LIKE 'to-%' AND state = 'rejected_timedout' AND value IS NULL")" 50 \
   "plain promises are stored rejected_timedout"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id LIKE 'timer-%' AND state = 'resolved' AND value IS NULL")" 50 \
   "timers are stored resolved"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id ~ '^(to|timer)-' AND settled_at = timeout_at")" 100 \
   "each is settled at its deadline"

# the worker's sweeps used the deadline index and never scanned the table
# (statistics reach the views when the worker's transactions report them)
sleep 1.2
after=$(stat)
set -- $before; seq_before=$1 idx_before=$2
set -- $after; seq_after=$1 idx_after=$2
is "$seq_after" "$seq_before" "no sequential scan of dasa.promises meanwhile"
ok "the pending-deadline index was used ($idx_before -> $idx_after)" test "$idx_after" -gt "$idx_before"

# search_promises is index-backed: an id prefix walks the primary key, tags use the GIN index
scans() {
  q $db "SELECT (SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'dasa.promises'::regclass)
             || ' ' || (SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = 'dasa.promises_pkey'::regclass)
             || ' ' || (SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = 'dasa.promises_tags'::regclass)"
}
q $db "SELECT count(dasa.create_promise('tagged-' || i, '1 hour', NULL, jsonb_build_object('batch', (i % 10)::text))) FROM generate_series(1, 2000) i" >/dev/null
q $db "ANALYZE dasa.promises"
sleep 1.2
set -- $(scans); seq0=$1 pk0=$2 gin0=$3
is "$(q $db "SELECT count(*) FROM dasa.search_promises('hist-1234*')")" 11 "search by id prefix finds the 11 matches among 22000 rows"
is "$(q $db "SELECT count(*) FROM dasa.search_promises('*', tags => '{\"batch\": \"7\"}', \"limit\" => 1000)")" 200 "search by tags finds the 200 matches"
sleep 1.2
set -- $(scans); seq1=$1 pk1=$2 gin1=$3
is "$seq1" "$seq0" "neither search scanned the table"
ok "the id prefix search used the primary key" test "$pk1" -gt "$pk0"
ok "the tags search used the GIN index" test "$gin1" -gt "$gin0"

# a short timeout created while the worker sleeps toward a far deadline wakes it early
q $db "SELECT dasa.create_promise('far', '1 hour')" >/dev/null
q $db "SELECT dasa.create_promise('near', '200 ms')" >/dev/null
ok "a nearer deadline committed later still settles in time" \
   wait_for 10 $db "SELECT state = 'rejected_timedout' FROM dasa.promises WHERE id = 'near'"
is "$(q $db "SELECT state FROM dasa.promises WHERE id = 'far'")" pending "the far one stays pending"
done_testing
