#!/usr/bin/env bash
# Retention: a settled tree whose root settled before the cut-off goes as a
# whole (promises, tasks, attempts, callbacks, holds), and nothing else: not
# a tree with a pending child, not a promise a suspended invocation awaited
# (its replay reads it again), not a tree whose root is pending, not a tree
# settled after the cut-off. dasa.purge does it on demand for the trees the
# role may see (dasa_admin: all); the dasa worker does it after
# dasa.retention, in bounded steps (a tree of 5,000 children goes over
# several; a backlog is handed to a retention process at idle CPU priority
# that vacuums what it emptied), and not at all with dasa.retention = 0.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_retention

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
# Until the worker's part below, only dasa.purge removes anything: the
# history aged here must not go under the purges' feet.
q $db "ALTER SYSTEM SET dasa.retention = 0" >/dev/null
q $db "SELECT pg_reload_conf()" >/dev/null
sleep 1
q $db "
DO \$\$ BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'ret_a') THEN
    DROP OWNED BY ret_a, ret_b, ret_admin; DROP ROLE ret_a, ret_b, ret_admin;
  END IF;
END \$\$;
CREATE ROLE ret_a; CREATE ROLE ret_b; CREATE ROLE ret_admin;
GRANT dasa_user TO ret_a, ret_b; GRANT dasa_admin TO ret_admin;
CREATE SCHEMA app AUTHORIZATION ret_a;" >/dev/null

as_role() {  # as_role ROLE SQL: run SQL after SET ROLE, print the result or the error's SQLSTATE
  psql -XAtq -v VERBOSITY=sqlstate -d $db -c "SET ROLE $1" -c "$2" 2>&1 | sed 's/^ERROR:  //'
}
exists() { q $db "SELECT count(*) FROM dasa.promises WHERE id = '$1'"; }
state() { q $db "SELECT state FROM dasa.promises WHERE id = '$1'"; }
age_settled() {  # age_settled: every settled promise (but "recent") settled 30 days ago
  q $db "UPDATE dasa.promises SET created_at = created_at - interval '30 days', settled_at = settled_at - interval '30 days'
         WHERE settled_at IS NOT NULL AND settled_at > now() - interval '1 day' AND id <> 'recent'" >/dev/null
}

