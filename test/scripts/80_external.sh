#!/usr/bin/env bash
# External workers over SQL: register_external, the NOTIFY on the queue's
# channel after the invoking commit, claim / heartbeat / complete / fail
# fenced by version, retries and rejection, a lease running out with no
# client asking, a killed worker session noticed in seconds, complete
# inside the worker's own transaction (and a stale one rolled back), who
# may work a queue, 4 workers draining 5,000 tasks exactly once, and
# listeners notified when a promise settles.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_external
quiet() { PGOPTIONS='-c client_min_messages=warning' q "$@"; }
# Most claims here are made and completed from different psql sessions:
# they claim with bind_session => false (else the claim would end with the
# claiming session, which the test of a killed worker session shows).
# claim_id ID WORKER [LEASE]: claim (waiting for it to fall due) and print its version.
claim_id() {
  local v deadline=$((SECONDS + 10))
  while [ $SECONDS -lt $deadline ]; do
    v=$(q $db "SELECT version FROM dasa.claim('mailq', '$2', 10, '${3:-30 seconds}', bind_session => false) WHERE id = '$1'")
    [ -n "$v" ] && { echo "$v"; return 0; }
    sleep 0.05
  done
  return 1
}
quiet postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q $db "CREATE TABLE effects (id text PRIMARY KEY)" >/dev/null
q $db "SELECT dasa.register_external('mail', 'mailq', max_attempts => 2, initial_backoff => '100 ms')" >/dev/null
channel=$(q $db "SELECT dasa.queue_channel('mailq')")
is "$(q $db "SELECT length(dasa.queue_channel(repeat('x', 256))) <= 63 AND dasa.queue_channel('a') <> dasa.queue_channel('b')")" t \
   "queue channels are valid channel names for any queue name"

# A listener hears of a new task after the invoking commit, ids only.
fifo=$DASA_WORK/ext-listen.fifo
rm -f "$fifo"; mkfifo "$fifo"
psql -XAtq -d $db <"$fifo" >"$DASA_WORK/ext-listen.out" 2>&1 &
listener=$!
exec 8>"$fifo"
echo "LISTEN $channel;" >&8
sleep 0.3
q $db "SELECT dasa.invoke('mail', '{\"to\": \"ann\"}', 'm-1')" >/dev/null
# (psql prints a notification when it next runs a statement; the database's
# dasa worker may still be starting, so give it time)
for _ in $(seq 1 50); do
  echo "SELECT 1;" >&8
  sleep 0.2
  grep -q "Asynchronous notification" "$DASA_WORK/ext-listen.out" && break
done
exec 8>&-; wait $listener 2>/dev/null; rm -f "$fifo"
ok "a LISTENer of the queue's channel is notified, with the id as payload" \
   grep -q "Asynchronous notification \"$channel\" with payload \"m-1\"" "$DASA_WORK/ext-listen.out"

claim=$(q $db "SELECT id || ' ' || function || ' ' || args::text || ' ' || attempt || ' ' || version FROM dasa.claim('mailq', 'w-1', 10, '30 seconds', bind_session => false)")
is "$claim" 'm-1 mail {"to": "ann"} 1 1' "claim returns the task with its args, attempt 1 and a new version"
is "$(q $db "SELECT count(*) FROM dasa.claim('mailq', 'w-2')")" 0 "a claimed task is not claimed again"
is "$(q $db "SELECT dasa.heartbeat('w-1')")" 1 "heartbeat reports the worker's one claim"
out=$(psql -XAtq -d $db -v VERBOSITY=verbose -c "SELECT dasa.complete('m-1', 0, '\"old\"')" 2>&1)
case "$out" in *DA008*"no longer held"*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "a completion with a stale version is refused (DA008)"
is "$(q $db "SELECT (dasa.complete('m-1', 1, '\"sent\"')).state")" resolved "complete with the claim's version resolves"
is "$(q $db "SELECT value::text || ' ' || (SELECT state FROM dasa.tasks WHERE id = 'm-1') FROM dasa.promises WHERE id = 'm-1'")" \
   '"sent" completed' "with the worker's value; the task is completed"

