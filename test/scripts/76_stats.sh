#!/usr/bin/env bash
# dasa.stats: per function, what waits, runs and is suspended now, and what
# ended over the window (resolved, failed, failed attempts, run time and
# wait p50/p99), agreeing with the rows it summarises, read through indexes
# only (no sequential scan of a dasa table even when history is all there
# is), and showing a role only what it may see.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_stats
quiet() { PGOPTIONS='-c client_min_messages=warning' q "$@"; }
fresh_database $db
quiet postgres "DROP ROLE IF EXISTS st_stranger" >/dev/null
q postgres "CREATE ROLE st_stranger IN ROLE dasa_user" >/dev/null
q $db "
CREATE FUNCTION st_noop(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT a';
CREATE FUNCTION st_bad(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''bad''; END';
CREATE FUNCTION st_gated(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT dasa.await(''st-gate'')';
CREATE FUNCTION st_slow(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT pg_sleep(3); SELECT a';
SELECT count(*) FROM dasa.create_promise('st-gate', '1 hour');
SELECT count(*) FROM (SELECT dasa.register('st_noop', 'st_noop(jsonb)')
  UNION ALL SELECT dasa.register('st_bad', 'st_bad(jsonb)', max_attempts => 2, initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('st_gated', 'st_gated(jsonb)')
  UNION ALL SELECT dasa.register('st_slow', 'st_slow(jsonb)')) r;
SELECT count(dasa.invoke('st_noop', jsonb_build_object('i', i))) FROM generate_series(1, 20) i;
SELECT count(dasa.invoke('st_bad', '{}')) FROM generate_series(1, 3);
SELECT count(dasa.invoke('st_gated', '{}')) FROM generate_series(1, 2);
SELECT count(dasa.invoke('st_noop', '{}', start_at => now() + interval '1 hour')) FROM generate_series(1, 4);
SELECT dasa.invoke('st_slow', '{}', 'st-slow')" >/dev/null
ok "the work settles where it can" wait_for 30 $db \
   "SELECT count(*) FILTER (WHERE function = 'st_noop' AND state = 'resolved') = 20
       AND count(*) FILTER (WHERE function = 'st_bad' AND state = 'rejected') = 3
       AND count(*) FILTER (WHERE function = 'st_gated' AND task_state = 'suspended') = 2
       AND count(*) FILTER (WHERE function = 'st_slow' AND task_state = 'claimed') = 1
     FROM dasa.invocations"
stats() { q $db "SELECT function || ': due ' || due || ', scheduled ' || scheduled || ', running ' || running
                 || ', suspended ' || suspended || ', resolved ' || resolved || ', failed ' || failed
                 || ', failed attempts ' || failed_attempts FROM dasa.stats('1 hour') ORDER BY function" | tr '\n' ';'; }
is "$(stats)" "st_bad: due 0, scheduled 0, running 0, suspended 0, resolved 0, failed 3, failed attempts 6;st_gated: due 0, scheduled 0, running 0, suspended 2, resolved 0, failed 0, failed attempts 0;st_noop: due 0, scheduled 4, running 0, suspended 0, resolved 20, failed 0, failed attempts 0;st_slow: due 0, scheduled 0, running 1, suspended 0, resolved 0, failed 0, failed attempts 0;" \
   "dasa.stats counts what waits, runs, is suspended and ended, per function"
is "$(q $db "SELECT (s.run_p50_ms = (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at) * 1000)
                                     FROM dasa.invocations WHERE function = 'st_noop' AND completed_at IS NOT NULL))
                    AND s.run_p99_ms >= s.run_p50_ms AND s.wait_p50_ms >= 0 AND s.wait_p99_ms >= s.wait_p50_ms
             FROM dasa.stats('1 hour') s WHERE function = 'st_noop'")" t \
   "its run-time percentiles agree with the invocations' start and completion times"
is "$(q $db "SELECT count(*) FROM dasa.stats('1 hour') s JOIN (SELECT function, count(*) FILTER (WHERE state = 'resolved') r,
                    count(*) FILTER (WHERE state = 'rejected') f FROM dasa.invocations GROUP BY function) i USING (function)
             WHERE s.resolved = i.r AND s.failed = i.f")" 4 "resolved and failed agree with dasa.invocations for every function"
q $db "SELECT count(dasa.invoke('st_noop', '{}', start_at => now() - interval '1 minute')) FROM generate_series(1, 1)" >/dev/null
is "$(q $db "SELECT count(*) FROM dasa.stats('0 seconds') WHERE function = 'st_noop' AND resolved = 0")" 1 "a window of 0 counts nothing as ended"

before=$(q $db "SELECT sum(seq_scan) FROM pg_stat_user_tables WHERE schemaname = 'dasa' AND relname IN ('promises', 'tasks', 'attempts')")
PGOPTIONS='-c enable_seqscan=off' q $db "SELECT count(*) FROM dasa.stats('5 minutes')" >/dev/null
sleep 1
after=$(q $db "SELECT sum(seq_scan) FROM pg_stat_user_tables WHERE schemaname = 'dasa' AND relname IN ('promises', 'tasks', 'attempts')")
is "$after" "$before" "it reads promises, tasks and attempts through indexes only (no sequential scan where one can be avoided)"
is "$(psql -XAtq -d $db -c "SET ROLE st_stranger" -c "SELECT count(*) FROM dasa.stats('1 hour')")" 0 \
   "a role that may see none of these invocations gets no row"

done_testing
