#!/usr/bin/env bash
# History cannot slow the queue: after 100,000 invocations finished (their
# dead task rows left in place: autovacuum is off for dasa.tasks here), a
# claim reads a handful of buffers, where reading the queue index from its
# start steps over every one of them. A task that a long transaction makes
# due, with a run_at from before claims moved on, is still claimed.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_history
n=100000
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q $db "
ALTER TABLE dasa.tasks SET (autovacuum_enabled = false);
CREATE FUNCTION noop(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT a';
SELECT count(*) FROM dasa.register('noop', 'noop(jsonb)')" >/dev/null

# Buffers hit and read, from the first "Buffers:" line of a text plan on stdin.
first_buffers() {
	grep -m1 'Buffers:' | grep -o '\(hit\|read\)=[0-9]*' | tr -d 'a-z=' | awk '{s += $1} END {print s + 0}'
}

q $db "SELECT count(dasa.invoke('noop', jsonb_build_object('i', i), 'h-' || i)) FROM generate_series(1, $n) i" >/dev/null
ok "$n invocations settle" wait_for 300 $db "SELECT count(*) = $n FROM dasa.promises WHERE id LIKE 'h-%' AND state = 'resolved'"
ok "their $n dead task rows are counted" wait_for 30 $db \
   "SELECT n_dead_tup >= $n FROM pg_stat_user_tables WHERE relid = 'dasa.tasks'::regclass"
diag "dasa.tasks: $(q $db "SELECT n_live_tup || ' live, ' || n_dead_tup || ' dead rows' FROM pg_stat_user_tables WHERE relid = 'dasa.tasks'::regclass")"

from_start=$(q $db "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF)
  SELECT id FROM dasa.tasks WHERE state = 'pending' AND queue IS NULL AND run_at <= now()
  ORDER BY run_at LIMIT 100" | first_buffers)
from_start_again=$(q $db "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF)
  SELECT id FROM dasa.tasks WHERE state = 'pending' AND queue IS NULL AND run_at <= now()
  ORDER BY run_at LIMIT 100" | first_buffers)
diag "reading the queue index from its start: $from_start buffers, then $from_start_again"
ok "the dead entries are there: reading from the start takes over 200 buffers ($from_start_again)" \
   test "$from_start_again" -gt 200

plan=$(q $db "SELECT * FROM dasa._explain_claim(100)")
claim=$(echo "$plan" | first_buffers)
diag "the claim (batch of 100): $claim buffers"
ok "the claim reads the queue index (tasks_due)" grep -q 'tasks_due' <<<"$plan"
ok "the claim reads at most 20 buffers ($claim)" test "$claim" -ge 1 -a "$claim" -le 20

# More work after that: each claim still starts near the live tasks.
q $db "SELECT count(dasa.invoke('noop', jsonb_build_object('i', i), 'm-' || i)) FROM generate_series(1, 5000) i" >/dev/null
ok "5,000 more settle" wait_for 120 $db "SELECT count(*) = 5000 FROM dasa.promises WHERE id LIKE 'm-%' AND state = 'resolved'"
claim=$(q $db "SELECT * FROM dasa._explain_claim(100)" | first_buffers)
ok "after them the claim still reads at most 20 buffers ($claim)" test "$claim" -ge 1 -a "$claim" -le 20

# A long transaction's task falls due with a run_at long passed: claims
# moved their floor on meanwhile, and its commit moves it back.
q $db "BEGIN; SELECT dasa.invoke('noop', '{\"late\": true}', 'late'); SELECT pg_sleep(2.5); COMMIT" >/dev/null
ok "a task committed late with an old run_at is claimed" wait_for 30 $db \
   "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'late'"

PGOPTIONS="-c client_min_messages=warning" q postgres "DROP ROLE IF EXISTS hist_app" >/dev/null
q postgres "CREATE ROLE hist_app LOGIN IN ROLE dasa_user" >/dev/null
out=$(psql -XAtq -d $db -U hist_app -c "SELECT * FROM dasa._explain_claim()" 2>&1)
ok "only a superuser may explain the claim (it locks the tasks it would take)" grep -q "permission denied" <<<"$out"
q postgres "DROP DATABASE $db" >/dev/null
q postgres "DROP ROLE hist_app" >/dev/null
done_testing