# fail: retried with backoff, then rejected when attempts run out
q $db "SELECT dasa.invoke('mail', '{}', 'm-2')" >/dev/null
v=$(q $db "SELECT version FROM dasa.claim('mailq', 'w-1', bind_session => false)")
is "$(q $db "SELECT (dasa.fail('m-2', $v, '{\"message\": \"smtp down\", \"code\": 421}')).state")" pending \
   "a failed attempt is retried"
ok "after its backoff the task is claimable again" wait_for 10 $db \
   "SELECT count(*) = 1 FROM dasa.claim('mailq', 'w-1', bind_session => false) WHERE attempt = 2 AND version = $((v + 2))"
v=$((v + 2))
is "$(q $db "SELECT (dasa.fail('m-2', $v, '{\"message\": \"smtp down\"}')).state")" rejected \
   "the last allowed attempt's failure rejects the promise"
is "$(q $db "SELECT (value->>'sqlstate') || ' ' || (value->>'message') FROM dasa.promises WHERE id = 'm-2'")" \
   "DA011 smtp down" "with the worker's message"
is "$(q $db "SELECT string_agg(attempt || ':' || message, ',' ORDER BY attempt) FROM dasa.attempts WHERE task_id = 'm-2'")" \
   "1:smtp down,2:smtp down" "each failed attempt is recorded"
q $db "SELECT dasa.invoke('mail', '{}', 'm-3')" >/dev/null
v=$(q $db "SELECT version FROM dasa.claim('mailq', 'w-1', bind_session => false)")
is "$(q $db "SELECT (dasa.fail('m-3', $v, '{\"message\": \"bad address\"}', retry => false)).state")" rejected \
   "fail with retry => false rejects at once"

# A lease runs out while its worker's session stays: released with no client asking.
q $db "SELECT dasa.invoke('mail', '{}', 'm-4')" >/dev/null
psql -XAtq -d $db -c "SELECT version FROM dasa.claim('mailq', 'w-slow', 1, '1 second')" -c "SELECT pg_sleep(6)" >/dev/null 2>&1 &
holder=$!
ok "the task is claimed" wait_for 10 $db "SELECT state = 'claimed' FROM dasa.tasks WHERE id = 'm-4'"
ok "its lease runs out and it is released as a failed attempt" wait_for 10 $db \
   "SELECT message = 'the worker''s lease ran out' FROM dasa.attempts WHERE task_id = 'm-4' AND attempt = 1"
kill $holder 2>/dev/null; wait $holder 2>/dev/null

# A worker session that dies is noticed in seconds, long before its 1 hour lease.
q $db "SELECT dasa.invoke('mail', '{}', 'm-5')" >/dev/null
q $db "SELECT dasa.cancel('m-4')" >/dev/null
psql -XAtq -d $db -c "SELECT version FROM dasa.claim('mailq', 'w-dead', 5, '1 hour')" -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
holder=$!
ok "the task is claimed for an hour" wait_for 10 $db "SELECT state = 'claimed' AND worker = 'w-dead' FROM dasa.tasks WHERE id = 'm-5'"
started=$SECONDS
q $db "SELECT pg_terminate_backend(backend_pid) FROM dasa.workers WHERE name = 'w-dead'" >/dev/null
ok "pg_terminate_backend of its session: the task is released within seconds" wait_for 10 $db \
   "SELECT state = 'pending' FROM dasa.tasks WHERE id = 'm-5'"
diag "released $((SECONDS - started)) s after the session ended"
wait $holder 2>/dev/null
is "$(q $db "SELECT message FROM dasa.attempts WHERE task_id = 'm-5'")" "the worker's session ended" "recorded as such"

# complete inside the worker's own transaction: effect and result together,
# and a worker whose claim was lost rolls its effect back.
v=$(claim_id m-5 w-1)
psql -XAtq -v ON_ERROR_STOP=1 -d $db >/dev/null <<SQL
BEGIN;
INSERT INTO effects VALUES ('m-5');
SELECT dasa.complete('m-5', $v, '"ok"');
COMMIT;
SQL
is "$(q $db "SELECT count(*) FROM effects WHERE id = 'm-5'") $(q $db "SELECT state FROM dasa.promises WHERE id = 'm-5'")" \
   "1 resolved" "the worker's effect and the result commit together"
