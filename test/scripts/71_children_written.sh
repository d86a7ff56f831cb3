#!/usr/bin/env bash
# Children an attempt invokes under ids it names itself are written when
# the attempt ends, in one statement, not one by one: yet the attempt's own
# code sees them in dasa's tables as soon as it reads them, children of an
# attempt that returns without awaiting them exist and run, a child id taken
# beforehand still fails the parent as dasa.invoke would have at once, and a
# parent waits on its children by a count (no callback rows), woken early at
# worst (a child someone else awaited), never late.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_children
fresh_database $db
q $db "
CREATE FUNCTION cw_noop(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT a';
CREATE FUNCTION cw_gated(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT dasa.await(a->>''gate'')';
-- invokes three children, then reads the tables (and returns what it saw)
CREATE FUNCTION cw_peek(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE ids text[];
BEGIN
  SELECT array_agg(dasa.invoke('cw_noop', jsonb_build_object('i', i)) ORDER BY i) INTO ids
  FROM generate_series(1, 3) i;
  RETURN jsonb_build_object(
    'table', (SELECT count(*) FROM dasa.promises WHERE parent_id = dasa.current_invocation()),
    'view', (SELECT count(*) FROM dasa.invocations WHERE id = ANY(ids)),
    'get_promise', (SELECT count(*) FROM unnest(ids) i WHERE (dasa.get_promise(i)).state = 'pending'));
END \$\$;
-- invokes five children and returns without awaiting them
CREATE FUNCTION cw_fire(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM dasa.invoke('cw_noop', jsonb_build_object('i', i)) FROM generate_series(1, 5) i;
  RETURN '\"fired\"';
END \$\$;
-- invokes n children and awaits them all
CREATE FUNCTION cw_fan(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE ids text[];
BEGIN
  SELECT array_agg(dasa.invoke(coalesce(a->>'fn', 'cw_noop'), a || jsonb_build_object('i', i)) ORDER BY i) INTO ids
  FROM generate_series(1, (a->>'n')::int) i;
  RETURN dasa.await_all(ids);
END \$\$;
-- invokes two gated children and awaits only the second
CREATE FUNCTION cw_second(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE first text := dasa.invoke('cw_gated', '{\"gate\": \"cw-gate-1\"}');
        second text := dasa.invoke('cw_gated', '{\"gate\": \"cw-gate-2\"}');
BEGIN
  RETURN dasa.await(second);
END \$\$;
-- a step that counts its own row; one that reads the tables, then fails once
CREATE FUNCTION cw_self(a jsonb) RETURNS jsonb LANGUAGE sql AS
  'SELECT to_jsonb(count(*)) FROM dasa.invocations WHERE id = dasa.current_invocation()';
CREATE SEQUENCE cw_tries;
CREATE FUNCTION cw_flaky(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM count(*) FROM dasa.promises;
  IF a ? 'fail' AND nextval('cw_tries') = 1 THEN RAISE EXCEPTION 'first try fails'; END IF;
  RETURN a;
END \$\$;
-- a chain of steps, each awaited as soon as invoked
CREATE FUNCTION cw_steps(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE out jsonb := '[]';
BEGIN
  FOR i IN 1..(a->>'n')::int LOOP
    out := out || jsonb_build_array(dasa.await(dasa.invoke(a->>'fn', a->'args')));
  END LOOP;
  RETURN out;
END \$\$;
-- a child that fails; a parent that awaits it; one that turns its failure into its own
CREATE FUNCTION cw_bad(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN RAISE EXCEPTION 'bad child'; END \$\$;
CREATE FUNCTION cw_await_bad(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT dasa.await(dasa.invoke(''cw_bad''))';
CREATE FUNCTION cw_catch_bad(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  RETURN dasa.await(dasa.invoke('cw_bad'));
EXCEPTION WHEN SQLSTATE 'DA001' THEN RAISE EXCEPTION 'try again';
END \$\$;
SELECT count(*) FROM (SELECT dasa.register('cw_noop', 'cw_noop(jsonb)')
  UNION ALL SELECT dasa.register('cw_bad', 'cw_bad(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('cw_await_bad', 'cw_await_bad(jsonb)', max_attempts => 3, initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('cw_catch_bad', 'cw_catch_bad(jsonb)', max_attempts => 3, initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('cw_self', 'cw_self(jsonb)')
  UNION ALL SELECT dasa.register('cw_flaky', 'cw_flaky(jsonb)', initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('cw_steps', 'cw_steps(jsonb)')
  UNION ALL SELECT dasa.register('cw_gated', 'cw_gated(jsonb)')
  UNION ALL SELECT dasa.register('cw_peek', 'cw_peek(jsonb)')
  UNION ALL SELECT dasa.register('cw_fire', 'cw_fire(jsonb)')
  UNION ALL SELECT dasa.register('cw_fan', 'cw_fan(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('cw_second', 'cw_second(jsonb)')) r" >/dev/null

# The attempt's own reads see its children.
is "$(q $db "CALL dasa.call('cw_peek', '{}', 'cw-peek')")" '{"view": 3, "table": 3, "get_promise": 3}' \
   "an attempt's own reads (the table, the invocations view, dasa.get_promise) see the 3 children it has just invoked"
ok "which then run" wait_for 20 $db \
   "SELECT count(*) = 3 FROM dasa.promises WHERE parent_id = 'cw-peek' AND state = 'resolved'"

# Steps awaited as soon as invoked (run inside the chain's attempt once the
# executor knows them): each sees its own row while it runs; a step that
# read the tables and then failed runs again as usual.
is "$(q $db "CALL dasa.call('cw_steps', '{\"n\": 4, \"fn\": \"cw_self\", \"args\": {}}', 'cw-self-1')")" '[1, 1, 1, 1]' \
   "each step of a chain finds its own row in dasa.invocations"
is "$(q $db "CALL dasa.call('cw_steps', '{\"n\": 4, \"fn\": \"cw_self\", \"args\": {}}', 'cw-self-2')")" '[1, 1, 1, 1]' \
   "and again once its steps are known to be quick"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE parent_id IN ('cw-self-1', 'cw-self-2') AND state = 'resolved'")" 8 \
   "every step is resolved"
q $db "CALL dasa.call('cw_steps', '{\"n\": 3, \"fn\": \"cw_flaky\", \"args\": {}}', 'cw-flaky-warm')" >/dev/null
is "$(q $db "CALL dasa.call('cw_steps', '{\"n\": 2, \"fn\": \"cw_flaky\", \"args\": {\"fail\": 1}}', 'cw-flaky')")" \
   '[{"fail": 1}, {"fail": 1}]' "a step that read the tables and failed once is run again and the chain finishes"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE parent_id = 'cw-flaky' AND state = 'resolved'")" 2 \
   "both of its steps are there, resolved"

# A child's rejection is final for the parent that awaited it.
q $db "SELECT dasa.invoke('cw_await_bad', '{}', 'cw-await-bad'), dasa.invoke('cw_catch_bad', '{}', 'cw-catch-bad')" >/dev/null
ok "a parent awaiting a failing child is rejected" wait_for 20 $db \
   "SELECT count(*) = 2 FROM dasa.promises WHERE id IN ('cw-await-bad', 'cw-catch-bad') AND state = 'rejected'"
is "$(q $db "SELECT (SELECT count(*) FROM dasa.attempts WHERE task_id = 'cw-await-bad') || ' ' || (value->>'sqlstate')
             || ' ' || (value->'detail'->>'message') FROM dasa.promises WHERE id = 'cw-await-bad'")" "1 DA001 bad child" \
   "after one attempt, not its 3: the child's rejection is final, nested in the parent's"
is "$(q $db "SELECT count(*) || ' ' || string_agg(DISTINCT message, ',') FROM dasa.attempts WHERE task_id = 'cw-catch-bad'")" \
   "3 try again" "a parent that turns the child's failure into its own error is retried by its policy"

# Children of an attempt that returns without awaiting them.
is "$(q $db "CALL dasa.call('cw_fire', '{}', 'cw-fire')")" '"fired"' "a parent returns without awaiting its children"
ok "its five children exist and run" wait_for 20 $db \
   "SELECT count(*) = 5 FROM dasa.promises WHERE parent_id = 'cw-fire' AND state = 'resolved'"

# A child id taken beforehand fails the parent, as an immediate insert would.
q $db "SELECT count(*) FROM dasa.create_promise('cw-taken.2', '1 hour')" >/dev/null
q $db "SELECT dasa.invoke('cw_fan', '{\"n\": 3}', 'cw-taken')" >/dev/null
ok "a fan-out whose second child id is taken by a plain promise is rejected" wait_for 20 $db \
   "SELECT state = 'rejected' FROM dasa.promises WHERE id = 'cw-taken'"
is "$(q $db "SELECT sqlstate || ' ' || (detail LIKE '%cw-taken.2%recorded as a timer%') FROM dasa.attempts WHERE task_id = 'cw-taken'")" \
   "DA005 true" "as a replay finding a promise where it makes an invocation (DA005, naming the child)"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE parent_id = 'cw-taken'")" 0 "and none of its children was kept"
is "$(q $db "SELECT state FROM dasa.promises WHERE id = 'cw-taken.2'")" pending "the plain promise is untouched"

# A parent waits on its children by a count.
q $db "SELECT count(*) FROM dasa.create_promise('cw-gate', '1 hour')" >/dev/null
q $db "SELECT dasa.invoke('cw_fan', '{\"n\": 4, \"fn\": \"cw_gated\", \"gate\": \"cw-gate\"}', 'cw-count')" >/dev/null
ok "a fan-out of 4 gated children suspends" wait_for 20 $db \
   "SELECT state = 'suspended' FROM dasa.tasks WHERE id = 'cw-count'
    AND (SELECT count(*) FROM dasa.tasks WHERE id LIKE 'cw-count.%' AND state = 'suspended') = 4"
is "$(q $db "SELECT blocked || ' ' || (SELECT count(*) FROM dasa.callbacks WHERE task_id = 'cw-count')
             || ' ' || (SELECT count(*) FROM dasa.callbacks WHERE promise_id = 'cw-gate') FROM dasa.tasks WHERE id = 'cw-count'")" \
   "4 0 4" "the parent waits on 4 children with no callback row; each child has one on the gate"
q $db "SELECT count(*) FROM dasa.resolve('cw-gate', '7')" >/dev/null
ok "resolving the gate finishes the children and then the parent" wait_for 20 $db \
   "SELECT state = 'resolved' AND value = '[7, 7, 7, 7]' FROM dasa.promises WHERE id = 'cw-count'"
is "$(q $db "SELECT count(*) FROM dasa.callbacks")" 0 "no callback row is left"

# A child that somebody else awaits wakes its parent early, never late.
q $db "SELECT count(*) FROM generate_series(1, 2) i, dasa.create_promise('cw-gate-' || i, '1 hour')" >/dev/null
q $db "SELECT dasa.invoke('cw_second', '{}', 'cw-early')" >/dev/null
ok "a parent awaiting its second child suspends" wait_for 20 $db \
   "SELECT state = 'suspended' FROM dasa.tasks WHERE id = 'cw-early'
    AND (SELECT count(*) FROM dasa.tasks WHERE id LIKE 'cw-early.%' AND state = 'suspended') = 2"
q $db "SELECT dasa.invoke('cw_fan', '{\"n\": 1, \"fn\": \"cw_gated\", \"gate\": \"cw-early.1\"}', 'cw-other')" >/dev/null
ok "another invocation awaits the first child" wait_for 20 $db \
   "SELECT state = 'suspended' FROM dasa.tasks WHERE id = 'cw-other.1'"
q $db "SELECT count(*) FROM dasa.resolve('cw-gate-1', '\"one\"')" >/dev/null
ok "the first child settling finishes the one that awaited it" wait_for 20 $db \
   "SELECT value = '[\"one\"]' FROM dasa.promises WHERE id = 'cw-other'"
ok "and leaves the parent suspended again on its second child" wait_for 20 $db \
   "SELECT state = 'suspended' AND blocked = 1 FROM dasa.tasks WHERE id = 'cw-early'"
q $db "SELECT count(*) FROM dasa.resolve('cw-gate-2', '\"two\"')" >/dev/null
ok "the second child settling finishes the parent with its value" wait_for 20 $db \
   "SELECT state = 'resolved' AND value = '\"two\"' FROM dasa.promises WHERE id = 'cw-early'"

done_testing