as_role ret_a "
CREATE SEQUENCE app.tries;
CREATE FUNCTION app.leaf(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT a';
CREATE FUNCTION app.flaky(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  IF nextval('app.tries') = 1 THEN RAISE EXCEPTION 'first try fails'; END IF;
  RETURN a;
END \$\$;
CREATE FUNCTION app.parent(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  RETURN dasa.await_all(ARRAY[dasa.invoke('leaf', '{\"n\": 1}'), dasa.invoke('leaf', '{\"n\": 2}'),
                              dasa.invoke('flaky', jsonb_build_object('key', a->>'key'))]);
END \$\$;
CREATE FUNCTION app.waiter(a jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT dasa.await(a->>'gate') \$\$;
CREATE FUNCTION app.detach(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM dasa.invoke('waiter', a);
  RETURN '\"gone on\"';
END \$\$;
CREATE FUNCTION app.reader(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  RETURN jsonb_build_array(dasa.await(a->>'read'), dasa.await(a->>'gate'));
END \$\$;
CREATE FUNCTION app.holder(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  RETURN jsonb_build_array(dasa.await(dasa.invoke('leaf', '{\"n\": 4}')), dasa.await(a->>'gate'));
END \$\$;
CREATE FUNCTION app.fan(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  RETURN jsonb_array_length(dasa.await_all(ARRAY(SELECT dasa.invoke('leaf', jsonb_build_object('i', i))
                                                 FROM generate_series(1, (a->>'n')::int) i)));
END \$\$;
SELECT count(*) FROM dasa.register('leaf', 'app.leaf(jsonb)');
SELECT count(*) FROM dasa.register('flaky', 'app.flaky(jsonb)', initial_backoff => '10 ms');
SELECT count(*) FROM dasa.register('parent', 'app.parent(jsonb)');
SELECT count(*) FROM dasa.register('waiter', 'app.waiter(jsonb)');
SELECT count(*) FROM dasa.register('detach', 'app.detach(jsonb)');
SELECT count(*) FROM dasa.register('reader', 'app.reader(jsonb)');
SELECT count(*) FROM dasa.register('holder', 'app.holder(jsonb)');
SELECT count(*) FROM dasa.register('fan', 'app.fan(jsonb)');" >/dev/null

# The trees, as ret_a:
#   done     a workflow and its 3 children, all settled (one child failed once: an attempt row)
#   detached a root that settled while its child still waits on gate-1
#   read-me  a plain promise, settled, that "reading" awaited (settled) before suspending on gate-2
#   holding  a root still pending (awaiting gate-3) whose child settled
#   loose    a plain promise, settled, that nobody awaited
as_role ret_a "
SELECT dasa.create_promise('gate-1', '1 day'), dasa.create_promise('gate-2', '1 day'),
       dasa.create_promise('gate-3', '1 day'), dasa.create_promise('read-me', '1 day'),
       dasa.create_promise('loose', '1 day');
SELECT dasa.resolve('read-me', '\"the value\"'), dasa.resolve('loose');
SELECT dasa.invoke('parent', '{\"key\": \"done\"}', 'done'), dasa.invoke('detach', '{\"gate\": \"gate-1\"}', 'detached'),
       dasa.invoke('reader', '{\"read\": \"read-me\", \"gate\": \"gate-2\"}', 'reading'),
       dasa.invoke('holder', '{\"gate\": \"gate-3\"}', 'holding');" >/dev/null
ok "the workflows reach their places" wait_for 60 $db "
  SELECT (SELECT state = 'resolved' FROM dasa.promises WHERE id = 'done')
     AND (SELECT state = 'resolved' FROM dasa.promises WHERE id = 'detached')
     AND (SELECT state = 'suspended' FROM dasa.tasks WHERE id = 'detached.1')
     AND (SELECT state = 'suspended' FROM dasa.tasks WHERE id = 'reading')
     AND (SELECT state = 'suspended' FROM dasa.tasks WHERE id = 'holding')
     AND (SELECT state = 'resolved' FROM dasa.promises WHERE id = 'holding.1')"
is "$(q $db "SELECT count(*) FROM dasa.holds WHERE promise_id = 'read-me' AND task_id = 'reading'")" 1 \
   "the suspended reader holds the promise it read"
done_rows=$(q $db "SELECT (SELECT count(*) FROM dasa.promises WHERE id = 'done' OR root_id = 'done') || ' promises, ' ||
                          (SELECT count(*) FROM dasa.attempts WHERE task_id LIKE 'done%') || ' attempt'")
is "$done_rows" "4 promises, 1 attempt" "the finished workflow has its 4 promises and a failed attempt"

age_settled
as_role ret_a "SELECT dasa.create_promise('recent', '1 day'); SELECT dasa.resolve('recent')" >/dev/null
is "$(as_role ret_a "SELECT dasa.purge('7 days')")" 5 "dasa.purge removes 5 promises: the finished tree (4) and the loose promise"
is "$(q $db "SELECT (SELECT count(*) FROM dasa.promises WHERE id LIKE 'done%') + (SELECT count(*) FROM dasa.tasks WHERE id LIKE 'done%')
              + (SELECT count(*) FROM dasa.attempts WHERE task_id LIKE 'done%') + (SELECT count(*) FROM dasa.callbacks WHERE task_id LIKE 'done%')")" 0 \
   "the finished tree is gone: promises, tasks, attempts, callbacks"
is "$(exists loose)" 0 "the loose promise is gone"
is "$(exists detached) $(state detached.1)" "1 pending" "a tree with a pending child stays, child and all"
is "$(exists read-me)" 1 "a settled promise that a suspended invocation awaited stays"
is "$(exists holding) $(exists holding.1)" "1 1" "a tree whose root is pending stays, settled children and all"
is "$(exists recent)" 1 "a tree settled after the cut-off stays"
is "$(as_role ret_a "SELECT dasa.purge('7 days')")" 0 "purging again removes nothing"

# Once they finish, they go too.
as_role ret_a "SELECT dasa.resolve('gate-1'), dasa.resolve('gate-2', '2'), dasa.resolve('gate-3')" >/dev/null
ok "the waiting invocations finish" wait_for 60 $db "
  SELECT bool_and(state = 'resolved') FROM dasa.promises WHERE id IN ('detached.1', 'reading', 'holding')"
is "$(q $db "SELECT value FROM dasa.promises WHERE id = 'reading'")" '["the value", 2]' "the reader's replay read the promise it holds"
age_settled
is "$(as_role ret_a "SELECT dasa.purge('7 days')")" 9 \
   "then the rest goes: detached's 2, 3 gates, read-me, reading and holding's 2"
is "$(q $db "SELECT (SELECT count(*) FROM dasa.promises WHERE id <> 'recent') + (SELECT count(*) FROM dasa.tasks) + (SELECT count(*) FROM dasa.holds)")" 0 \
   "nothing is left of them, holds included"

# Who may purge what.
as_role ret_a "SELECT dasa.create_promise('a-old', '1 day'); SELECT dasa.resolve('a-old')" >/dev/null
as_role ret_b "SELECT dasa.create_promise('b-old', '1 day'); SELECT dasa.resolve('b-old')" >/dev/null
age_settled
is "$(as_role ret_b "SELECT dasa.purge('1 day')") $(exists a-old) $(exists b-old)" "1 1 0" "a role purges its own history only"
is "$(as_role ret_a "SELECT dasa.purge('-1 day')")" 22023 "a negative older_than is refused (22023)"
is "$(as_role ret_admin "SELECT dasa.purge('1 day')") $(exists a-old)" "1 0" "a member of dasa_admin purges every role's"
is "$(as_role ret_a "SELECT dasa.purge()") $(exists recent)" "1 0" "dasa.purge() with no argument removes all settled history"

# The worker: dasa.retention = 0 keeps everything; 1s removes what settled, in bounded steps.
q $db "ALTER SYSTEM SET dasa.retention = 0" >/dev/null
q $db "SELECT pg_reload_conf()" >/dev/null
as_role ret_a "SELECT dasa.create_promise('kept', '1 day'); SELECT dasa.resolve('kept');
               SELECT dasa.create_promise('gate-4', '1 day');
               SELECT dasa.invoke('detach', '{\"gate\": \"gate-4\"}', 'still-needed')" >/dev/null
as_role ret_a "CALL dasa.call('fan', '{\"n\": 5000}')" >/dev/null
as_role ret_a "SELECT count(dasa.resolve((dasa.create_promise('bulk-' || i, '1 day')).id)) FROM generate_series(1, 20000) i" >/dev/null
age_settled
sleep 3
is "$(exists kept)" 1 "with dasa.retention = 0 the worker removes nothing"
q $db "ALTER SYSTEM SET dasa.retention = '1s'" >/dev/null
q $db "SELECT pg_reload_conf()" >/dev/null
vacuums() { q $db "SELECT vacuum_count || ' ' || analyze_count FROM pg_stat_user_tables WHERE relid = 'dasa.promises'::regclass"; }
counts_before=$(vacuums)
# retention_at_idle_priority: a retention process runs, under SCHED_IDLE (policy 5 in /proc/PID/stat)
retention_at_idle_priority() {
  local pid
  for _ in $(seq 300); do
    pid=$(q $db "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dasa retention' AND datname = '$db'")
    if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
      [ "$(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $39 }')" = 5 ] && return 0
      diag "retention process $pid has scheduling policy $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $39 }')"
      return 1
    fi
    sleep 0.1
  done
  return 1
}
ok "a backlog of 20,000 settled promises is removed by a retention process at idle CPU priority" retention_at_idle_priority
ok "with dasa.retention = 1s the worker removes settled history" wait_for 60 $db "SELECT count(*) = 0 FROM dasa.promises WHERE id = 'kept'"
ok "including a tree of 5,000 children (over several steps)" wait_for 60 $db \
   "SELECT count(*) = 3 FROM dasa.promises"
is "$(state still-needed) $(state still-needed.1) $(state gate-4)" "resolved pending pending" \
   "and only that: the tree with a pending child and its gate stay"
ok "the retention process leaves once nothing is left to remove" wait_for 60 $db \
   "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'dasa retention' AND datname = '$db')"
read -r vacuumed analyzed <<<"$(vacuums)"
ok "having vacuumed and analyzed dasa.promises itself (counts before: $counts_before, after: $vacuumed $analyzed)" \
   test "$vacuumed" -gt "${counts_before% *}" -a "$analyzed" -gt "${counts_before#* }"
q $db "ALTER SYSTEM RESET dasa.retention" >/dev/null
q $db "SELECT pg_reload_conf()" >/dev/null

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE $db WITH (FORCE)" >/dev/null
q postgres "DROP ROLE ret_a, ret_b, ret_admin" >/dev/null
done_testing
