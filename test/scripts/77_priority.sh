#!/usr/bin/env bash
# Priorities: dasa.invoke(..., priority => n) runs before lower ones that are
# due (0, the default, is the lowest): an urgent invocation invoked behind
# 1,000 queued ordinary ones starts before most of them, and of two urgent
# ones the higher goes first; a child keeps its priority across its parent's
# suspension; bad priorities are refused (22023).
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_priority
sqlstate() { sqlstate_of $db "$1"; }
fresh_database $db
q $db "
CREATE TABLE pr_runs (tag text NOT NULL, ran_at timestamptz NOT NULL);
CREATE FUNCTION pr_work(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO pr_runs VALUES (a->>'tag', clock_timestamp());
  PERFORM pg_sleep(0.005);
  RETURN a;
END \$\$;
CREATE FUNCTION pr_urgent_child(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE c text := dasa.invoke('pr_work', '{\"tag\": \"urgent-child\"}', priority => 7);
BEGIN
  PERFORM dasa.await('pr-gate');
  RETURN dasa.await(c);
END \$\$;
SELECT count(*) FROM (SELECT dasa.register('pr_work', 'pr_work(jsonb)')
  UNION ALL SELECT dasa.register('pr_urgent_child', 'pr_urgent_child(jsonb)')) r" >/dev/null

is "$(sqlstate "SELECT dasa.invoke('pr_work', '{}', priority => -1)")" 22023 "a negative priority is refused (22023)"
is "$(sqlstate "SELECT dasa.invoke('pr_work', '{}', priority => 40000)")" 22023 "so is one above 32767"

q $db "SELECT count(dasa.invoke('pr_work', jsonb_build_object('tag', 'low'))) FROM generate_series(1, 1000)" >/dev/null
ok "1,000 ordinary invocations start running" wait_for 20 $db "SELECT count(*) >= 20 FROM pr_runs WHERE tag = 'low'"
q $db "SELECT dasa.invoke('pr_work', '{\"tag\": \"five\"}', priority => 5), dasa.invoke('pr_work', '{\"tag\": \"nine\"}', priority => 9)" >/dev/null
ok "all of them run" wait_for 60 $db "SELECT count(*) = 1002 FROM pr_runs"
after=$(q $db "SELECT count(*) FROM pr_runs WHERE tag = 'low' AND ran_at > (SELECT ran_at FROM pr_runs WHERE tag = 'five')")
queued=$(q $db "SELECT count(*) FROM pr_runs WHERE tag = 'low' AND ran_at > (SELECT created_at FROM dasa.promises p JOIN dasa.tasks t USING (id) WHERE t.priority = 5)")
diag "the urgent invocations came with $queued ordinary ones still to start; $after of those started after them"
ok "urgent invocations invoked behind the queue start before most of it ($after of $queued after them)" test "$after" -ge $((queued * 8 / 10))
is "$(q $db "SELECT (SELECT ran_at FROM pr_runs WHERE tag = 'nine') < (SELECT ran_at FROM pr_runs WHERE tag = 'five')")" t \
   "of two urgent ones, the higher priority ran first"

q $db "SELECT count(*) FROM dasa.create_promise('pr-gate', '1 hour')" >/dev/null
q $db "SELECT dasa.invoke('pr_urgent_child', '{}', 'pr-parent')" >/dev/null
ok "a parent that invoked an urgent child suspends" wait_for 20 $db "SELECT state = 'suspended' FROM dasa.tasks WHERE id = 'pr-parent'"
is "$(q $db "SELECT priority FROM dasa.tasks WHERE id = 'pr-parent.1'")" 7 "its child was written with its priority"
q $db "SELECT count(*) FROM dasa.resolve('pr-gate', '1')" >/dev/null
ok "and the workflow finishes" wait_for 20 $db "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'pr-parent'"

done_testing
