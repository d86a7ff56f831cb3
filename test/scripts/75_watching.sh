#!/usr/bin/env bash
# Watching work: dasa.invocations keeps its columns' meaning while an
# invocation runs (task_state 'claimed', started_at, executor_pid) and
# after (the last attempt's start and executor, completed_at); failures are
# found by dasa.failures through an index, newest first, by function, with
# the error as JSON.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_watching
fresh_database $db
q $db "
CREATE FUNCTION wa_slow(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT pg_sleep(1.5); SELECT a';
CREATE FUNCTION wa_fail(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN RAISE EXCEPTION 'failing on purpose %', a->>'n' USING DETAIL = 'as asked'; END \$\$;
CREATE FUNCTION wa_parent(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT dasa.await(dasa.invoke(''wa_fail'', a))';
SELECT count(*) FROM (SELECT dasa.register('wa_slow', 'wa_slow(jsonb)')
  UNION ALL SELECT dasa.register('wa_fail', 'wa_fail(jsonb)', max_attempts => 2, initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('wa_parent', 'wa_parent(jsonb)')) r" >/dev/null

q $db "SELECT dasa.invoke('wa_slow', '{}', 'wa-slow')" >/dev/null
ok "while it runs, its task_state reads claimed" wait_for 10 $db \
   "SELECT task_state = 'claimed' FROM dasa.invocations WHERE id = 'wa-slow'"
is "$(q $db "SELECT (started_at IS NOT NULL) || ' ' || (executor_pid IN (SELECT pid FROM pg_stat_activity WHERE backend_type = 'dasa executor'))
             || ' ' || (completed_at IS NULL) FROM dasa.invocations WHERE id = 'wa-slow'")" "true true true" \
   "with when it started and the executor running it, and no completion yet"
running=$(q $db "SELECT started_at || ' ' || executor_pid FROM dasa.invocations WHERE id = 'wa-slow'")
ok "it finishes" wait_for 10 $db "SELECT state = 'resolved' FROM dasa.invocations WHERE id = 'wa-slow'"
is "$(q $db "SELECT task_state || ' ' || (started_at || ' ' || executor_pid = '$running') || ' ' || (completed_at >= started_at + interval '1.5 s')
             FROM dasa.invocations WHERE id = 'wa-slow'")" "completed true true" \
   "after, the same start and executor are still there, and when it completed"

# Failures.
q $db "SELECT dasa.invoke('wa_fail', jsonb_build_object('n', i), 'wa-fail-' || i) FROM generate_series(1, 3) i" >/dev/null
q $db "SELECT dasa.invoke('wa_parent', '{\"n\": 9}', 'wa-parent')" >/dev/null
ok "four invocations fail" wait_for 20 $db \
   "SELECT count(*) = 5 FROM dasa.promises WHERE state = 'rejected'"
is "$(q $db "SELECT started_at IS NOT NULL AND executor_pid IS NOT NULL AND attempts = 2 FROM dasa.invocations WHERE id = 'wa-fail-1'")" t \
   "a failed invocation shows its last attempt's start and executor"
before=$(q $db "SELECT seq_scan || ' ' || (SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'promises_failed') FROM pg_stat_user_tables WHERE relid = 'dasa.promises'::regclass")
is "$(q $db "SELECT string_agg(id, ' ' ORDER BY id) FROM dasa.failures('wa_fail')")" "wa-fail-1 wa-fail-2 wa-fail-3 wa-parent.1" \
   "dasa.failures(function) lists that function's failures"
is "$(q $db "SELECT id || ' ' || sqlstate || ' ' || (error->'detail'->>'message') FROM dasa.failures('wa_parent')")" \
   "wa-parent DA001 failing on purpose 9" "a parent's failure carries its child's error as JSON"
is "$(q $db "SELECT count(*) FROM dasa.failures(since => '1 day', \"limit\" => 2)")" 2 "limit"
sleep 1
after=$(q $db "SELECT seq_scan || ' ' || (SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'promises_failed') FROM pg_stat_user_tables WHERE relid = 'dasa.promises'::regclass")
is "${after% *}" "${before% *}" "finding failures reads no promises sequentially"
ok "it uses the failures index (scans: ${before#* } then ${after#* })" test "${after#* }" -gt "${before#* }"

done_testing
