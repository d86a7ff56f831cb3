#!/usr/bin/env bash
# Flat cost: with 100,000 settled promises in history (50,000 invocations,
# 50,000 plain promises), none of the paths that run all the time reads
# that history. While the test drives them all (invoke and the executors'
# claims, settling, workflows with children: fan-out, chains, timers, a
# human approval; awaits from sessions, timeouts swept, cancels, retries,
# an external queue: claim, complete, fail; a schedule firing), no dasa
# table is read sequentially, and the rows read from dasa.promises and
# dasa.tasks stay a small multiple of the ~1,000 promises the workload
# makes (pg_stat_user_tables), where one read of the history would be
# 50,000 or more. (The figure swings between runs, 6,000 to 14,000 for
# about 1,000 promises made, with the timing of retries, timers and polls.) (The test's own polls read by key or through the
# partial index of pending promises.) Then a purge of the aged history
# reads it by index too.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_flat
n=50000

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q $db "
CREATE FUNCTION noop(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT a';
CREATE FUNCTION flaky(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  IF random() < 0.5 THEN RAISE EXCEPTION 'flaky'; END IF;
  RETURN a;
END \$\$;
CREATE FUNCTION flow(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE total int := 0;
BEGIN
  FOR i IN 1..3 LOOP
    total := total + (dasa.await(dasa.invoke('noop', jsonb_build_object('i', i)))->>'i')::int;
  END LOOP;
  PERFORM dasa.await_all(ARRAY(SELECT dasa.invoke('noop', jsonb_build_object('j', j)) FROM generate_series(1, 5) j));
  PERFORM dasa.sleep('10 ms');
  PERFORM dasa.await(a->>'approval');
  RETURN to_jsonb(total);
END \$\$;
SELECT count(*) FROM (SELECT dasa.register('noop', 'noop(jsonb)') UNION ALL
  SELECT dasa.register('flaky', 'flaky(jsonb)', max_attempts => 10, initial_backoff => '10 ms') UNION ALL
  SELECT dasa.register('flow', 'flow(jsonb)') UNION ALL
  SELECT dasa.register_external('mailer', 'mailq')) r;" >/dev/null

# History: settled invocations and plain promises, half of them aged past any cut-off.
q $db "SELECT count(dasa.invoke('noop', jsonb_build_object('i', i), 'h-' || i)) FROM generate_series(1, $n) i" >/dev/null
q $db "SELECT count(dasa.resolve((dasa.create_promise('hp-' || i, '1 day')).id)) FROM generate_series(1, $n) i" >/dev/null
ok "the history settles" wait_for 120 $db "SELECT count(*) = 0 FROM dasa.promises WHERE state = 'pending'"
q $db "UPDATE dasa.promises SET settled_at = settled_at - interval '3 days' WHERE id LIKE 'h%-1%'" >/dev/null
q $db "VACUUM ANALYZE" >/dev/null

scans() {
  q $db "SELECT string_agg(relname || '=' || seq_scan, ' ' ORDER BY relname) FROM pg_stat_user_tables
         WHERE schemaname = 'dasa' AND relname IN ('promises', 'tasks', 'callbacks', 'attempts', 'holds', 'listeners')"
}
rows_read() {
  q $db "SELECT sum(seq_tup_read + coalesce(idx_tup_fetch, 0)) FROM pg_stat_user_tables
         WHERE schemaname = 'dasa' AND relname IN ('promises', 'tasks')"
}
# The test's polls: by key, or through the partial index of pending promises;
# every 250 ms, as their own reads count in the rows read below.
wait_for() {
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(psql -XAtq -d "$2" -c "$3" 2>/dev/null)" = t ] && return 0
    sleep 0.25
  done
  return 1
}
export PGOPTIONS='-c enable_seqscan=off'
sleep 1
before=$(scans)
read_before=$(rows_read)
diag "sequential scans before: $before"

# The hot paths, with the history in place.
q $db "SELECT dasa.create_promise('approval-' || i, '1 hour') FROM generate_series(1, 20) i" >/dev/null
q $db "SELECT count(dasa.invoke('flow', jsonb_build_object('approval', 'approval-' || i), 'flow-' || i)) FROM generate_series(1, 20) i" >/dev/null
q $db "SELECT count(dasa.invoke('noop', jsonb_build_object('i', i))) FROM generate_series(1, 500) i" >/dev/null
q $db "SELECT count(dasa.invoke('flaky', jsonb_build_object('i', i))) FROM generate_series(1, 50) i" >/dev/null
q $db "SELECT dasa.create_promise('short-' || i, '50 ms') FROM generate_series(1, 50) i" >/dev/null
q $db "SELECT dasa.cancel((dasa.create_promise('cancelled-' || i, '1 hour')).id) FROM generate_series(1, 20) i" >/dev/null
q $db "SELECT dasa.schedule('often', '1 second', 'noop')" >/dev/null
q $db "SELECT count(dasa.invoke('mailer', jsonb_build_object('to', i))) FROM generate_series(1, 20) i" >/dev/null
ok "the workflows reach their approvals" \
   wait_for 60 $db "SELECT count(*) = 20 FROM dasa.tasks WHERE id >= 'flow-' AND id < 'flow.' AND state = 'suspended' AND replays > 1"
q $db "SELECT dasa.resolve('approval-' || i) FROM generate_series(1, 20) i" >/dev/null
is "$(q $db "SELECT count(*) FROM dasa.claim('mailq', 'w1', 10, bind_session => false)")" 10 "an external worker claims"
q $db "SELECT dasa.complete(id, version, '{}') FROM dasa.claim('mailq', 'w1', 5, bind_session => false)" >/dev/null
q $db "SELECT dasa.fail(id, version, '{\"message\": \"no\"}') FROM dasa.claim('mailq', 'w1', 5, bind_session => false)" >/dev/null
is "$(q $db "SELECT dasa.await('h-27')")" '{"i": 27}' "a session awaits a settled invocation"
ok "everything in-database settles" wait_for 60 $db \
   "SELECT count(*) = 0 FROM dasa.promises p WHERE p.settled_at IS NULL AND p.timeout_at > now() - interval '1 year'
      AND NOT EXISTS (SELECT FROM dasa.tasks t WHERE t.id = p.id AND t.queue IS NOT NULL)"
ok "the short promises time out" wait_for 30 $db \
   "SELECT bool_and(state = 'rejected_timedout') FROM dasa.promises WHERE id >= 'short-' AND id < 'short.'"
ok "the schedule fired" wait_for 30 $db "SELECT count(*) >= 2 FROM dasa.promises WHERE id >= 'often:' AND id < 'often;'"
q $db "SELECT dasa.unschedule('often')" >/dev/null
sleep 1   # (statistics reach pg_stat_user_tables within a second or so)
after=$(scans)
read=$(( $(rows_read) - read_before ))
diag "sequential scans after:  $after; rows read from dasa.promises and dasa.tasks: $read"
is "$after" "$before" "no dasa table was read sequentially"
ok "the rows read ($read) stay under 20,000: the 100,000 of history were not read" test "$read" -lt 20000
unset PGOPTIONS
ok "a purge removes the history settled 3 days ago" test "$(q $db "SELECT dasa.purge('1 day')")" -gt 1000
sleep 1
is "$(scans)" "$before" "and reads no dasa table sequentially either"

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE $db WITH (FORCE)" >/dev/null
done_testing
