#!/usr/bin/env bash
# Batching never costs an attempt: 1,000 invocations (at most one attempt
# each), every one updating one of 10 shared rows and taking 1 ms, run by
# two executors in batches. A batch holds its earlier attempts' row locks
# until it commits, so the two executors' batches wait for each other; an
# attempt that would wait behind another batch gives way (its batch
# commits, the attempt runs first in the next) instead of deadlocking. All
# 1,000 resolve, none rejected, each update there exactly once.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_contention
n=1000
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q $db "
CREATE TABLE counters (id int PRIMARY KEY, hits int NOT NULL);
INSERT INTO counters SELECT i, 0 FROM generate_series(0, 9) i;
CREATE FUNCTION bump(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  UPDATE counters SET hits = hits + 1 WHERE id = (a->>'row')::int;
  PERFORM pg_sleep(0.001);
  RETURN a;
END \$\$;
SELECT count(*) FROM dasa.register('bump', 'bump(jsonb)', max_attempts => 1)" >/dev/null
is "$(q postgres "SHOW dasa.executors_per_database")" 2 "two executors"
started=$SECONDS
q $db "SELECT count(dasa.invoke('bump', jsonb_build_object('row', (i * 7) % 10), 'b-' || i)) FROM generate_series(1, $n) i" >/dev/null
ok "all $n invocations settle" wait_for 120 $db "SELECT count(*) = $n FROM dasa.promises WHERE id LIKE 'b-%' AND state <> 'pending'"
diag "$n contending invocations in $((SECONDS - started)) s"
is "$(q $db "SELECT count(*) FILTER (WHERE state = 'resolved') || ' ' || count(*) FILTER (WHERE state <> 'resolved') FROM dasa.promises WHERE id LIKE 'b-%'")" \
   "$n 0" "every one resolved, none rejected (max_attempts 1)"
is "$(q $db "SELECT count(*) FROM dasa.attempts")" 0 "no failed attempt was recorded"
is "$(q $db "SELECT sum(hits) FROM counters")" $n "each update is there exactly once"
done_testing
