#!/usr/bin/env bash
# The settlement kernel on deep trees: a 20,000-deep chain of invocations
# cancelled at its root in one statement, and another ended by its root's
# deadline; a 1,000-deep chain of auto-named children (ids stay within the
# limit and deterministic); and an operator's cancel of an executor, which
# ends the running attempt and never the executor.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap
depth=20000

q $db "
-- a chain: level n invokes level n - 1 under an explicit id and awaits it;
-- the bottom waits for a person who never answers
CREATE FUNCTION kn_chain(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE n int := (args->>'n')::int; tag text := args->>'tag';
BEGIN
  IF n = 0 THEN
    PERFORM dasa.create_promise(tag || '-person', '1 day');
    RETURN dasa.await(tag || '-person');
  END IF;
  RETURN dasa.await(dasa.invoke('kn_chain', jsonb_build_object('n', n - 1, 'tag', tag), tag || '-' || (n - 1)));
END \$\$;
-- the same with auto-named children; returns its depth
CREATE FUNCTION kn_auto(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE n int := (args->>'n')::int;
BEGIN
  IF n = 0 THEN RETURN '0'; END IF;
  RETURN to_jsonb(dasa.await(dasa.invoke('kn_auto', jsonb_build_object('n', n - 1)))::int + 1);
END \$\$;
CREATE FUNCTION kn_sleep(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM pg_sleep((args->>'seconds')::float);
  RETURN '\"slept\"';
END \$\$;
SELECT count(*) FROM (
  SELECT dasa.register('kn_chain', 'kn_chain(jsonb)', timeout => '1 day')
  UNION ALL SELECT dasa.register('kn_auto', 'kn_auto(jsonb)')
  UNION ALL SELECT dasa.register('kn_sleep', 'kn_sleep(jsonb)', max_attempts => 2,
                                 initial_backoff => '0 s', max_backoff => '0 s')) r" >/dev/null

# chain TAG TIMEOUT: start a chain of $depth levels under TAG; seconds it took to reach the bottom
chain() {
  local start=$SECONDS
  q $db "SELECT dasa.invoke('kn_chain', jsonb_build_object('n', $depth, 'tag', '$1'), '$1-$depth', '$2')" >/dev/null
  wait_for 300 $db "SELECT count(*) = 1 FROM dasa.promises WHERE id = '$1-person'" || return 1
  echo $((SECONDS - start + 1))
}
# tree_state TAG: promise states, unfinished tasks and callbacks of the chain
tree_state() {
  q $db "SELECT (SELECT string_agg(state || ' ' || n, ', ' ORDER BY state) FROM (
                   SELECT state, count(*) n FROM dasa.promises WHERE root_id = '$1-$depth' OR id = '$1-$depth'
                   GROUP BY state) s)
             || ' | unfinished tasks ' || (SELECT count(*) FROM dasa.tasks WHERE id LIKE '$1-%' AND state <> 'completed')
             || ' | callbacks ' || (SELECT count(*) FROM dasa.callbacks WHERE task_id LIKE '$1-%' OR promise_id LIKE '$1-%')
             || ' | suspended on ' || (SELECT coalesce(sum(blocked), 0) FROM dasa.tasks WHERE id LIKE '$1-%' AND state = 'suspended')"
}

took=$(chain kc '1 day')
diag "chain of $depth built in ${took:-?} s"
ok "a chain of $depth invocations, each awaiting the next, reaches the bottom (${took:-?} s)" test -n "$took"
is "$(tree_state kc)" "pending $((depth + 2)) | unfinished tasks $((depth + 1)) | callbacks 0 | suspended on $((depth + 1))" \
   "every level is pending, suspended on its one child (counted against it, no callback row)"
t0=$SECONDS
is "$(q $db "SELECT state FROM dasa.cancel('kc-$depth')")" rejected_canceled "cancelling the root is one statement"
diag "cancelling it took $((SECONDS - t0)) s or less"
is "$(tree_state kc)" "rejected_canceled $((depth + 2)) | unfinished tasks 0 | callbacks 0 | suspended on 0" \
   "every level is cancelled, no task left unfinished, no callback left"

# The same tree ended by its root's deadline: set so that building it fits,
# with room to spare on a slow machine.
deadline=$(( ${took:-10} * 2 + 5 ))
started=$SECONDS
took=$(chain kd "$deadline seconds")
ok "a second chain of $depth levels, with a $deadline s deadline, reaches the bottom before it" test -n "$took"
ok "when the root's deadline passes, the worker settles the whole tree" \
   wait_for $((deadline + 60)) $db "SELECT count(*) = 0 FROM dasa.promises WHERE (root_id = 'kd-$depth' OR id = 'kd-$depth') AND state = 'pending'"
diag "the timed-out tree was settled within $((SECONDS - started - deadline + 1)) s of its deadline"
is "$(tree_state kd)" "rejected_timedout $((depth + 2)) | unfinished tasks 0 | callbacks 0 | suspended on 0" \
   "every level timed out, no task left unfinished, no callback left"

# 1,000 levels of auto-named children: "<parent>.1" would pass the id limit
# near level 510; deeper ids take a bounded, deterministic form instead
q $db "SELECT dasa.invoke('kn_auto', '{\"n\": 1000}', 'ka')" >/dev/null
ok "a 1,000-deep chain of auto-named children settles" \
   wait_for 120 $db "SELECT state <> 'pending' FROM dasa.get_promise('ka')"
is "$(q $db "SELECT state || ' ' || value FROM dasa.get_promise('ka')")" "resolved 1000" "with the right result"
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || (max(octet_length(id)) <= 1024)
             FROM dasa.promises WHERE root_id = 'ka'")" "1000 1000 true" \
   "1,000 distinct children, every id within 1,024 bytes"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE root_id = 'ka' AND id LIKE 'ka~%'")" 489 \
   "the 489 deepest are named <root>~<hash of the parent>.<n>"
is "$(q $db "SELECT sum(replays) FROM dasa.tasks WHERE id = 'ka' OR id IN (SELECT id FROM dasa.promises WHERE root_id = 'ka')")" 1000 \
   "each level suspended once and found its child again when it replayed"

# An operator's cancel of an executor: the attempt it runs fails (and is
# retried), the executor itself goes on; a cancel of an idle executor is harmless.
q $db "SELECT dasa.invoke('kn_sleep', '{\"seconds\": 3}', 'kcancel')" >/dev/null
ok "a slow attempt is running" wait_for 20 $db "SELECT count(*) = 1 FROM dasa.executors() WHERE task_id = 'kcancel'"
pid=$(q $db "SELECT pid FROM dasa.executors() WHERE task_id = 'kcancel'")
q $db "SELECT pg_cancel_backend($pid)" >/dev/null
ok "the cancelled attempt is retried and the invocation resolves" \
   wait_for 30 $db "SELECT state = 'resolved' FROM dasa.get_promise('kcancel')"
is "$(q $db "SELECT sqlstate || ' ' || message FROM dasa.attempts WHERE task_id = 'kcancel'")" \
   "57014 canceling statement due to user request" "the cancel was recorded as that attempt's failure"
is "$(q $db "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid")" 1 "the executor did not exit"
idle=$(q $db "SELECT pid FROM dasa.executors() WHERE task_id IS NULL AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1")
q $db "SELECT pg_cancel_backend($idle)" >/dev/null
sleep 0.5
is "$(q $db "SELECT count(*) FROM pg_stat_activity WHERE pid = $idle")" 1 "cancelling an idle executor does not end it"
q $db "SELECT dasa.invoke('kn_auto', '{\"n\": 1}', 'kafter')" >/dev/null
ok "and invocations still run" wait_for 20 $db "SELECT state = 'resolved' FROM dasa.get_promise('kafter')"
done_testing
