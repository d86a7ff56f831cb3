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

# The same for CALL dasa.call waiting on a function that awaits a human.
q $db "CREATE FUNCTION mt_approval(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
       BEGIN RETURN dasa.await('mt-human'); END \$\$;
       SELECT count(dasa.register('mt_approval', 'mt_approval(jsonb)'));
       SELECT dasa.create_promise('mt-human', '1 hour')" >/dev/null
psql -XAtq -d $db -c "CALL dasa.call('mt_approval', '{}', 'mt-call')" >"$DASA_WORK/mt-call.out" 2>&1 &
caller=$!
ok "a session waits in CALL dasa.call" wait_for 20 $db \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'CALL dasa.call(%' AND wait_event_type = 'Extension'"
ok "VACUUM FULL dasa.promises and dasa.tasks meanwhile (lock_timeout 5 s)" \
   psql -XAtq -v ON_ERROR_STOP=1 -d $db -c "SET lock_timeout = '5s'" -c "VACUUM FULL dasa.promises" -c "VACUUM FULL dasa.tasks"
q $db "SELECT dasa.resolve('mt-human', '\"approved\"')" >/dev/null
wait $caller
is "$(cat "$DASA_WORK/mt-call.out")" '"approved"' "the call returns the function's value once the human answers"

# The same while the extension is updated under the waiting session: a
# database still at the previous version (the library is newer), a session
# waits, VACUUM FULL of each table, ALTER EXTENSION dasa UPDATE, and a
# resolve from a third session on the updated objects ends the wait.
up=dasa_update_wait
wait_for_log() {
  local deadline=$((SECONDS + 20))
  while [ $SECONDS -lt $deadline ]; do
    grep -qF "$1" "$DASA_WORK/server.log" && return 0
    sleep 0.2
  done
  return 1
}
previous=$(ls "$(pg_config --sharedir)/extension" | sed -n 's/^dasa--\([0-9.]*\)--[0-9.]*\.sql$/\1/p' | sort -V | tail -1)
current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$(pg_config --sharedir)/extension/dasa.control")
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $up" >/dev/null
q postgres "CREATE DATABASE $up" >/dev/null
q $up "CREATE EXTENSION dasa VERSION '$previous'" >/dev/null
q $up "SELECT dasa.create_promise('up-1', '1 hour')" >/dev/null
psql -XAtq -d $up -c "SELECT dasa.await('up-1')" >"$DASA_WORK/up-await.out" 2>&1 &
awaiter=$!
ok "a session waits in dasa.await on version $previous" wait_for 20 $up \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT dasa.await(''up-1'')' AND wait_event_type = 'Extension'"
out=$(psql -XAtq -d $up -c "SELECT count(*) FROM dasa.executors()" 2>&1)
case "$out" in *"WARNING:  dasa's executors in this database are idle: the extension is at version $previous, the library at $current"*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "dasa.executors() warns that the executors are idle, and why"
ok "so does the log" wait_for_log "database \"$up\" has dasa $previous installed, but the library is version $current"
for t in promises tasks callbacks attempts functions; do
  ok "VACUUM FULL dasa.$t meanwhile (lock_timeout 5 s)" \
     psql -XAtq -v ON_ERROR_STOP=1 -d $up -c "SET lock_timeout = '5s'" -c "VACUUM FULL dasa.$t"
done
ok "ALTER EXTENSION dasa UPDATE to $current meanwhile (lock_timeout 5 s)" \
   psql -XAtq -v ON_ERROR_STOP=1 -d $up -c "SET lock_timeout = '5s'" -c "ALTER EXTENSION dasa UPDATE"
is "$(q $up "SELECT extversion FROM pg_extension WHERE extname = 'dasa'")" "$current" "the extension is at $current"
q $up "SELECT dasa.resolve('up-1', '\"after the update\"')" >/dev/null
wait $awaiter
is "$(cat "$DASA_WORK/up-await.out")" '"after the update"' "the waiting session gets the value resolved on the updated objects"
q $up "CREATE FUNCTION up_echo(args jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT args';
       SELECT count(dasa.register('up_echo', 'up_echo(jsonb)'));
       SELECT dasa.invoke('up_echo', '{\"n\": 1}', 'up-echo')" >/dev/null
ok "invocations run after the update" wait_for 20 $up "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'up-echo'"
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE $up" >/dev/null
done_testing
