#!/usr/bin/env bash
# Racing settlements: for each promise, 10 sessions try to resolve, reject or
# cancel it at the same instant. They are lined up behind a row lock that a
# gatekeeper session holds until all 10 are waiting, then released at once.
# Exactly one must win; every racer must return the winner's row.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap
racers=10
rounds=${RACE_ROUNDS:-12}
out=$DASA_WORK/race
mkdir -p "$out"

ops=(resolve reject cancel)

# start_racers ID: all racers at once, each with its own value; pids in $racer_pids
start_racers() {
  racer_pids=""
  for r in $(seq 1 $racers); do
    local op=${ops[$((r % 3))]}
    psql -XAtq -d $db -c "SELECT state || ' ' || coalesce(value::text, 'null') || ' ' || settled_at
                          FROM dasa.$op('$1', '\"racer-$r\"')" >"$out/$1.$r" 2>&1 &
    racer_pids="$racer_pids $!"
  done
}

# A promise with a deadline 300 ms away, raced by settlements sent just before it.
deadline_round() {
  q $db "SELECT dasa.create_promise('$1', '300 ms')" >/dev/null
  sleep 0.22
  start_racers "$1"
  wait $racer_pids
}

race_round() {
  local id=$1
  q $db "SELECT dasa.create_promise('$id', '1 hour')" >/dev/null

  # The gatekeeper locks the row, waits until all racers queue behind it, commits.
  psql -XAtq -d $db >/dev/null 2>&1 <<SQL &
BEGIN;
SELECT 1 FROM dasa.promises WHERE id = '$id' FOR UPDATE;
DO \$\$
BEGIN
  FOR i IN 1..2000 LOOP
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN (SELECT count(*) FROM pg_stat_activity
               WHERE wait_event_type = 'Lock' AND query LIKE '%''$id''%') >= $racers;
    PERFORM pg_sleep(0.01);
  END LOOP;
END
\$\$;
COMMIT;
SQL
  local gate=$!
  wait_for 20 $db "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                   WHERE l.locktype = 'transactionid' AND a.query LIKE '%pg_stat_clear_snapshot%'" || true
  start_racers "$id"
  wait $racer_pids $gate
}

winners_ok=0; same_ok=0; stored_ok=0
for round in $(seq 1 $rounds); do
  id="race-$round"
  # the last rounds race against the promise's own deadline as well
  timeout='1 hour'; [ $round -gt $((rounds - 3)) ] && timeout=deadline
  if [ "$timeout" = deadline ]; then deadline_round "$id"; else race_round "$id"; fi
  distinct=$(cat "$out/$id".* | sort -u | wc -l)
  winners=0
  for r in $(seq 1 $racers); do
    grep -q "\"racer-$r\"" "$out/$id.$r" && winners=$((winners + 1))
  done
  stored=$(q $db "SELECT state || ' ' || coalesce(value::text, 'null') || ' ' || settled_at FROM dasa.promises WHERE id = '$id'")
  returned=$(cat "$out/$id.1")
  if [ "$timeout" = '1 hour' ]; then [ $winners = 1 ] && winners_ok=$((winners_ok + 1));
  else [ $winners -le 1 ] && winners_ok=$((winners_ok + 1)); fi
  [ "$distinct" = 1 ] && same_ok=$((same_ok + 1))
  [ "$stored" = "$returned" ] && stored_ok=$((stored_ok + 1))
  [ "$distinct" = 1 ] || diag "round $round: $(cat "$out/$id".* | sort | uniq -c)"
done

is $winners_ok $rounds "exactly one of $racers racing sessions wins, in each of $rounds rounds (at most one when the deadline races too)"
is $same_ok $rounds "every racer returns the same row"
is $stored_ok $rounds "the stored row is the one returned"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id LIKE 'race-%' AND state = 'pending'")" 0 "no raced promise is left pending"
done_testing