q $db "SELECT dasa.invoke('mail', '{}', 'm-6')" >/dev/null
v=$(q $db "SELECT version FROM dasa.claim('mailq', 'w-zombie', 1, '1 second', false)")
psql -XAtq -d $db >/dev/null 2>&1 <<SQL
BEGIN;
INSERT INTO effects VALUES ('m-6');
SELECT pg_sleep(3);
SELECT dasa.complete('m-6', $v, '"zombie"');
COMMIT;
SQL
is "$(q $db "SELECT count(*) FROM effects WHERE id = 'm-6'")" 0 "a zombie's completion fails and its effect rolls back"
v=$(claim_id m-6 w-1)
is "$(q $db "BEGIN; INSERT INTO effects VALUES ('m-6'); SELECT (dasa.complete('m-6', $v, '\"ok\"')).state; COMMIT;")" \
   resolved "the task re-claimed by a live worker completes"
is "$(q $db "SELECT count(*) FROM effects WHERE id = 'm-6'")" 1 "its effect is there once"

# complete_all: a worker's batch in one call; a stale version is left alone.
q $db "SELECT count(dasa.invoke('mail', jsonb_build_object('n', i), 'ma-' || i)) FROM generate_series(1, 5) i" >/dev/null
is "$(q $db "SELECT dasa.complete_all(array_agg(id), array_agg(CASE WHEN id = 'ma-1' THEN version - 1 ELSE version END), array_agg(args))
             FROM dasa.claim('mailq', 'w-batch', 10, '30 seconds', false)")" 4 \
   "complete_all completes the tasks still held at their version"
is "$(q $db "SELECT string_agg(p.id || '=' || coalesce(p.value::text, '-') || '/' || t.state, ' ' ORDER BY p.id) FROM dasa.promises p JOIN dasa.tasks t USING (id) WHERE p.id LIKE 'ma-%'")" \
   'ma-1=-/claimed ma-2={"n": 2}/completed ma-3={"n": 3}/completed ma-4={"n": 4}/completed ma-5={"n": 5}/completed' \
   "each with its own value; the stale one is still claimed"

# Who may work a queue: the role that registered its functions, or its members.
quiet postgres "DROP ROLE IF EXISTS ext_app; DROP ROLE IF EXISTS ext_worker; DROP ROLE IF EXISTS ext_other" >/dev/null
q postgres "CREATE ROLE ext_app; CREATE ROLE ext_worker LOGIN; CREATE ROLE ext_other LOGIN;
            GRANT dasa_user TO ext_app, ext_worker, ext_other; GRANT ext_app TO ext_worker" >/dev/null
q $db "SET ROLE ext_app; SELECT dasa.register_external('bill', 'billq'); SELECT dasa.invoke('bill', '{\"card\": \"4242\"}', 'b-1')" >/dev/null
as_other() { psql -XAtq -d $db -v VERBOSITY=verbose -c "SET ROLE ext_other" -c "$1" 2>&1; }
case "$(as_other "SELECT * FROM dasa.claim('billq', 'o-1')")" in *42501*"belongs to role \"ext_app\""*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "another role may not claim from the queue (42501)"
case "$(as_other "SELECT dasa.register_external('steal', 'billq')")" in *42501*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "nor register a function on it"
case "$(as_other "SELECT dasa.invoke('bill', '{}', 'b-x')")" in *42501*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "nor invoke its functions"
claim=$(psql -XAtq -d $db -c "SET ROLE ext_worker" -c "SELECT id || ' ' || version FROM dasa.claim('billq', 'bw-1', bind_session => false)")
is "$claim" "b-1 1" "a worker role granted the owner's role claims, and sees the args"
case "$(as_other "SELECT dasa.complete('b-1', 1, '1')")" in *42501*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "another role may not complete its task"
case "$(as_other "SELECT dasa.complete_all(ARRAY['b-1'], ARRAY[1::bigint])")" in *42501*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "nor in a batch"
case "$(as_other "SELECT dasa.heartbeat('bw-1')")" in *42501*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "nor heartbeat its worker"
is "$(psql -XAtq -d $db -c "SET ROLE ext_worker" -c "SELECT (dasa.complete('b-1', 1, '\"paid\"')).state")" resolved \
   "the worker role completes it"

