#!/usr/bin/env bash
# Two timeouts: attempt_timeout cuts one attempt, which is retried by the
# function's policy; timeout is the invocation's deadline, which ends it and
# everything under it. Defaults (7 days, 10 minutes), refusals, and a child
# asked for with a deadline past its parent's: cut to the parent's, with a
# NOTICE saying so.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_two_timeouts
sqlstate() { sqlstate_of $db "$1"; }
fresh_database $db
q $db "
CREATE SEQUENCE tt_tries;
CREATE FUNCTION tt_slow_once(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  IF nextval('tt_tries') = 1 THEN PERFORM pg_sleep(30); END IF;
  RETURN '\"done\"';
END \$\$;
CREATE FUNCTION tt_gated(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT dasa.await(''tt-gate'')';
CREATE FUNCTION tt_parent(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT dasa.await(dasa.invoke(''tt_gated''))';
CREATE FUNCTION tt_asks(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM dasa.create_promise('tt-approval', '2 days');
  RETURN to_jsonb(dasa.invoke('tt_gated', '{}', 'tt-long-child', '3 days'));
END \$\$;
SELECT count(*) FROM (
  SELECT dasa.register('tt_slow_once', 'tt_slow_once(jsonb)', initial_backoff => '10 ms', attempt_timeout => '300 ms')
  UNION ALL SELECT dasa.register('tt_gated', 'tt_gated(jsonb)')
  UNION ALL SELECT dasa.register('tt_parent', 'tt_parent(jsonb)', timeout => '2 seconds')
  UNION ALL SELECT dasa.register('tt_asks', 'tt_asks(jsonb)', timeout => '1 hour')) r" >/dev/null

is "$(q $db "SELECT timeout || ' ' || attempt_timeout FROM dasa.register('tt_defaults', 'tt_gated(jsonb)')")" \
   "7 days 00:10:00" "defaults: a 7-day deadline, 10-minute attempts"
is "$(sqlstate "SELECT dasa.register('tt_zero', 'tt_gated(jsonb)', attempt_timeout => '0')")" 22023 "a zero attempt_timeout is refused (22023)"
is "$(sqlstate "SELECT dasa.register('tt_neg', 'tt_gated(jsonb)', attempt_timeout => '-1 s')")" 22023 "a negative one too"

# An attempt cut by its attempt timeout is retried.
q $db "SELECT dasa.invoke('tt_slow_once', '{}', 'tt-slow')" >/dev/null
ok "an invocation whose first attempt overruns its 300 ms attempt timeout resolves" wait_for 30 $db \
   "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'tt-slow'"
is "$(q $db "SELECT string_agg(attempt || ':' || sqlstate, ' ') FROM dasa.attempts WHERE task_id = 'tt-slow'")" "1:57014" \
   "its first attempt was cut (57014) and the second, retried by the policy, succeeded"
is "$(q $db "SELECT timeout_at - created_at FROM dasa.promises WHERE id = 'tt-slow'")" "7 days" \
   "its deadline is the function's timeout, not its attempt timeout"

# The deadline ends the invocation and its tree.
q $db "SELECT count(*) FROM dasa.create_promise('tt-gate', '1 hour')" >/dev/null
q $db "SELECT dasa.invoke('tt_parent', '{}', 'tt-deadline')" >/dev/null
ok "an invocation with a 2 s deadline waiting on a child that waits on a gate times out" wait_for 30 $db \
   "SELECT state = 'rejected_timedout' FROM dasa.promises WHERE id = 'tt-deadline'"
ok "and its child with it" wait_for 10 $db \
   "SELECT state = 'rejected_timedout' FROM dasa.promises WHERE id = 'tt-deadline.1'"
is "$(q $db "SELECT count(*) FROM dasa.tasks WHERE id LIKE 'tt-deadline%' AND state <> 'completed'")" 0 "no task is left to run"

# A deadline past the parent's, asked for: cut, with a NOTICE.
q $db "SELECT dasa.invoke('tt_asks', '{}', 'tt-asks')" >/dev/null
ok "a function asking for a 2-day promise and a 3-day child under its own 1-hour deadline runs" wait_for 20 $db \
   "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'tt-asks'"
is "$(q $db "SELECT string_agg(id || ' ' || (timeout_at = (SELECT timeout_at FROM dasa.promises WHERE id = 'tt-asks')), ', ' ORDER BY id)
             FROM dasa.promises WHERE id IN ('tt-approval', 'tt-long-child')")" "tt-approval true, tt-long-child true" \
   "both deadlines are cut to the parent's"
q $db "SELECT count(*) FROM dasa.register_external('tt_ext', 'ttq')" >/dev/null
q $db "SELECT dasa.invoke('tt_ext', '{}', 'tt-ext', '1 hour')" >/dev/null
notice=$(psql -XAtq -d $db -c "SELECT dasa.enter_task(id, version) FROM dasa.claim('ttq', 'tt-w')" \
              -c "SELECT count(*) FROM dasa.create_promise('tt-entered-approval', '2 days')" 2>&1)
case "$notice" in *"NOTICE:  the deadline of \"tt-entered-approval\" is cut to that of \"tt-ext\""*) r=0 ;; *) r=1 ;; esac
ok "a session working on a task is told, by a NOTICE, when a deadline it asked for is cut" test $r = 0
diag "$(echo "$notice" | grep NOTICE)"

done_testing
