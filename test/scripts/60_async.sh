#!/usr/bin/env bash
# Async/await inside functions: children named by position, fan-out and
# fan-in, recursion through durable children, suspension that user code
# cannot swallow, durable sleep, promises settled from outside (human in the
# loop), cancellation and timeouts down the tree, non-deterministic replay.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap

q $db "
CREATE TABLE as_effects (invocation text, note text);

-- one child: records that it ran (its invocation id), returns n * 10
CREATE FUNCTION as_child(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO as_effects VALUES (dasa.current_invocation(), 'child');
  RETURN to_jsonb((args->>'n')::int * 10);
END \$\$;

-- fan-out: invoke n children, then await each in turn and sum
CREATE FUNCTION as_fan(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE ids text[] := '{}'; total int := 0; i int;
BEGIN
  INSERT INTO as_effects VALUES (dasa.current_invocation(), 'parent attempt');
  FOR i IN 1..(args->>'n')::int LOOP
    ids := ids || dasa.invoke('as_child', jsonb_build_object('n', i));
  END LOOP;
  FOR i IN 1..array_length(ids, 1) LOOP
    total := total + dasa.await(ids[i])::int;
  END LOOP;
  RETURN to_jsonb(total);
END \$\$;

-- recursion through durable children
CREATE FUNCTION as_fib(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE n int := (args->>'n')::int; a text; b text;
BEGIN
  IF n < 2 THEN RETURN to_jsonb(n); END IF;
  a := dasa.invoke('as_fib', jsonb_build_object('n', n - 1));
  b := dasa.invoke('as_fib', jsonb_build_object('n', n - 2));
  RETURN to_jsonb(dasa.await(a)::int + dasa.await(b)::int);
END \$\$;

-- catches everything around the await, and still gets the real value later
CREATE FUNCTION as_catcher(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE v jsonb;
BEGIN
  BEGIN
    v := dasa.await(dasa.invoke('as_child', '{\"n\": 7}'));
  EXCEPTION WHEN OTHERS THEN
    v := '\"swallowed\"';
  END;
  RETURN jsonb_build_object('got', v);
END \$\$;

-- sleeps durably, reports when it woke
CREATE FUNCTION as_sleeper(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM dasa.sleep(make_interval(secs => (args->>'seconds')::float));
  RETURN jsonb_build_object('woke', clock_timestamp());
END \$\$;

-- waits for a person: a promise with an id someone outside knows
CREATE FUNCTION as_approval(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE ask text := 'approve-' || (args->>'order');
BEGIN
  PERFORM dasa.create_promise(ask, '1 hour');
  RETURN jsonb_build_object('decision', dasa.await(ask));
END \$\$;

-- starts a long child and a human promise, then waits
CREATE FUNCTION as_waiter(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM dasa.invoke('as_sleeper', '{\"seconds\": 3600}');
  PERFORM dasa.create_promise(dasa.current_invocation() || '.human', '1 hour');
  RETURN dasa.await_any(ARRAY[dasa.current_invocation() || '.1', dasa.current_invocation() || '.human']);
END \$\$;

-- changes what it calls at position 1 from one run to the next
CREATE FUNCTION as_fickle(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  IF nextval('as_fickle_runs') = 1 THEN
    -- a child that suspends (a quick one would run inside this attempt)
    RETURN dasa.await(dasa.invoke('as_sleeper', '{\"seconds\": 0.1}'));
  END IF;
  RETURN dasa.await(dasa.invoke('as_fib', '{\"n\": 1}'));
END \$\$;
CREATE SEQUENCE as_fickle_runs;

-- works for a while, with an effect
CREATE FUNCTION as_busy(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO as_effects VALUES (dasa.current_invocation(), 'busy');
  PERFORM pg_sleep(4);
  RETURN '\"done\"';
END \$\$;

SELECT count(*) FROM (
  SELECT dasa.register('as_child', 'as_child(jsonb)')
  UNION ALL SELECT dasa.register('as_fan', 'as_fan(jsonb)')
  UNION ALL SELECT dasa.register('as_fib', 'as_fib(jsonb)')
  UNION ALL SELECT dasa.register('as_catcher', 'as_catcher(jsonb)')
  UNION ALL SELECT dasa.register('as_sleeper', 'as_sleeper(jsonb)')
  UNION ALL SELECT dasa.register('as_approval', 'as_approval(jsonb)')
  UNION ALL SELECT dasa.register('as_waiter', 'as_waiter(jsonb)')
  UNION ALL SELECT dasa.register('as_fickle', 'as_fickle(jsonb)', max_attempts => 5)
  UNION ALL SELECT dasa.register('as_busy', 'as_busy(jsonb)')) r" >/dev/null

settled() { wait_for "${2:-60}" $db "SELECT state <> 'pending' FROM dasa.get_promise('$1')"; }
value() { q $db "SELECT state || ' ' || coalesce(value::text, 'null') FROM dasa.get_promise('$1')"; }

# fan-out of 100 children, summed by the parent
q $db "SELECT dasa.invoke('as_fan', '{\"n\": 100}', 'fan')" >/dev/null
ok "a fan-out of 100 children settles" settled fan
is "$(value fan)" "resolved 50500" "the parent sums its 100 children's values (10 + 20 + ... + 1000)"
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT invocation) FROM as_effects WHERE note = 'child' AND invocation LIKE 'fan.%'")" "100 100" \
   "each child's effect is there exactly once"
is "$(q $db "SELECT string_agg(id, ',' ORDER BY id) FROM (SELECT id FROM dasa.promises WHERE parent_id = 'fan' ORDER BY id LIMIT 3) s")" "fan.1,fan.10,fan.100" \
   "children are named <parent>.<n>"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE parent_id = 'fan' AND root_id = 'fan'")" 100 "and record parent and root"
is "$(q $db "SELECT replays FROM dasa.tasks WHERE id = 'fan'")" 1 \
   "awaiting 100 pending children one by one costs one replay, not one per child"
is "$(q $db "SELECT count(*) FROM as_effects WHERE invocation = 'fan' AND note = 'parent attempt'")" 1 \
   "the suspended attempt's own effects were rolled back (only the final attempt's remain)"

# recursion through durable children
q $db "SELECT dasa.invoke('as_fib', '{\"n\": 15}', 'fib')" >/dev/null
ok "fib(15) through durable children settles" settled fib 120
is "$(value fib)" "resolved 610" "with the right result"
is "$(q $db "SELECT count(*) FROM dasa.call_tree('fib')")" 1973 "the call tree holds all 1973 invocations"
is "$(q $db "SELECT max(depth) FROM dasa.call_tree('fib')")" 14 "14 levels deep"

# a catch-all around the await does not swallow the suspension
q $db "SELECT dasa.invoke('as_catcher', '{}', 'catcher')" >/dev/null
ok "a function catching every error around dasa.await settles" settled catcher
is "$(value catcher)" 'resolved {"got": 70}' "with the real value, not the swallowed one"

# durable sleep: holds no executor, wakes on time
q $db "SELECT dasa.invoke('as_sleeper', '{\"seconds\": 1.5}', 'sleeper')" >/dev/null
ok "a sleeping invocation is suspended" wait_for 10 $db "SELECT state = 'suspended' FROM dasa.tasks WHERE id = 'sleeper'"
is "$(q $db "SELECT count(*) FROM dasa.executors() WHERE task_id = 'sleeper'")" 0 "and holds no executor while asleep"
ok "it wakes and finishes" settled sleeper
is "$(q $db "SELECT ((value->>'woke')::timestamptz >= created_at + interval '1.5 s')
                    AND ((value->>'woke')::timestamptz < created_at + interval '5 s')
             FROM dasa.get_promise('sleeper')")" t "after its 1.5 s, not before (and not seconds late)"
is "$(q $db "SELECT tags->>'resonate:timer' FROM dasa.promises WHERE parent_id = 'sleeper'")" true "through a timer child"

# human in the loop
q $db "SELECT dasa.invoke('as_approval', '{\"order\": \"o-7\"}', 'approval')" >/dev/null
ok "a function waiting for a person creates the promise and suspends" wait_for 10 $db \
   "SELECT (SELECT state FROM dasa.tasks WHERE id = 'approval') = 'suspended'
       AND (SELECT parent_id FROM dasa.promises WHERE id = 'approve-o-7') = 'approval'"
q $db "SELECT dasa.resolve('approve-o-7', '\"yes\"')" >/dev/null
ok "someone resolves it from outside" settled approval
is "$(value approval)" 'resolved {"decision": "yes"}' "and the function continues with that value"

# cancellation down the tree
q $db "SELECT dasa.invoke('as_waiter', '{}', 'waiter')" >/dev/null
ok "a function waiting on a long child and a human promise suspends" wait_for 10 $db \
   "SELECT (SELECT state FROM dasa.tasks WHERE id = 'waiter') = 'suspended'
       AND (SELECT state FROM dasa.tasks WHERE id = 'waiter.1.1') IS NULL
       AND (SELECT state FROM dasa.tasks WHERE id = 'waiter.1') = 'suspended'"
q $db "SELECT dasa.cancel('waiter', '\"stop\"')" >/dev/null
is "$(value waiter)" 'rejected_canceled "stop"' "cancelling it settles it"
is "$(q $db "SELECT string_agg(id || '=' || state, ',' ORDER BY id) FROM dasa.promises WHERE root_id = 'waiter'")" \
   "waiter.1=rejected_canceled,waiter.1.1=rejected_canceled,waiter.human=rejected_canceled" \
   "and cancels everything it started, recursively (child, grandchild timer, human promise)"
is "$(q $db "SELECT string_agg(id || '=' || state, ',' ORDER BY id) FROM dasa.tasks WHERE id LIKE 'waiter%'")" \
   "waiter=completed,waiter.1=completed" "their tasks end"
is "$(q $db "SELECT count(*) FROM dasa.callbacks WHERE task_id LIKE 'waiter%'")" 0 "and leave no callbacks behind"

# cancelling while an attempt runs: the cancel does not wait, and the attempt cannot resolve
q $db "SELECT dasa.invoke('as_busy', '{}', 'busy')" >/dev/null
wait_for 10 $db "SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'dasa: as_busy (busy)'"
is "$(q $db "SET statement_timeout = '3s'; SELECT state FROM dasa.cancel('busy')")" rejected_canceled \
   "an invocation can be cancelled while its attempt runs, without waiting for it"
ok "the running attempt ends" wait_for 20 $db "SELECT state = 'completed' FROM dasa.tasks WHERE id = 'busy'"
is "$(value busy)" "rejected_canceled null" "and cannot commit a resolution"
is "$(q $db "SELECT count(*) FROM as_effects WHERE invocation = 'busy'")" 0 "its effects are rolled back"

# timeouts propagate: children's deadlines are capped at the parent's
q $db "SELECT dasa.invoke('as_waiter', '{}', 'late', '1 second')" >/dev/null
ok "a waiting invocation times out" settled late
is "$(value late)" "rejected_timedout null" "as rejected_timedout"
ok "so does everything it started" wait_for 20 $db \
   "SELECT bool_and(state = 'rejected_timedout' OR (state = 'resolved' AND tags ? 'resonate:timer'))
           AND count(*) = 3 FROM dasa.promises WHERE root_id = 'late'"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE root_id = 'late' AND timeout_at > (SELECT timeout_at FROM dasa.promises WHERE id = 'late')")" 0 \
   "no child's deadline passes its parent's"
ok "and its task ends" wait_for 10 $db "SELECT state = 'completed' FROM dasa.tasks WHERE id = 'late'"

# await_any inside a function: the first to settle wins
q $db "SELECT dasa.invoke('as_waiter', '{}', 'anyone')" >/dev/null
ok "a function awaiting any of a long child and a human promise suspends" wait_for 10 $db \
   "SELECT state = 'suspended' FROM dasa.tasks WHERE id = 'anyone'"
q $db "SELECT dasa.resolve('anyone.human', '\"first\"')" >/dev/null
ok "when one of them settles it resumes" settled anyone
is "$(value anyone)" 'resolved "first"' "with that one's value"

# await_all and await_any from a plain session block until done
q $db "SELECT dasa.create_promise('pa-' || i, '1 hour') FROM generate_series(1, 3) i" >/dev/null
q $db "SELECT dasa.resolve('pa-1', '1')" >/dev/null
(sleep 0.5; q $db "SELECT dasa.resolve('pa-2', '2')" >/dev/null; sleep 0.3; q $db "SELECT dasa.resolve('pa-3', '3')" >/dev/null) &
is "$(q $db "SELECT dasa.await_all(ARRAY['pa-1', 'pa-2', 'pa-3'], '30 s')")" "[1, 2, 3]" \
   "dasa.await_all in a plain session waits for all and returns the values in order"
q $db "SELECT dasa.create_promise('pb-' || i, '1 hour') FROM generate_series(1, 2) i" >/dev/null
(sleep 0.5; q $db "SELECT dasa.reject('pb-2', '\"no\"')" >/dev/null) &
out=$(psql -XAtq -v VERBOSITY=sqlstate -d $db -c "SET dasa.await_recheck_interval = '1h'" \
      -c "SELECT dasa.await_any(ARRAY['pb-1', 'pb-2'], '30 s')" 2>&1)
is "$out" "ERROR:  DA001" "dasa.await_any in a plain session is woken by the first settlement (a rejection here)"
wait

# non-deterministic replay
q $db "SELECT dasa.invoke('as_fickle', '{}', 'fickle')" >/dev/null
ok "a function that calls something else on replay settles" settled fickle
is "$(q $db "SELECT state || ' ' || (value->>'sqlstate') || ' ' || (value->>'attempts') FROM dasa.get_promise('fickle')")" "rejected DA005 1" \
   "rejected as a non-deterministic replay (DA005), without retries"
is "$(q $db "SELECT value->>'message' FROM dasa.get_promise('fickle')")" 'non-deterministic replay of invocation "fickle"' \
   "with a clear message"

# current_invocation outside a function
is "$(q $db "SELECT coalesce(dasa.current_invocation(), 'none')")" none "dasa.current_invocation() is NULL outside a function"
out=$(psql -XAtq -v VERBOSITY=sqlstate -d $db -c "SELECT dasa.sleep('1 s')" 2>&1)
is "$out" "ERROR:  55000" "dasa.sleep outside a function is refused (55000)"
done_testing
