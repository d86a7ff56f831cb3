#!/usr/bin/env bash
# Maintenance DDL while sessions wait: a session blocked in dasa.await holds
# no lock on dasa's tables, so VACUUM FULL of each of them goes through at
# once (a 5 s lock_timeout would fail it otherwise), and the resolve from a
# third session still ends the wait.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap

q $db "SELECT dasa.create_promise('mt-1', '1 hour')" >/dev/null
psql -XAtq -d $db -c "SELECT dasa.await('mt-1')" >"$DASA_WORK/mt-await.out" 2>&1 &
awaiter=$!
ok "a session waits in dasa.await" wait_for 20 $db \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT dasa.await(''mt-1'')' AND wait_event_type = 'Extension'"
is "$(q $db "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE a.query LIKE 'SELECT dasa.await(''mt-1'')' AND l.locktype = 'relation'
               AND l.relation IN (SELECT oid FROM pg_class WHERE relnamespace = 'dasa'::regnamespace)")" 0 \
   "holding no lock on any of dasa's tables"
for t in promises tasks callbacks attempts functions; do
  ok "VACUUM FULL dasa.$t meanwhile (lock_timeout 5 s)" \
     psql -XAtq -v ON_ERROR_STOP=1 -d $db -c "SET lock_timeout = '5s'" -c "VACUUM FULL dasa.$t"
done
q $db "SELECT dasa.resolve('mt-1', '\"after maintenance\"')" >/dev/null
wait $awaiter
is "$(cat "$DASA_WORK/mt-await.out")" '"after maintenance"' "the waiting session gets the value of the resolve that followed"
done_testing
