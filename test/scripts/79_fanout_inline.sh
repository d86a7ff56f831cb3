#!/usr/bin/env bash
# A fan-out whose children an executor knows to be quick runs them inside
# the parent's attempt, one after another, when it awaits them all: no
# suspension, no replay, each child resolved once with its effects once.
# All or none: a child that fails there (or a child that reads dasa's
# tables) changes nothing a user can see: the run inside the parent is
# undone and every child runs as usual, its effects still once.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_fanout_inline
fresh_database $db
q $db "
CREATE TABLE fi_effects (run text, i int);
CREATE SEQUENCE fi_tries;
-- a child: records its effect, fails once at i = fail_at if asked, returns i
CREATE FUNCTION fi_step(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO fi_effects VALUES (a->>'run', (a->>'i')::int);
  IF a ? 'fail_at' AND a->>'i' = a->>'fail_at' AND nextval('fi_tries') = 1 THEN
    RAISE EXCEPTION 'child % fails once', a->>'i';
  END IF;
  RETURN a->'i';
END \$\$;
-- a child that reads dasa's tables: does its own row exist, and its earlier siblings'?
CREATE FUNCTION fi_peek(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE me text := dasa.current_invocation();
BEGIN
  RETURN to_jsonb(EXISTS (SELECT FROM dasa.promises WHERE id = me)
    AND ((a->>'i')::int = 1 OR EXISTS (SELECT FROM dasa.promises WHERE id =
          (SELECT parent_id FROM dasa.promises WHERE id = me) || '.' || ((a->>'i')::int - 1))));
END \$\$;
-- n children of fn, awaited all at once: the sum of their values (or all true)
CREATE FUNCTION fi_fan(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE ids text[];
BEGIN
  SELECT array_agg(dasa.invoke(a->>'fn', (a - 'n' - 'fn') || jsonb_build_object('i', i)) ORDER BY i) INTO ids
  FROM generate_series(1, (a->>'n')::int) i;
  IF a->>'fn' = 'fi_peek' THEN
    RETURN to_jsonb(bool_and(v::boolean)) FROM jsonb_array_elements_text(dasa.await_all(ids)) v;
  END IF;
  RETURN to_jsonb(sum(v::int)) FROM jsonb_array_elements_text(dasa.await_all(ids)) v;
END \$\$;
SELECT count(*) FROM (SELECT dasa.register('fi_step', 'fi_step(jsonb)', initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('fi_peek', 'fi_peek(jsonb)')
  UNION ALL SELECT dasa.register('fi_fan', 'fi_fan(jsonb)')) r;" >/dev/null

# warm FN: fan-outs until both executors have run FN's children (they learn it is quick)
warm() {
  for k in 1 2 3 4 5; do
    q $db "CALL dasa.call('fi_fan', '{\"n\": 400, \"fn\": \"$1\", \"run\": \"warm\"}', 'fi-warm-$1-$k')" >/dev/null
    [ "$(q $db "SELECT count(DISTINCT t.executor_pid) FROM dasa.tasks t JOIN dasa.promises p USING (id)
                 WHERE p.parent_id LIKE 'fi-warm-$1-%'")" -ge 2 ] && return 0
  done
  return 1
}
ok "both executors have run fi_step's children" warm fi_step

is "$(q $db "CALL dasa.call('fi_fan', '{\"n\": 300, \"fn\": \"fi_step\", \"run\": \"quick\"}', 'fi-quick')")" 45150 \
   "a fan-out of 300 quick children gives the sum of their values"
is "$(q $db "SELECT replays || ' ' || attempt FROM dasa.tasks WHERE id = 'fi-quick'")" "0 1" \
   "in one attempt of the parent, never suspended nor replayed"
is "$(q $db "SELECT count(*) FILTER (WHERE p.state = 'resolved' AND t.state = 'completed' AND t.attempt = 1
                                     AND t.executor_pid IS NULL)
             FROM dasa.promises p JOIN dasa.tasks t USING (id) WHERE p.parent_id = 'fi-quick'")" 300 \
   "its 300 children are resolved, each in one attempt run inside the parent"
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT i) FROM fi_effects WHERE run = 'quick'")" "300 300" \
   "each child's effect is there once"
is "$(q $db "SELECT count(*) FROM dasa.callbacks")" 0 "no callback row was written"

# A child failing inside the parent: all of that run is undone, the children run as usual.
is "$(q $db "CALL dasa.call('fi_fan', '{\"n\": 300, \"fn\": \"fi_step\", \"run\": \"flaky\", \"fail_at\": 150}', 'fi-flaky')")" \
   45150 "a fan-out whose 150th child fails once still gives the sum"
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT i) FROM fi_effects WHERE run = 'flaky'")" "300 300" \
   "each child's effect is there once (the run inside the parent left none)"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE parent_id = 'fi-flaky' AND state = 'resolved'")" 300 \
   "every child is resolved"
is "$(q $db "SELECT count(*) FROM dasa.attempts WHERE task_id LIKE 'fi-flaky.%'")" 0 \
   "the failure happened inside the parent: no attempt of the child failed on its own"
is "$(q $db "SELECT (SELECT replays FROM dasa.tasks WHERE id = 'fi-flaky') >= 1")" t \
   "the parent waited for them as usual"

# Children that read dasa's tables while they run inside the parent.
ok "both executors have run fi_peek's children" warm fi_peek
is "$(q $db "CALL dasa.call('fi_fan', '{\"n\": 50, \"fn\": \"fi_peek\"}', 'fi-peek')")" true \
   "each child run inside the parent finds its own row and its earlier siblings'"
is "$(q $db "SELECT count(*) FILTER (WHERE p.state = 'resolved' AND t.state = 'completed' AND t.attempt = 1)
             FROM dasa.promises p JOIN dasa.tasks t USING (id) WHERE p.parent_id = 'fi-peek'")" 50 \
   "and each is resolved once, its task completed"
is "$(q $db "SELECT replays FROM dasa.tasks WHERE id = 'fi-peek'")" 0 "the parent never suspended"

done_testing
