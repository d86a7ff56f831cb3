#!/usr/bin/env bash
# Concurrency limits: a function registered with max_running => 2 never has
# more than 2 invocations running at once across 4 executors (200 of them,
# 20 ms each), while an unlimited one of the same kind runs on more; one
# limited to 5 reaches 5 (spare executors join while limited attempts run);
# all finish; a limited function's child is never run inside its parent (which
# would bypass the limit); bad limits are refused (22023).
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_limits
# Four executors need free worker slots: the databases earlier scripts left
# behind give theirs back.
for old in $(q postgres "SELECT datname FROM pg_database WHERE datname LIKE 'dasa\_%' AND datname NOT IN ('dasa_tap', '$db')"); do
  PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $old WITH (FORCE)" >/dev/null
done
fresh_database $db
q $db "ALTER SYSTEM SET dasa.executors_per_database = 4" >/dev/null
q $db "SELECT pg_reload_conf()" >/dev/null
ok "the database gets 4 executors" wait_for 30 $db \
   "SELECT count(*) = 4 FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = current_database()"
q $db "
CREATE TABLE lm_runs (function text NOT NULL, started timestamptz NOT NULL, ended timestamptz NOT NULL);
CREATE FUNCTION lm_work(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  PERFORM pg_sleep(0.02);
  INSERT INTO lm_runs VALUES (a->>'fn', t0, clock_timestamp());
  RETURN a;
END \$\$;
CREATE FUNCTION lm_chain(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  FOR i IN 1..5 LOOP PERFORM dasa.await(dasa.invoke('lm_limited', '{\"fn\": \"chain\"}')); END LOOP;
  RETURN '5';
END \$\$;
SELECT count(*) FROM (SELECT dasa.register('lm_limited', 'lm_work(jsonb)', max_running => 2)
  UNION ALL SELECT dasa.register('lm_free', 'lm_work(jsonb)')
  UNION ALL SELECT dasa.register('lm_chain', 'lm_chain(jsonb)')) r" >/dev/null

is "$(sqlstate_of $db "SELECT dasa.register('lm_bad', 'lm_work(jsonb)', max_running => 0)")" 22023 "max_running 0 is refused (22023)"
is "$(q $db "SELECT max_running FROM dasa.functions WHERE name = 'lm_limited'")" 2 "the limit is recorded"

q $db "SELECT count(dasa.invoke('lm_free', '{\"fn\": \"free\"}')) FROM generate_series(1, 200)" >/dev/null
ok "200 invocations of an unlimited function finish" wait_for 120 $db "SELECT count(*) = 200 FROM lm_runs"
q $db "SELECT count(dasa.invoke('lm_limited', '{\"fn\": \"limited\"}')) FROM generate_series(1, 200)" >/dev/null
ok "then 200 of the limited one" wait_for 120 $db "SELECT count(*) = 400 FROM lm_runs"
concurrency() {  # the most runs of $1 that overlapped at one start
  q $db "SELECT max(n) FROM (SELECT (SELECT count(*) FROM lm_runs b WHERE b.function = a.function
                                       AND b.started <= a.started AND b.ended > a.started) n
                             FROM lm_runs a WHERE a.function = '$1') c"
}
limited=$(concurrency limited)
free=$(concurrency free)
diag "most running at once: limited $limited, unlimited $free"
is "$limited" 2 "the limited function never ran more than 2 at once (and did run 2)"
ok "the unlimited one ran on more executors at once ($free)" test "$free" -gt 2

# A limit above the number of executors: spares join while they run it.
q $db "SELECT count(*) FROM (SELECT dasa.register('lm_five', 'lm_work(jsonb)', max_running => 5)) r" >/dev/null
q $db "SELECT count(dasa.invoke('lm_five', '{\"fn\": \"five\"}')) FROM generate_series(1, 200)" >/dev/null
ok "then 200 of a function limited to 5" wait_for 120 $db "SELECT count(*) = 200 FROM lm_runs WHERE function = 'five'"
five=$(concurrency five)
diag "most of the function limited to 5 running at once with 4 executors: $five"
is "$five" 5 "it never ran more than 5 at once, and did run 5 (4 executors and the spares they brought)"

