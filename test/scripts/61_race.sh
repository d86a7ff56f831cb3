#!/usr/bin/env bash
# No lost wake-ups: thousands of parents suspend on promises that other
# sessions settle at the same moment. Each parent awaits its own external
# promise; four sessions resolve them in random order, one transaction each,
# while the parents are invoked in chunks and run (and suspend) meanwhile:
# some find their promise settled, some suspend and are woken, some race
# the settlement. Every parent must finish with its promise's value, and no
# task may stay suspended.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap
n=${RACE_PARENTS:-2000}
rounds=2

q $db "
CREATE FUNCTION race_parent(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  RETURN dasa.await(args->>'ext');
END \$\$;
SELECT count(*) FROM dasa.register('race_parent', 'race_parent(jsonb)')" >/dev/null

for round in $(seq 1 $rounds); do
  q $db "SELECT count(dasa.create_promise('race-ext-$round-' || i, '10 minutes')) FROM generate_series(1, $n) i" >/dev/null
  for s in 0 1 2 3; do
    seq $((s + 1)) 4 $n | shuf | sed "s/.*/SELECT 1 FROM dasa.resolve('race-ext-$round-&', '\"v&\"');/" >"$DASA_WORK/race-$s.sql"
  done
  pids=""
  for s in 0 1 2 3; do
    psql -XAtq -d $db -f "$DASA_WORK/race-$s.sql" >/dev/null 2>&1 &
    pids="$pids $!"
  done
  chunk=$((n / 20))
  for c in $(seq 0 19); do
    q $db "SELECT count(dasa.invoke('race_parent', jsonb_build_object('ext', 'race-ext-$round-' || i), 'race-$round-' || i))
           FROM generate_series($((c * chunk + 1)), $(((c + 1) * chunk))) i" >/dev/null
  done
  wait $pids
  diag "round $round: $(q $db "SELECT count(*) FROM dasa.tasks WHERE id LIKE 'race-$round-%' AND replays > 0") of $n parents suspended at least once"
done

ok "all $((n * rounds)) parents finish" wait_for 120 $db \
   "SELECT count(*) = $((n * rounds)) FROM dasa.promises WHERE id LIKE 'race-_-%' AND state = 'resolved'"
is "$(q $db "SELECT count(*) FROM dasa.promises p WHERE p.id LIKE 'race-_-%'
             AND p.value <> (SELECT e.value FROM dasa.promises e WHERE e.id = 'race-ext-' || substr(p.id, 6))")" 0 \
   "each with its own awaited value"
is "$(q $db "SELECT count(*) FROM dasa.tasks WHERE id LIKE 'race-%' AND state <> 'completed'")" 0 "no task is left suspended or pending"
suspended=$(q $db "SELECT count(*) FROM dasa.tasks WHERE id LIKE 'race-%' AND replays > 0")
ok "parents both suspended ($suspended) and found their promise settled ($((n * rounds - suspended))): the race was real" \
   test "$suspended" -gt 0 -a "$suspended" -lt $((n * rounds))
is "$(q $db "SELECT count(*) FROM dasa.callbacks WHERE task_id LIKE 'race-%'")" 0 "no callback is left behind"
done_testing
