#!/usr/bin/env bash
# Workflows at scale: a 200-step chain whose quick steps run inside the
# chain's own attempt (right result, each step run once, a handful of
# suspensions instead of one per step), a 100,000-child fan-out summed by
# one dasa.await_all, a 60-step chain of slow steps (one suspension and
# replay per step) whose executors are killed (kill -9) at a random step,
# and a 300-step chain killed while its steps run inside its attempt: each
# step's effect exactly once. A replay that makes a different call where it
# recorded a child is still refused.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_workflows
quiet() { PGOPTIONS='-c client_min_messages=warning' q "$@"; }
quiet postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q $db "
CREATE TABLE wf_runs (invocation text NOT NULL);
CREATE FUNCTION wf_step(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO wf_runs VALUES (dasa.current_invocation());
  RETURN a->'i';
END \$\$;
CREATE FUNCTION wf_slow_step(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM pg_sleep(0.06);
  INSERT INTO wf_runs VALUES (dasa.current_invocation());
  RETURN a->'i';
END \$\$;
CREATE FUNCTION wf_chain(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE total bigint := 0;
BEGIN
  FOR i IN 1..(a->>'n')::int LOOP
    total := total + dasa.await(dasa.invoke(coalesce(a->>'step', 'wf_step'), jsonb_build_object('i', i)))::bigint;
  END LOOP;
  RETURN to_jsonb(total);
END \$\$;
CREATE FUNCTION wf_plain(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT a->''i''';
CREATE FUNCTION wf_fan(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE ids text[];
BEGIN
  SELECT array_agg(dasa.invoke('wf_plain', jsonb_build_object('i', i)) ORDER BY i) INTO ids
  FROM generate_series(1, (a->>'n')::int) i;
  RETURN (SELECT to_jsonb(sum(v::bigint)) FROM jsonb_array_elements_text(dasa.await_all(ids)) v);
END \$\$;
CREATE TABLE wf_flip (flipped boolean NOT NULL);
INSERT INTO wf_flip VALUES (false);
CREATE FUNCTION wf_fickle(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  IF (SELECT flipped FROM wf_flip) THEN
    PERFORM dasa.sleep('1 second');
  ELSE
    PERFORM dasa.await(dasa.invoke('wf_gate', '{}'));
  END IF;
  RETURN '1';
END \$\$;
CREATE FUNCTION wf_gate(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT dasa.await(''gate'')';
SELECT count(*) FROM dasa.create_promise('gate', '1 hour');
SELECT count(*) FROM (SELECT dasa.register('wf_step', 'wf_step(jsonb)', max_attempts => 50, initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('wf_slow_step', 'wf_slow_step(jsonb)', max_attempts => 50, initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('wf_chain', 'wf_chain(jsonb)', max_attempts => 50, initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('wf_plain', 'wf_plain(jsonb)')
  UNION ALL SELECT dasa.register('wf_fan', 'wf_fan(jsonb)', timeout => '10 minutes')
  UNION ALL SELECT dasa.register('wf_fickle', 'wf_fickle(jsonb)')
  UNION ALL SELECT dasa.register('wf_gate', 'wf_gate(jsonb)')) r" >/dev/null

# A 200-step chain.
is "$(q $db "CALL dasa.call('wf_chain', '{\"n\": 200}', 'chain-200')")" 20100 "a 200-step chain sums 1..200"
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT invocation) FROM wf_runs WHERE invocation LIKE 'chain-200.%'")" \
   "200 200" "each of its 200 steps ran once"
replays=$(q $db "SELECT replays FROM dasa.tasks WHERE id = 'chain-200'")
diag "the 200-step chain suspended $replays times"
ok "its quick steps ran inside its attempt: at most 10 suspensions, not one per step ($replays)" test "$replays" -le 10
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id LIKE 'chain-200.%' AND state = 'resolved' AND settled_at IS NOT NULL")" 200 \
   "every step's promise is resolved"

# A 100,000-child fan-out.
started=$SECONDS
is "$(q $db "CALL dasa.call('wf_fan', '{\"n\": 100000}', 'fan-100k')")" 5000050000 \
   "a parent invoking 100,000 children and awaiting them all sums them"
diag "100,000-child fan-out in $((SECONDS - started)) s"
is "$(q $db "SELECT replays || ' ' || (SELECT count(*) FROM dasa.promises WHERE parent_id = 'fan-100k' AND state = 'resolved') FROM dasa.tasks WHERE id = 'fan-100k'")" \
   "1 100000" "with one suspension, every child resolved"
is "$(q $db "SELECT count(*) FROM dasa.callbacks")" 0 "no callback is left behind"

# A chain of slow steps (each runs in a batch of its own, the chain
# suspending on it) killed at a random step.
n=60
kill_at=$((5 + RANDOM % 45))
q $db "SELECT dasa.invoke('wf_chain', '{\"n\": $n, \"step\": \"wf_slow_step\"}', 'chain-kill')" >/dev/null
ok "the chain reaches step $kill_at" wait_for 30 $db "SELECT count(*) >= $kill_at FROM wf_runs WHERE invocation LIKE 'chain-kill.%'"
for pid in $(q $db "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = '$db'"); do
  kill -9 "$pid" 2>/dev/null
done
wait_ready 30 >/dev/null
ok "after kill -9 of the executors, the chain finishes" wait_for 60 $db \
   "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'chain-kill'"
is "$(q $db "SELECT value FROM dasa.promises WHERE id = 'chain-kill'")" $((n * (n + 1) / 2)) "with the right sum"
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT invocation) FROM wf_runs WHERE invocation LIKE 'chain-kill.%'")" \
   "$n $n" "each step's effect is there exactly once"

# A chain killed while its steps run inside its attempt (5 ms each): the
# attempt dies with everything it did; the chain, counted as crashed once,
# goes on step by step.
q $db "TRUNCATE wf_runs" >/dev/null
q $db "CREATE OR REPLACE FUNCTION wf_step(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM pg_sleep(0.005);
  INSERT INTO wf_runs VALUES (dasa.current_invocation());
  RETURN a->'i';
END \$\$" >/dev/null
n=300
q $db "SELECT dasa.invoke('wf_chain', '{\"n\": $n}', 'chain-inline-kill')" >/dev/null
ok "the chain runs its steps inside one attempt" wait_for 30 $db \
   "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'dasa: wf_chain (chain-inline-kill)'"
sleep "0.$((3 + RANDOM % 6))"
diag "step effects visible while the attempt runs: $(q $db "SELECT count(*) FROM wf_runs")"
for pid in $(q $db "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = '$db'"); do
  kill -9 "$pid" 2>/dev/null
done
wait_ready 30 >/dev/null
ok "after kill -9 of the executors, the chain finishes" wait_for 120 $db \
   "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'chain-inline-kill'"
is "$(q $db "SELECT value FROM dasa.promises WHERE id = 'chain-inline-kill'")" $((n * (n + 1) / 2)) "with the right sum"
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT invocation) FROM wf_runs WHERE invocation LIKE 'chain-inline-kill.%'")" \
   "$n $n" "each step's effect is there exactly once"
is "$(q $db "SELECT crashes FROM dasa.tasks WHERE id = 'chain-inline-kill'")" 1 "the chain's attempt was counted as crashed once"

# A child that fails when run inside its parent: rolled back with its
# effect, it runs as usual, its failures counted there, and the parent gets
# its value. (The sequence is not rolled back: it fails its first two calls.)
q $db "
CREATE SEQUENCE wf_flaky_calls;
CREATE FUNCTION wf_flaky(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO wf_runs VALUES (dasa.current_invocation());
  IF (a->>'fail')::boolean AND nextval('wf_flaky_calls') <= 2 THEN
    RAISE EXCEPTION 'flaky';
  END IF;
  RETURN a->'i';
END \$\$;
CREATE FUNCTION wf_flaky_parent(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  RETURN dasa.await(dasa.invoke('wf_flaky', a));
END \$\$;
SELECT count(*) FROM (SELECT dasa.register('wf_flaky', 'wf_flaky(jsonb)', max_attempts => 5, initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('wf_flaky_parent', 'wf_flaky_parent(jsonb)')) r" >/dev/null
q $db "SELECT count(dasa.invoke('wf_flaky_parent', jsonb_build_object('i', i, 'fail', false), 'flaky-ok-' || i))
  FROM generate_series(1, 20) i" >/dev/null
ok "20 parents of children that succeed settle (the executors learn the child is quick)" wait_for 30 $db \
   "SELECT count(*) = 20 FROM dasa.promises WHERE id LIKE 'flaky-ok-%' AND parent_id IS NULL AND state = 'resolved'"
q $db "SELECT dasa.invoke('wf_flaky_parent', '{\"i\": 7, \"fail\": true}', 'flaky')" >/dev/null
ok "a parent whose child fails at first settles" wait_for 30 $db "SELECT state <> 'pending' FROM dasa.promises WHERE id = 'flaky'"
is "$(q $db "SELECT state || ' ' || value FROM dasa.promises WHERE id = 'flaky'")" "resolved 7" "with the child's value"
is "$(q $db "SELECT count(*) FROM wf_runs WHERE invocation = 'flaky.1'")" 1 "the child's effect is there once"
is "$(q $db "SELECT (SELECT count(*) FROM dasa.attempts WHERE task_id = 'flaky.1') = t.attempt - 1 AND t.attempt >= 2
             FROM dasa.tasks t WHERE t.id = 'flaky.1'")" t "its failed attempts are each recorded, and it succeeded after them"

# A replay that makes a different call where a child was recorded is refused.
q $db "SELECT dasa.invoke('wf_fickle', '{}', 'fickle')" >/dev/null
ok "the fickle function suspends on its first child" wait_for 10 $db "SELECT replays >= 1 FROM dasa.tasks WHERE id = 'fickle'"
q $db "UPDATE wf_flip SET flipped = true" >/dev/null
q $db "SELECT dasa.resolve('gate', '1')" >/dev/null
ok "its replay, making a timer where it had started an invocation, is refused as non-deterministic (DA005)" wait_for 20 $db \
   "SELECT state = 'rejected' AND value->>'sqlstate' = 'DA005' FROM dasa.promises WHERE id = 'fickle'"
done_testing