is "$(q $db "CALL dasa.call('lm_chain', '{}', 'lm-chain')")" 5 "a chain of limited steps finishes"
is "$(q $db "SELECT count(*) FROM dasa.tasks WHERE id LIKE 'lm-chain.%' AND started_at IS NOT NULL AND executor_pid IS NOT NULL")" 5 \
   "each step ran as an invocation of its own (never inside its parent, past the limit)"

is "$(q $db "SELECT bool_and(limited) FILTER (WHERE function IN ('lm_limited', 'lm_five')) || ' '
             || bool_or(limited) FILTER (WHERE function NOT IN ('lm_limited', 'lm_five')) FROM dasa.tasks")" "true false" \
   "the limited functions' tasks (children included) wait in their own queue, the others' do not"
q $db "SELECT count(*) FROM (SELECT dasa.register('lm_unlimited_later', 'lm_work(jsonb)', max_running => 1)) r;
       SELECT count(dasa.invoke('lm_unlimited_later', '{\"fn\": \"later\"}', start_at => now() + interval '2 seconds'))
       FROM generate_series(1, 5)" >/dev/null
is "$(q $db "SELECT scheduled FROM dasa.stats() WHERE function = 'lm_unlimited_later'")" 5 \
   "dasa.stats counts the tasks waiting in the limited queue"
q $db "SELECT count(*) FROM (SELECT dasa.register('lm_unlimited_later', 'lm_work(jsonb)')) r" >/dev/null
ok "tasks queued apart while their function was limited still run once it no longer is" wait_for 30 $db \
   "SELECT count(*) = 5 FROM lm_runs WHERE function = 'later'"

q $db "ALTER SYSTEM RESET dasa.executors_per_database" >/dev/null
q $db "SELECT pg_reload_conf()" >/dev/null
ok "back to 2 executors per database" wait_for 30 $db \
   "SELECT coalesce(max(n), 0) <= 2 FROM (SELECT count(*) n FROM pg_stat_activity WHERE backend_type = 'dasa executor' GROUP BY datname) e"
# A limited function's attempts mostly wait (on what the limit guards): the
# database gets a spare executor for each one running, so that the other
# functions keep their executors; spares leave when that is over.
executors() { q $db "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = current_database()"; }
q $db "SELECT count(dasa.invoke('lm_limited', '{\"fn\": \"beside\"}')) FROM generate_series(1, 150)" >/dev/null
ok "while the limited function runs (2 at once), spares join the 2 executors" wait_for 20 $db \
   "SELECT count(*) > 2 FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = current_database()"
q $db "SELECT count(dasa.invoke('lm_free', '{\"fn\": \"free beside\"}')) FROM generate_series(1, 100)" >/dev/null
ok "all of both finish" wait_for 120 $db "SELECT count(*) = 250 FROM lm_runs WHERE function IN ('beside', 'free beside')"
# the most runs of the unlimited function that overlapped at one start while the limited one ran
beside=$(q $db "SELECT coalesce(max(n), 0) FROM (SELECT (SELECT count(*) FROM lm_runs b WHERE b.function = a.function
                                       AND b.started <= a.started AND b.ended > a.started) n
                             FROM lm_runs a WHERE a.function = 'free beside'
                             AND EXISTS (SELECT FROM lm_runs c WHERE c.function = 'beside'
                                         AND c.started <= a.started AND c.ended > a.started)) x")
diag "most of the unlimited function running at once while the limited one ran: $beside"
ok "the unlimited function still ran on 2 executors at once while the limited one ran 2" test "$beside" -ge 2
is "$(concurrency beside)" 2 "and the limited one never ran more than 2 at once"
ok "the spares leave once they have nothing to do" wait_for 30 $db \
   "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = current_database()"
diag "executors now: $(executors)"
done_testing
