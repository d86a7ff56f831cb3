#!/usr/bin/env bash
# Too few background worker slots: a private cluster with
# max_worker_processes = 8 (dasa's launcher and PostgreSQL's logical
# replication launcher take two) and four databases with dasa, two executors
# wanted in each (12 processes). Slots are shared fairly: every database
# gets its worker first, then first executors, and the databases that came
# first give up their executors for that. The shortage is
# logged, at most once a minute. A retention process gives its slot back.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
dir=$DASA_WORK/slots
port=55641
rm -rf "$dir"; mkdir -p "$dir"
dasa_cluster_init "$dir" $port "max_worker_processes = 8" "dasa.launcher_naptime = 1s" \
  "dasa.executors_per_database = 2"
dasa_cluster_start "$dir"
trap 'dasa_cluster_stop "$dir"' EXIT
s() { qat "$dir" $port "$1" "$2"; }
swait() { wait_at "$1" "$dir" $port postgres "$2"; }
per_db="SELECT string_agg(n::text, ',' ORDER BY d) FROM (
          SELECT d.datname AS d, count(a.pid) FILTER (WHERE a.backend_type = '%s') AS n
          FROM pg_database d LEFT JOIN pg_stat_activity a ON a.datid = d.oid
          WHERE d.datname LIKE 'slots_%%' GROUP BY d.datname) x"

for i in 1 2 3 4; do
  s postgres "CREATE DATABASE slots_$i" >/dev/null
  s slots_$i "CREATE EXTENSION dasa" >/dev/null
  s slots_$i "CREATE FUNCTION echo(args jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT args';
              SELECT count(dasa.register('echo', 'echo(jsonb)'))" >/dev/null
  sleep 1.5
done
ok "every database gets its worker" swait 30 \
   "SELECT ($(printf "$per_db" 'dasa worker')) = '1,1,1,1'"
ok "the slots left go to first executors, none to a second one" swait 30 \
   "SELECT ($(printf "$per_db" 'dasa executor')) IN ('1,1,0,0', '1,0,1,0', '1,0,0,1', '0,1,1,0', '0,1,0,1', '0,0,1,1')"
diag "executors per database: $(s postgres "$(printf "$per_db" 'dasa executor')")"
served=$(s postgres "SELECT d.datname FROM pg_database d JOIN pg_stat_activity a ON a.datid = d.oid
                     WHERE a.backend_type = 'dasa executor' ORDER BY 1 LIMIT 1")
s $served "SELECT dasa.invoke('echo', '{\"n\": 1}', 'slots-1')" >/dev/null
ok "an invocation runs in a database that has an executor" \
   sh -c "for _ in \$(seq 1 100); do [ \"\$(psql -XAtq -h '$dir' -p $port -d $served -c \"SELECT state FROM dasa.promises WHERE id = 'slots-1'\")\" = resolved ] && exit 0; sleep 0.1; done; exit 1"
sleep 4
is "$(grep -c 'dasa could not start all its background processes' "$dir/server.log")" 1 \
   "the shortage is logged once (not once per second) over several seconds"
ok "the log line says how to size max_worker_processes" grep -q 'HINT:  Set max_worker_processes to at least' "$dir/server.log"
dasa_cluster_stop "$dir"

# A retention process takes only a free slot and gives it back: with one
# slot to spare, a backlog of history in one database gets a retention
# process; a database created then gets its worker from it, and the backlog
# is still removed (by the first database's worker itself).
rm -rf "$dir"; mkdir -p "$dir"
dasa_cluster_init "$dir" $port "max_worker_processes = 6" "dasa.launcher_naptime = 1s" \
  "dasa.executors_per_database = 2" "dasa.retention = 1s"
dasa_cluster_start "$dir"
s postgres "CREATE DATABASE slots_1" >/dev/null
s slots_1 "CREATE EXTENSION dasa" >/dev/null
s slots_1 "ALTER SYSTEM SET dasa.retention = 0" >/dev/null
s slots_1 "SELECT pg_reload_conf()" >/dev/null
s slots_1 "SELECT count(dasa.resolve((dasa.create_promise('old-' || i, '1 day')).id)) FROM generate_series(1, 200000) i;
           UPDATE dasa.promises SET settled_at = settled_at - interval '30 days'" >/dev/null
s slots_1 "ALTER SYSTEM RESET dasa.retention" >/dev/null
s slots_1 "SELECT pg_reload_conf()" >/dev/null
ok "a backlog of history gets a retention process in the free slot" swait 30 \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa retention'"
s postgres "CREATE DATABASE slots_2" >/dev/null
s slots_2 "CREATE EXTENSION dasa" >/dev/null
ok "a database created then gets its worker: the retention process gave its slot back" swait 30 \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = 'slots_2'"
ok "the backlog is removed all the same" wait_at 120 "$dir" $port slots_1 \
   "SELECT NOT EXISTS (SELECT FROM dasa.promises)"
dasa_cluster_stop "$dir"
trap - EXIT
[ "$tap_failed" = 0 ] && rm -rf "$dir"
done_testing
