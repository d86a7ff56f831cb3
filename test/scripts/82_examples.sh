#!/usr/bin/env bash
# The example external workers (examples/): the Node.js one (node-postgres)
# and the Python one (psycopg 3) work one queue at the same time. Woken by
# the queue's NOTIFY (their poll is 30 s), they complete 300 tasks, each
# once, its effect committed with its result; a failing task is rejected
# after its attempts with the workers' message; both exit when drained,
# and promptly on SIGTERM.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_examples
n=300
examples=$DASA_SUITE/../examples	# run.sh copies examples/ beside test/
work=$DASA_WORK/examples
export PGDATABASE=$db

# stop_within SECONDS PID: PID's exit status once it exits, 124 (and killed) if it does not in time.
stop_within() {
  local deadline=$((SECONDS + $1))
  while kill -0 "$2" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  kill -0 "$2" 2>/dev/null && { kill -9 "$2"; wait "$2" 2>/dev/null; return 124; }
  wait "$2"
}
# (exec: so that $! of "node_worker ... &" is the worker's pid)
node_worker() { exec node "$work/node/worker.js" squares --poll 30 "$@"; }
py_worker() { exec /usr/bin/python3 "$work/python/worker.py" squares --poll 30 "$@"; }

# A writable copy (the suite's may be read-only), with pg installed from the lock file.
rm -rf "$work"; mkdir -p "$work/home"
cp -r "$examples/node" "$examples/python" "$work/"
started=$SECONDS
(cd "$work/node" && HOME=$work/home npm ci --no-audit --no-fund --no-update-notifier) >"$work/npm.log" 2>&1
status=$?
is "$status" 0 "npm installs node-postgres for the Node.js worker"
[ "$status" = 0 ] || { sed 's/^/#   /' "$work/npm.log" | tail -20 >&2; done_testing; exit 1; }
diag "npm ci: $((SECONDS - started)) s, pg $(node -p 'require(process.argv[1]).version' "$work/node/node_modules/pg/package.json")"
ok "Debian's python3 has psycopg 3" /usr/bin/python3 -c 'import psycopg; assert psycopg.__version__ >= "3"'

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q $db "CREATE TABLE example_effects (task_id text PRIMARY KEY, worker text NOT NULL)" >/dev/null
q $db "SELECT dasa.register_external('square', 'squares', max_attempts => 2, initial_backoff => '100 ms')" >/dev/null

# Both workers at once, exiting once the queue has had nothing for them for 8 s.
node_worker --name node-1 --drain 8 >"$work/node-1.log" 2>&1 &
node_pid=$!
py_worker --name py-1 --drain 8 >"$work/py-1.log" 2>&1 &
py_pid=$!
ok "both workers are up (they have listened and claimed)" wait_for 15 $db \
   "SELECT count(*) = 2 FROM dasa.workers WHERE name IN ('node-1', 'py-1')"
q $db "BEGIN;
       SELECT count(dasa.invoke('square', jsonb_build_object('n', i), 'sq-' || i)) FROM generate_series(1, $n) i;
       SELECT dasa.invoke('square', '{\"fail\": true}', 'sq-fail');
       COMMIT" >/dev/null
ok "all $n tasks resolve within 5 s: the workers wake on the queue's NOTIFY" wait_for 5 $db \
   "SELECT count(*) = $n FROM dasa.promises WHERE id LIKE 'sq-%' AND state = 'resolved'"
diag "$n tasks done in $(q $db "SELECT round(extract(epoch FROM max(settled_at) - min(created_at)), 2)
                              FROM dasa.promises WHERE id LIKE 'sq-%' AND state = 'resolved'") s"
stop_within 30 $node_pid; is "$?" 0 "the Node.js worker exits 0 once the queue is drained"
stop_within 30 $py_pid; is "$?" 0 "the Python worker exits 0 once the queue is drained"

is "$(q $db "SELECT count(*) FROM dasa.promises p JOIN example_effects e ON e.task_id = p.id
             WHERE p.state = 'resolved' AND (p.value->>'square')::int = (p.param->>'n')::int * (p.param->>'n')::int")" \
   $n "each resolved task has its result and its one effect row"
is "$(q $db "SELECT count(*) FROM example_effects")" $n "and there are no other effect rows"
is "$(q $db "SELECT count(*) FROM dasa.attempts WHERE task_id <> 'sq-fail'")" 0 "each done at its first attempt"
is "$(q $db "SELECT string_agg(worker || ':' || (count > 0), ' ' ORDER BY worker) FROM (
               SELECT w AS worker, count(e.*) FROM unnest(ARRAY['node-1', 'py-1']) w
               LEFT JOIN example_effects e ON e.worker = w GROUP BY w) c")" \
   "node-1:true py-1:true" "both workers did some"
diag "$(q $db "SELECT string_agg(worker || ': ' || count, ', ' ORDER BY worker) FROM (
                 SELECT worker, count(*) FROM example_effects GROUP BY worker) c")"
is "$(q $db "SELECT state || ' / ' || (value->>'message') || ' / ' || (value->>'attempts') FROM dasa.promises WHERE id = 'sq-fail'")" \
   "rejected / the task asked to fail / 2" "a failing task is rejected after its 2 attempts, with the workers' message"
is "$(q $db "SELECT count(*) FROM dasa.attempts WHERE task_id = 'sq-fail' AND message = 'the task asked to fail'")" 2 \
   "each failed attempt recorded"

# SIGTERM ends a waiting worker at once, though its next poll is 30 s away.
node_worker --name node-2 >"$work/node-2.log" 2>&1 &
node_pid=$!
py_worker --name py-2 >"$work/py-2.log" 2>&1 &
py_pid=$!
ok "two more workers are up" wait_for 15 $db "SELECT count(*) = 2 FROM dasa.workers WHERE name IN ('node-2', 'py-2')"
sleep 0.5
kill -TERM $node_pid $py_pid
stop_within 3 $node_pid; is "$?" 0 "SIGTERM: the Node.js worker exits 0 at once"
stop_within 3 $py_pid; is "$?" 0 "SIGTERM: the Python worker exits 0 at once"

for log in "$work"/*-[12].log; do [ -s "$log" ] && { diag "$log:"; sed 's/^/#   /' "$log" >&2; }; done
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE $db" >/dev/null
done_testing
