#!/usr/bin/env bash
# dasa-worker, the command-line external worker (clients/): a shell command
# as the handler of 200 tasks (notified, not polled), a failing command's
# stderr as the rejection, kill -9 of dasa-worker mid-task (the task runs
# again on another worker, its effect there once), pg_terminate_backend of
# its connection and an immediate shutdown and restart of the server (the
# workers connect again and drain the queue), SIGTERM (it finishes its
# running task, claims no more, exits 0), and a run under valgrind.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_worker_cli
# DASA_WORKER_BIN: another build to test (as one with sanitizers: then no valgrind run).
dw=${DASA_WORKER_BIN:-$("$PGBIN/pg_config" --bindir)/dasa-worker}
pg_ctl=$PGBIN/pg_ctl
w=$DASA_WORK/dasa-worker
unset PGAPPNAME       # the workers' connections are found by application_name (their worker name)
export DASA_TEST_DB=$db
quiet() { PGOPTIONS='-c client_min_messages=warning' q "$@"; }
rm -rf "$w"; mkdir -p "$w"

started=""   # the workers this script started, killed at exit if still there
cleanup() {
  local pid
  for pid in $started; do kill -9 "$pid" 2>/dev/null; done
  if [ "$tap_failed" != 0 ]; then
    for f in "$w"/*.log; do
      [ -f "$f" ] && { diag "$f ends:"; tail -8 "$f" | sed 's/^/#   /' >&2; }
    done
  fi
}
trap cleanup EXIT

# The handler: what it does depends on the function.
cat >"$w/handler.sh" <<'SH'
#!/bin/sh
args=$(cat)
case "$DASA_FUNCTION" in
  echo|vecho) printf '{"got": %s, "id": "%s", "attempt": %s}\n' "$args" "$DASA_TASK_ID" "$DASA_ATTEMPT" ;;
  boom|vboom) echo "boom" >&2; exit 3 ;;
  text) echo "plain text" ;;
  nap) sleep 0.1; printf '%s\n' "$args" ;;
  slow)   # its effect at the end, once per task whatever the attempt
    sleep 1.5
    psql -XAtq -v ON_ERROR_STOP=1 -d "$DASA_TEST_DB" \
      -c "INSERT INTO effects VALUES ('$DASA_TASK_ID', $DASA_ATTEMPT) ON CONFLICT (id) DO NOTHING" >/dev/null || exit 1
    printf '{"slow": "%s"}\n' "$DASA_TASK_ID" ;;
  *) echo "unknown function $DASA_FUNCTION" >&2; exit 1 ;;
esac
SH
chmod 755 "$w/handler.sh"

# start_worker NAME [OPTION]...: dasa-worker in the background as worker NAME; its pid in $pid.
start_worker() {
  local name=$1; shift
  "$dw" --dsn "dbname=$db" --name "$name" "$@" -- "$w/handler.sh" >>"$w/$name.log" 2>&1 &
  pid=$!
  started="$started $pid"
}
alive() { kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 /proc/"$1"/stat 2>/dev/null)" != Z ]; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# stop_worker PID [SECONDS]: SIGTERM, then wait_exit.
stop_worker() { kill -TERM "$1" 2>/dev/null; wait_exit "$@"; }
# wait_exit PID [SECONDS]: wait for it (10 s at most: then kill -9, status 124); its status in $rc.
wait_exit() {
  local i=0 limit=$((${2:-10} * 20))
  while alive "$1" && [ $i -lt $limit ]; do sleep 0.05; i=$((i + 1)); done
  if alive "$1"; then kill -9 "$1"; wait "$1" 2>/dev/null; rc=124; else wait "$1"; rc=$?; fi
  forget "$1"
}
forget() { started=$(echo "$started" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' '); }
# until_worker NAME: wait until worker NAME has claimed (or tried to) once.
until_worker() { wait_for 10 $db "SELECT count(*) = 1 FROM dasa.workers WHERE name = '$1'"; }
resolved() { q $db "SELECT count(*) FROM dasa.promises WHERE id LIKE '$1%' AND state = 'resolved'"; }

quiet postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q $db "CREATE TABLE effects (id text PRIMARY KEY, attempt int NOT NULL)" >/dev/null
q $db "SELECT count(*) FROM (
         SELECT dasa.register_external('echo', 'cli', max_attempts => 2, initial_backoff => '100 ms')
         UNION ALL SELECT dasa.register_external('boom', 'cli', max_attempts => 2, initial_backoff => '100 ms')
         UNION ALL SELECT dasa.register_external('text', 'cli')
         UNION ALL SELECT dasa.register_external('slow', 'slowq', max_attempts => 3, initial_backoff => '100 ms')
         UNION ALL SELECT dasa.register_external('nap', 'napq', max_attempts => 10, initial_backoff => '100 ms')
         UNION ALL SELECT dasa.register_external('vecho', 'vq', max_attempts => 5, initial_backoff => '100 ms')
         UNION ALL SELECT dasa.register_external('vboom', 'vq', max_attempts => 1)) r" >/dev/null
ok "dasa-worker is installed in PostgreSQL's bindir" test -x "$dw"
"$dw" --queue cli >/dev/null 2>&1; usage_rc=$?
is "$usage_rc" 2 "a usage error (no command) exits 2"

# (a) 200 tasks through a shell command, claimed on notification (it polls every 30 s only).
start_worker cli-a --queue cli --concurrency 4 --poll 30
wa=$pid
ok "the worker connects and looks for work" until_worker cli-a
t0=$(now_ms)
q $db "SELECT count(dasa.invoke('echo', jsonb_build_object('i', i, 's', 'x\"y'), 'a-' || i)) FROM generate_series(1, 200) i" >/dev/null
q $db "SELECT dasa.invoke('boom', '{}', 'a-boom'), dasa.invoke('text', '{}', 'a-text')" >/dev/null
ok "200 tasks resolve, long before the worker's next poll" wait_for 20 $db \
   "SELECT count(*) = 200 FROM dasa.promises WHERE id LIKE 'a-%' AND id ~ '^a-[0-9]+$' AND state = 'resolved'"
diag "200 tasks in $(($(now_ms) - t0)) ms"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id ~ '^a-[0-9]+$'
             AND value = jsonb_build_object('got', param, 'id', id, 'attempt', 1)")" 200 \
   "each with the command's output for its own args (on stdin) and id and attempt (in its environment)"
ok "the failing command's task is rejected once its attempts run out" wait_for 10 $db \
   "SELECT state = 'rejected' FROM dasa.promises WHERE id = 'a-boom'"
is "$(q $db "SELECT (value->>'message') || ' ' || (value->>'attempts') || ' ' || ((value->>'detail')::jsonb->>'exit_code') FROM dasa.promises WHERE id = 'a-boom'")" \
   "boom 2 3" "with its stderr as the message, after 2 attempts, and its exit code"
is "$(q $db "SELECT value::text FROM dasa.promises WHERE id = 'a-text'")" '"plain text"' \
   "output that is not JSON resolves as a JSON string"
stop_worker $wa; is "$rc" 0 "SIGTERM: the idle worker exits 0"

# (b) kill -9 of dasa-worker mid-task: the task runs again on another worker.
start_worker cli-b1 --queue slowq
wb1=$pid
q $db "SELECT dasa.invoke('slow', '{}', 'b-1')" >/dev/null
ok "the slow task is claimed" wait_for 10 $db "SELECT state = 'claimed' AND worker = 'cli-b1' FROM dasa.tasks WHERE id = 'b-1'"
sleep 0.3
kill -9 $wb1; wait $wb1 2>/dev/null; forget $wb1
t0=$(now_ms)
start_worker cli-b2 --queue slowq
wb2=$pid
ok "after kill -9 of its worker the task is claimed by another" wait_for 10 $db \
   "SELECT state = 'claimed' AND worker = 'cli-b2' FROM dasa.tasks WHERE id = 'b-1'"
diag "re-delivered $(($(now_ms) - t0)) ms after the kill"
ok "and completed" wait_for 10 $db "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'b-1'"
is "$(q $db "SELECT message FROM dasa.attempts WHERE task_id = 'b-1' AND attempt = 1")" "the worker's session ended" \
   "its first attempt was released when the killed worker's session ended"
is "$(q $db "SELECT count(*) || ' ' || min(attempt) FROM effects WHERE id = 'b-1'")" "1 2" \
   "its effect is there once, from the second attempt (the first's command was stopped with its worker)"

# (c) pg_terminate_backend of the worker's connection: it connects again and drains the queue.
start_worker cli-c --queue napq --concurrency 4
wc=$pid
q $db "SELECT count(dasa.invoke('nap', jsonb_build_object('i', i), 'c-' || i)) FROM generate_series(1, 100) i" >/dev/null
ok "the worker starts on the queue" wait_for 10 $db "SELECT count(*) >= 10 FROM dasa.promises WHERE id LIKE 'c-%' AND state = 'resolved'"
terminated=0
for round in 1 2; do
  wait_for 10 postgres "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'cli-c'"
  n=$(q postgres "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'cli-c'")
  terminated=$((terminated + n))
  sleep 0.7
done
is "$terminated" 2 "its connection was terminated twice"
ok "it drains the queue" wait_for 30 $db "SELECT count(*) = 100 FROM dasa.promises WHERE id LIKE 'c-%' AND state = 'resolved'"
ok "it said it connected again" grep -q "connected again" "$w/cli-c.log"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id LIKE 'c-%' AND value <> param")" 0 "each task with its own value"
ok "and still runs" alive $wc

# (d) an immediate shutdown and restart of the server while two workers run.
start_worker cli-d1 --queue napq --concurrency 2
wd1=$pid
q $db "SELECT count(dasa.invoke('nap', jsonb_build_object('i', i), 'd-' || i)) FROM generate_series(1, 100) i" >/dev/null
ok "the workers start on the queue" wait_for 10 $db "SELECT count(*) >= 10 FROM dasa.promises WHERE id LIKE 'd-%' AND state = 'resolved'"
before=$(resolved d-)
"$pg_ctl" -D "$DASA_PGDATA" -m immediate -w stop >/dev/null
"$pg_ctl" -D "$DASA_PGDATA" -l "$DASA_WORK/server.log" -w start >/dev/null
ok "the server is back" wait_ready 60
ok "the shutdown came mid-queue ($before of 100 resolved)" test "$before" -lt 100
ok "the workers connect again and drain the queue" wait_for 40 $db \
   "SELECT count(*) = 100 FROM dasa.promises WHERE id LIKE 'd-%' AND state = 'resolved'"
ok "both took part" wait_for 1 $db \
   "SELECT count(DISTINCT worker) = 2 FROM dasa.tasks WHERE id LIKE 'd-%'"
both_alive() { alive "$1" && alive "$2"; }
ok "both are still running" both_alive $wc $wd1
stop_worker $wc; rc_c=$rc
stop_worker $wd1
is "$rc_c $rc" "0 0" "both exit 0 on SIGTERM"
stop_worker $wb2; is "$rc" 0 "as does the one of (b)"

# (e) SIGTERM mid-task: it finishes the task, claims no more, and exits 0.
start_worker cli-e --queue slowq --concurrency 2
we=$pid
q $db "SELECT dasa.invoke('slow', '{}', 'e-1')" >/dev/null
ok "the slow task is claimed" wait_for 10 $db "SELECT state = 'claimed' AND worker = 'cli-e' FROM dasa.tasks WHERE id = 'e-1'"
sleep 0.3
t0=$(now_ms)
kill -TERM $we
q $db "SELECT dasa.invoke('slow', '{}', 'e-2')" >/dev/null
wait_exit $we 10
took=$(($(now_ms) - t0))
is "$rc" 0 "SIGTERM while a command runs: dasa-worker exits 0"
ok "promptly, once the command finished ($took ms)" test $took -lt 3500
is "$(q $db "SELECT p.state || ' ' || t.worker || ' ' || t.attempt FROM dasa.promises p JOIN dasa.tasks t USING (id) WHERE id = 'e-1'")" \
   "resolved cli-e 1" "it completed the running task first"
is "$(q $db "SELECT state FROM dasa.tasks WHERE id = 'e-2'")" pending "and claimed no other"

# (e2) SIGTERM with a grace shorter than the task: the task is given back, no attempt spent.
start_worker cli-g --queue slowq --grace 0.2
wg=$pid
q $db "SELECT dasa.invoke('slow', '{}', 'g-1')" >/dev/null
ok "the slow task is claimed" wait_for 10 $db "SELECT state = 'claimed' AND worker = 'cli-g' FROM dasa.tasks WHERE id = 'g-1'"
version=$(q $db "SELECT version FROM dasa.tasks WHERE id = 'g-1'")
kill -TERM $wg
wait_exit $wg 10
is "$rc" 0 "SIGTERM past the grace: dasa-worker stops the command and exits 0"
is "$(q $db "SELECT state || ' ' || attempt || ' ' || (version > $version) || ' ' || (SELECT count(*) FROM dasa.attempts WHERE task_id = 'g-1') FROM dasa.tasks WHERE id = 'g-1'")" \
   "pending 0 true 0" "the stopped task is released: due again, no attempt spent, no failure recorded"
ok "... and logged as released" grep -q "task g-1: dasa-worker stopped before the command finished; released" "$w/cli-g.log"

# (f) under valgrind: 20 tasks, a failure, a terminated connection, then SIGTERM.
if [ -n "${DASA_WORKER_BIN:-}" ]; then
  _tap_result 0 "valgrind run # SKIP testing DASA_WORKER_BIN"
elif [ -x /usr/bin/valgrind ]; then
  /usr/bin/valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    --log-file="$w/valgrind.log" \
    "$dw" --dsn "dbname=$db" --name cli-v --queue vq --concurrency 2 -- "$w/handler.sh" >"$w/cli-v.log" 2>&1 &
  wv=$!
  started="$started $wv"
  ok "dasa-worker starts under valgrind" until_worker cli-v
  q $db "SELECT count(dasa.invoke('vecho', jsonb_build_object('i', i), 'v-' || i)) FROM generate_series(1, 10) i" >/dev/null
  q $db "SELECT dasa.invoke('vboom', '{}', 'v-boom')" >/dev/null
  ok "it works the first tasks" wait_for 30 $db "SELECT count(*) = 10 FROM dasa.promises WHERE id LIKE 'v-%' AND state = 'resolved'"
  q postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cli-v'" >/dev/null
  q $db "SELECT count(dasa.invoke('vecho', jsonb_build_object('i', i), 'v-' || i)) FROM generate_series(11, 20) i" >/dev/null
  ok "and, connected again, the others" wait_for 30 $db \
     "SELECT count(*) = 20 FROM dasa.promises WHERE id LIKE 'v-%' AND state = 'resolved'"
  ok "the failing one is rejected" wait_for 10 $db "SELECT state = 'rejected' FROM dasa.promises WHERE id = 'v-boom'"
  stop_worker $wv 20
  is "$rc" 0 "after SIGTERM it exits 0, valgrind finding no error and no definite leak"
  [ "$rc" = 0 ] || { diag "valgrind says:"; sed 's/^/#   /' "$w/valgrind.log" | tail -40 >&2; }
else
  _tap_result 0 "valgrind run # SKIP valgrind is not installed"
fi

quiet postgres "DROP DATABASE $db" >/dev/null
done_testing
