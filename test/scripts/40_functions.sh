#!/usr/bin/env bash
# Durable functions run by the executors: success, idempotent invoke,
# retries, exhausted retries, timeouts, rolled-back effects of failed
# attempts, the synchronous call, and what the observability surfaces show.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap

q $db "
CREATE TABLE fx_effects (inv text, note text);
CREATE SEQUENCE fx_tries;
-- adds one, and records that it ran
CREATE FUNCTION fx_add(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO fx_effects VALUES (args->>'inv', 'ran');
  RETURN jsonb_build_object('n', (args->>'n')::int + 1);
END \$\$;
-- fails until the shared counter (a sequence: it survives rollbacks) reaches 3
CREATE FUNCTION fx_flaky(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO fx_effects VALUES (args->>'inv', 'flaky attempt');
  IF nextval('fx_tries') < 3 THEN
    RAISE EXCEPTION 'not yet' USING ERRCODE = 'P0001', DETAIL = 'try again';
  END IF;
  RETURN '\"finally\"';
END \$\$;
-- always fails, after writing
CREATE FUNCTION fx_broken(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO fx_effects VALUES (args->>'inv', 'broken attempt');
  RAISE EXCEPTION 'out of stock' USING ERRCODE = '22023', DETAIL = 'item 42';
END \$\$;
-- sleeps as long as asked
CREATE FUNCTION fx_sleep(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO fx_effects VALUES (args->>'inv', 'slept');
  PERFORM pg_sleep((args->>'seconds')::float);
  RETURN args;
END \$\$;
SELECT count(*) FROM (
  SELECT dasa.register('fx_add', 'fx_add(jsonb)')
  UNION ALL SELECT dasa.register('fx_flaky', 'fx_flaky(jsonb)', max_attempts => 5, initial_backoff => '10 ms', max_backoff => '50 ms')
  UNION ALL SELECT dasa.register('fx_broken', 'fx_broken(jsonb)', max_attempts => 3, initial_backoff => '10 ms', jitter => 0)
  UNION ALL SELECT dasa.register('fx_sleep', 'fx_sleep(jsonb)', max_attempts => 1, attempt_timeout => '300 ms')) r" >/dev/null

settled() {  # settled ID: wait until the promise is settled
  wait_for 30 $db "SELECT state <> 'pending' FROM dasa.get_promise('$1')"
}
effects() { q $db "SELECT count(*) FROM fx_effects WHERE inv = '$1' AND note = '$2'"; }

# success: value, one effect, task completed
q $db "SELECT dasa.invoke('fx_add', '{\"n\": 41, \"inv\": \"ok-1\"}', 'ok-1')" >/dev/null
ok "an invocation runs with no one waiting" settled ok-1
is "$(q $db "SELECT state || ' ' || value FROM dasa.get_promise('ok-1')")" 'resolved {"n": 42}' "its promise resolves with the value"
is "$(q $db "SELECT dasa.await('ok-1')")" '{"n": 42}' "and dasa.await returns it"
is "$(effects ok-1 ran)" 1 "its effect is there once"
is "$(q $db "SELECT state || ' ' || attempt FROM dasa.tasks WHERE id = 'ok-1'")" "completed 1" "the task completed after one attempt"

# idempotent invoke
is "$(q $db "SELECT dasa.invoke('fx_add', '{\"n\": 0, \"inv\": \"ok-1\"}', 'ok-1')")" ok-1 "invoking an existing id returns the id"
sleep 0.5
is "$(effects ok-1 ran)" 1 "and starts nothing new"
is "$(q $db "SELECT value FROM dasa.get_promise('ok-1')")" '{"n": 42}' "the promise keeps its first value"

# retry until success; effects of failed attempts are rolled back
q $db "SELECT dasa.invoke('fx_flaky', '{\"inv\": \"flaky-1\"}', 'flaky-1')" >/dev/null
ok "a flaky function eventually settles" settled flaky-1
is "$(q $db "SELECT state || ' ' || value FROM dasa.get_promise('flaky-1')")" 'resolved "finally"' "resolved by its third attempt"
is "$(q $db "SELECT attempt FROM dasa.tasks WHERE id = 'flaky-1'")" 3 "three attempts were counted"
is "$(q $db "SELECT string_agg(attempt || ':' || sqlstate || ':' || message, ',' ORDER BY attempt) FROM dasa.attempts WHERE task_id = 'flaky-1'")" \
   "1:P0001:not yet,2:P0001:not yet" "the two failed attempts are recorded"
is "$(effects flaky-1 'flaky attempt')" 1 "only the successful attempt's effect remains"

# retries exhausted: rejected with the error
q $db "SELECT dasa.invoke('fx_broken', '{\"inv\": \"broken-1\"}', 'broken-1')" >/dev/null
ok "a broken function settles" settled broken-1
is "$(q $db "SELECT state || ' ' || value FROM dasa.get_promise('broken-1')")" \
   'rejected {"detail": "item 42", "message": "out of stock", "attempts": 3, "sqlstate": "22023"}' \
   "rejected with sqlstate, message, detail and attempts once attempts run out"
is "$(q $db "SELECT count(*) FROM dasa.attempts WHERE task_id = 'broken-1'")" 3 "all three attempts are recorded"
is "$(effects broken-1 'broken attempt')" 0 "no effect of a failed attempt remains"
out=$(psql -XAtq -v VERBOSITY=verbose -d $db -c "SELECT dasa.await('broken-1')" 2>&1)
case "$out" in *"DA001"*'"message": "out of stock"'*) r=0 ;; *) r=1 ;; esac
is $r 0 "awaiting it raises DA001 carrying the error"

# the function's timeout cuts an attempt; the promise's timeout ends the invocation
q $db "SELECT dasa.invoke('fx_sleep', '{\"seconds\": 5, \"inv\": \"slow-1\"}', 'slow-1', '1 minute')" >/dev/null
ok "an attempt over the function's timeout ends" settled slow-1
is "$(q $db "SELECT state || ' ' || (value->>'sqlstate') FROM dasa.get_promise('slow-1')")" "rejected 57014" \
   "rejected with 57014 (statement timeout)"
is "$(effects slow-1 slept)" 0 "and its effects are rolled back"
q $db "SELECT dasa.register('fx_sleep_long', 'fx_sleep(jsonb)', max_attempts => 1, timeout => '1 minute')" >/dev/null
q $db "SELECT dasa.invoke('fx_sleep_long', '{\"seconds\": 5, \"inv\": \"slow-2\"}', 'slow-2', '400 ms')" >/dev/null
ok "an invocation past its own timeout ends" settled slow-2
is "$(q $db "SELECT state FROM dasa.get_promise('slow-2')")" rejected_timedout "as rejected_timedout"
sleep 0.5
is "$(effects slow-2 slept)" 0 "with its effects rolled back"
ok "and its task completes" wait_for 10 $db "SELECT state = 'completed' FROM dasa.tasks WHERE id = 'slow-2'"

# observability while something runs
q $db "SELECT dasa.invoke('fx_sleep_long', '{\"seconds\": 2, \"inv\": \"watch-1\"}', 'watch-1')" >/dev/null
ok "a running invocation shows in pg_stat_activity as its executor's activity" wait_for 10 $db \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND query = 'dasa: fx_sleep_long (watch-1)'"
is "$(q $db "SELECT function || ' ' || (executor_pid IS NOT NULL) || ' ' || (started_at IS NOT NULL) FROM dasa.invocations WHERE id = 'watch-1'")" \
   "fx_sleep_long true true" "dasa.invocations shows its function, executor and start"
is "$(q $db "SELECT count(*) FROM dasa.executors() WHERE task_id = 'watch-1'")" 1 "dasa.executors() shows it"
settled watch-1
is "$(q $db "SELECT state || ' ' || attempts || ' ' || coalesce(last_error, '-') FROM dasa.invocations WHERE id = 'broken-1'")" \
   "rejected 3 out of stock" "dasa.invocations shows attempts and the last error"

# the synchronous call
is "$(q $db "CALL dasa.call('fx_add', '{\"n\": 1, \"inv\": \"call-1\"}')")" '{"n": 2}' "CALL dasa.call returns the value"
out=$(psql -XAtq -v VERBOSITY=verbose -d $db -c "BEGIN" -c "CALL dasa.call('fx_add', '{\"n\": 1}')" 2>&1)
case "$out" in *"2D000: dasa.call cannot run inside a transaction block"*) r=0 ;; *) r=1 ;; esac
is $r 0 "inside a transaction block it refuses (2D000) instead of hanging"
out=$(psql -XAtq -v VERBOSITY=verbose -d $db -c "CALL dasa.call('fx_broken', '{}')" 2>&1)
case "$out" in *"DA001"*) r=0 ;; *) r=1 ;; esac
is $r 0 "a rejected call raises DA001"

# unregistered while pending: the invocation fails clearly, without retries
q $db "BEGIN; SELECT dasa.invoke('fx_add', '{\"inv\": \"gone-1\"}', 'gone-1'); SELECT dasa.unregister('fx_add'); COMMIT" >/dev/null
ok "an invocation of an unregistered function settles" settled gone-1
is "$(q $db "SELECT state || ' ' || (value->>'sqlstate') || ' ' || (value->>'attempts') FROM dasa.get_promise('gone-1')")" "rejected 42883 1" \
   "rejected with 42883 after one attempt"
done_testing
