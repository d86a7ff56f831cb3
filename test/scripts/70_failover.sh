#!/usr/bin/env bash
# Failover: a primary and a synchronous streaming standby on this machine,
# both private throwaway clusters (not the suite's). While the primary runs,
# dasa stays quiet on the standby (no launcher, worker or executor there) and
# reads work. 2,000 invocations that each insert one row are under way when the
# primary's postmaster is killed with kill -9; the standby is promoted, and on
# it every invocation must end resolved, with each effect there exactly once.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
base=$DASA_WORK/failover
pri=$base/primary
sby=$base/standby
pri_port=55611
sby_port=55612
bin=/usr/lib/postgresql/15/bin
db=dasa_fo
n=2000

crashed=0    # set once the primary's postmaster is killed: never pg_ctl it again
orphans=""   # the killed postmaster's children, to make sure none outlives the test
cleanup() {
  if [ "$tap_failed" != 0 ]; then
    for d in "$pri" "$sby"; do
      [ -f "$d/server.log" ] && { diag "$d/server.log ends:"; tail -15 "$d/server.log" | sed 's/^/#   /' >&2; }
    done
  fi
  [ "$crashed" = 0 ] && dasa_cluster_stop "$pri"
  dasa_cluster_stop "$sby"
  local pid
  for pid in $orphans; do   # only if still one of ours: a postgres process
    [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = postgres ] && kill -9 "$pid" 2>/dev/null
  done
  rm -rf "$base"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# qc DIR PORT DB SQL: like q, on the cluster whose socket is in DIR.
qc() { psql -XAtq -v ON_ERROR_STOP=1 -h "$1" -p "$2" -d "$3" -c "$4"; }
qp() { qc "$pri" $pri_port "$@"; }
qs() { qc "$sby" $sby_port "$@"; }
# wait_on DIR PORT SECONDS DB SQL: like wait_for, on that cluster.
wait_on() {
  local dir=$1 port=$2 deadline=$((SECONDS + $3)) d=$4 sql=$5
  while [ $SECONDS -lt $deadline ]; do
    [ "$(psql -XAtq -h "$dir" -p "$port" -d "$d" -c "$sql" 2>/dev/null)" = t ] && return 0
    sleep 0.05
  done
  return 1
}
dasa_procs() {  # dasa_procs DIR PORT [BACKEND_TYPE]: dasa processes of that cluster
  qc "$1" "$2" postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE '${3:-dasa %}'"
}
resolved="(SELECT count(*) FROM dasa.promises WHERE id LIKE 'f-%' AND state = 'resolved')"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

rm -rf "$base"; mkdir -p "$pri" "$sby"

# The primary: replicas allowed, one synchronous standby named standby1.
dasa_cluster_init "$pri" $pri_port \
  "dasa.launcher_naptime = 1s" \
  "wal_level = replica" \
  "max_wal_senders = 4" \
  "synchronous_standby_names = 'FIRST 1 (standby1)'"
dasa_cluster_start "$pri" || { ok "the primary starts" false; done_testing; exit 1; }

# The standby: a base backup streaming from it as standby1; its own port and
# socket; no synchronous standby of its own once it is promoted.
"$bin/pg_basebackup" -h "$pri" -p $pri_port -U postgres -D "$sby/data" -R -X stream --no-sync \
  >"$sby/basebackup.log" 2>&1
ok "pg_basebackup copies the primary" test -f "$sby/data/standby.signal"
cat >>"$sby/data/postgresql.auto.conf" <<EOF
port = $sby_port
unix_socket_directories = '$sby'
synchronous_standby_names = ''
primary_conninfo = 'host=$pri port=$pri_port user=postgres application_name=standby1'
EOF
dasa_cluster_start "$sby"
ok "the standby streams from the primary as its synchronous standby" wait_on "$pri" $pri_port 30 postgres \
   "SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = 'standby1' AND sync_state = 'sync'"
is "$(qs postgres "SELECT pg_is_in_recovery()")" t "the standby is in recovery"

qp postgres "CREATE DATABASE $db" >/dev/null
qp $db "CREATE EXTENSION dasa" >/dev/null
qp $db "
CREATE TABLE effects (inv text NOT NULL);
CREATE FUNCTION fo_insert(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO effects VALUES (args->>'inv');
  PERFORM pg_sleep(0.005);
  RETURN args;
END \$\$;
SELECT count(*) FROM dasa.register('fo_insert', 'fo_insert(jsonb)',
                                   max_attempts => 100, initial_backoff => '10 ms')" >/dev/null
ok "the primary runs a dasa worker for the database" wait_on "$pri" $pri_port 15 postgres \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = '$db'"
ok "and its executors" wait_on "$pri" $pri_port 15 postgres \
   "SELECT count(*) >= 1 FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = '$db'"

t_inv=$(now)
qp $db "SELECT count(dasa.invoke('fo_insert', jsonb_build_object('inv', 'f-' || i), 'f-' || i))
        FROM generate_series(1, $n) i" >/dev/null
ok "some invocations resolve on the primary" wait_on "$pri" $pri_port 60 $db "SELECT $resolved >= 200"

# While the primary runs its invocations: dasa is quiet on the standby, and reads work there.
is "$(dasa_procs "$sby" $sby_port)" 0 "no dasa launcher, worker or executor runs on the standby"
ok "the standby has replayed the $n invocations" wait_on "$sby" $sby_port 15 $db \
   "SELECT count(*) = $n FROM dasa.promises WHERE id LIKE 'f-%'"
is "$(qs $db "SELECT id || ' ' || (value IS NULL OR value = jsonb_build_object('inv', 'f-1'))
              FROM dasa.get_promise('f-1')")" "f-1 true" "dasa.get_promise works on the standby"
is "$(qs $db "SELECT count(*) > 0 FROM effects")" t "and so does a plain read of the effects"
out=$(qs $db "SELECT dasa.invoke('fo_insert', '{\"inv\": \"s-1\"}', 's-1')" 2>&1)
case "$out" in *"read-only transaction"*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "invoking on the standby is refused as a read-only transaction: $(echo "$out" | head -1)"

# kill -9 of the primary's postmaster alone, mid-run; its children notice and exit.
before=$(qp $db "SELECT $resolved")
diag "$before of $n resolved on the primary $(since "$t_inv") s after invoking"
pm=$(head -1 "$pri/data/postmaster.pid")
orphans=$(pgrep -P "$pm" | tr '\n' ' ')
kill -9 "$pm" && crashed=1
ok "the primary is killed mid-run ($before of $n resolved there)" test "$before" -lt $n -a "$crashed" = 1
gone() { local p; for p in $orphans; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
for _ in $(seq 1 600); do gone && break; sleep 0.05; done
ok "every process of the killed primary exits" gone
gone || diag "still alive: $(ps -o pid=,args= -p "$(echo $orphans | tr " " ,)" 2>/dev/null | tr '\n' ';')"
is "$(dasa_procs "$sby" $sby_port)" 0 "the standby is still quiet"

# Promote the standby: the launcher starts there by itself and finishes the work.
replayed=$(qs $db "SELECT $resolved")
t0=$(now)
ok "the standby is promoted" "$bin/pg_ctl" -D "$sby/data" -w -t 60 promote
is "$(qs postgres "SELECT pg_is_in_recovery()")" f "the new primary is out of recovery"
ok "all $n invocations resolve on the new primary" wait_on "$sby" $sby_port 120 $db "SELECT $resolved = $n"
diag "$replayed of $n were resolved on the standby when promoted; the rest took $(since "$t0") s after promote"

is "$(qs $db "SELECT count(*) FROM effects")" $n "exactly $n effect rows"
is "$(qs $db "SELECT count(*) FROM (SELECT inv FROM effects GROUP BY inv HAVING count(*) > 1) d")" 0 \
   "no invocation's effect is there twice"
is "$(qs $db "SELECT count(*) FROM dasa.promises p WHERE p.id LIKE 'f-%'
              AND NOT EXISTS (SELECT FROM effects e WHERE e.inv = p.id)")" 0 \
   "every invocation's effect is there"
is "$(qs $db "SELECT count(*) FROM dasa.promises WHERE id LIKE 'f-%' AND value <> jsonb_build_object('inv', id)")" 0 \
   "each promise holds its own function's value"
is "$(qs $db "SELECT count(*) FILTER (WHERE state = 'completed') || '/' || count(*) FROM dasa.tasks")" "$n/$n" \
   "every task is completed"
is "$(qs postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = '$db'")" 1 \
   "the new primary runs the database's dasa worker"
ok "and its executors" test "$(qs postgres "SELECT count(*) FROM pg_stat_activity
                                             WHERE backend_type = 'dasa executor' AND datname = '$db'")" -ge 1
done_testing