# 4 workers drain 5,000 tasks, each completed exactly once.
n=5000
q $db "SELECT dasa.register_external('work', 'bulk', max_attempts => 5)" >/dev/null
q $db "CREATE TABLE bulk_effects (id text NOT NULL)" >/dev/null
for w in 1 2 3 4; do
  psql -XAtq -d $db >/dev/null 2>"$DASA_WORK/ext-worker-$w.err" <<SQL &
DO \$\$
DECLARE r record; n int; idle int := 0;
BEGIN
  LOOP
    n := 0;
    FOR r IN SELECT * FROM dasa.claim('bulk', 'bulk-$w', 50, '30 seconds') LOOP
      INSERT INTO bulk_effects VALUES (r.id);
      PERFORM dasa.complete(r.id, r.version, r.args);
      n := n + 1;
    END LOOP;
    COMMIT;
    IF n = 0 THEN
      idle := idle + 1;
      EXIT WHEN idle > 200;
      PERFORM pg_sleep(0.02);
    ELSE
      idle := 0;
    END IF;
  END LOOP;
END \$\$;
SQL
done
q $db "SELECT count(dasa.invoke('work', jsonb_build_object('i', i), 'bulk-' || i)) FROM generate_series(1, $n) i" >/dev/null
ok "4 workers drain $n tasks" wait_for 120 $db \
   "SELECT count(*) = $n FROM dasa.promises WHERE id LIKE 'bulk-%' AND state = 'resolved'"
wait
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT id) FROM bulk_effects")" "$n $n" "each task's effect exactly once"
is "$(q $db "SELECT count(DISTINCT worker) FROM dasa.tasks WHERE queue = 'bulk'")" 4 "all four workers took part"
# Settlement notifications: a client LISTENs instead of waiting in dasa.await.
q $db "SELECT dasa.create_promise('l-1', '1 hour'); SELECT dasa.create_promise('l-2', '1 second')" >/dev/null
fifo=$DASA_WORK/ext-settled.fifo
rm -f "$fifo"; mkfifo "$fifo"
psql -XAtq -d $db <"$fifo" >"$DASA_WORK/ext-settled.out" 2>&1 &
listener=$!
exec 8>"$fifo"
echo "LISTEN app_settled; SELECT state FROM dasa.notify_on_settle('l-1', 'app_settled'); SELECT state FROM dasa.notify_on_settle('l-2', 'app_settled');" >&8
sleep 0.5
q $db "SELECT dasa.resolve('l-1', '\"done\"')" >/dev/null
sleep 2
echo "SELECT 1;" >&8
sleep 0.3
exec 8>&-; wait $listener 2>/dev/null; rm -f "$fifo"
ok "the commit that resolves a promise notifies its listener's channel" \
   grep -q 'Asynchronous notification "app_settled" with payload "l-1"' "$DASA_WORK/ext-settled.out"
ok "so does its timeout, written by the background worker" \
   grep -q 'Asynchronous notification "app_settled" with payload "l-2"' "$DASA_WORK/ext-settled.out"
is "$(q $db "SELECT count(*) FROM dasa.listeners")" 0 "listeners are gone once notified"
case "$(psql -XAtq -d $db -c "SET ROLE ext_other" -c "SELECT dasa.notify_on_settle('l-1')" 2>&1)" in *"does not exist"*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "a role cannot listen for a promise it may not see"

quiet postgres "DROP DATABASE $db" >/dev/null
q postgres "DROP ROLE ext_app; DROP ROLE ext_worker; DROP ROLE ext_other" >/dev/null
done_testing
