#!/usr/bin/env bash
# dasa.await across sessions: one session waits, another settles. The
# waiter's safety-net re-check is set to an hour, so only the commit-time
# wake-up (or the promise's own deadline) can end its wait.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap
out=$DASA_WORK/await
mkdir -p "$out"

# await_in_background NAME ID [TIMEOUT]: start a waiting session (its pid in
# $bg_pid); its output goes to $out/NAME
await_in_background() {
  local timeout=${3:-NULL}
  [ "$timeout" != NULL ] && timeout="'$timeout'"
  psql -XAtq -v VERBOSITY=verbose -d $db \
    -c "SET dasa.await_recheck_interval = '1h'" \
    -c "SELECT dasa.await('$2', $timeout)" >"$out/$1" 2>&1 &
  bg_pid=$!
}

# until the session awaiting ID is asleep in dasa.await
waiting_on() {
  wait_for 20 $db "SELECT count(*) > 0 FROM pg_stat_activity
                   WHERE wait_event_type = 'Extension' AND query LIKE '%dasa.await(''$1''%'"
}

q $db "SELECT dasa.create_promise(id, '1 hour') FROM unnest(ARRAY['aw-1','aw-2','aw-3','aw-5','aw-6']) id" >/dev/null

await_in_background resolved aw-1; pid=$bg_pid
ok "a session sleeps in dasa.await while the promise is pending" waiting_on aw-1
q $db "SELECT dasa.resolve('aw-1', '{\"answer\": 42}')" >/dev/null
wait $pid
is "$(cat "$out/resolved")" '{"answer": 42}' "the awaiting session returns the resolved value"

await_in_background rejected aw-2; pid=$bg_pid
waiting_on aw-2
q $db "SELECT dasa.reject('aw-2', '{\"reason\": \"no stock\"}')" >/dev/null
wait $pid
ok "a rejection raises SQLSTATE DA001" grep -q 'ERROR:  DA001: promise "aw-2" was rejected' "$out/rejected"
ok "the error carries the rejection value in its detail" grep -q 'DETAIL:  {"reason": "no stock"}' "$out/rejected"

await_in_background canceled aw-3; pid=$bg_pid
waiting_on aw-3
q $db "SELECT dasa.cancel('aw-3', '\"stop\"')" >/dev/null
wait $pid
ok "a cancellation raises SQLSTATE DA002" grep -q 'ERROR:  DA002: promise "aw-3" was canceled' "$out/canceled"

q $db "SELECT dasa.create_promise('aw-4', '300 ms')" >/dev/null
await_in_background timedout aw-4; pid=$bg_pid
wait $pid
ok "the promise's own timeout ends the wait with SQLSTATE DA003" grep -q 'ERROR:  DA003: promise "aw-4" timed out' "$out/timedout"

await_in_background wait_timeout aw-5 '200 ms'; pid=$bg_pid
wait $pid
ok "await's own timeout raises SQLSTATE DA004" grep -q 'ERROR:  DA004: timed out awaiting promise "aw-5"' "$out/wait_timeout"
is "$(q $db "SELECT state FROM dasa.get_promise('aw-5')")" pending "and leaves the promise pending"

# many waiters on one promise all wake
pids=""
for i in 1 2 3 4 5; do await_in_background many_$i aw-6; pids="$pids $bg_pid"; done
ok "five sessions await one promise" wait_for 20 $db \
  "SELECT count(*) = 5 FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND query LIKE '%dasa.await(''aw-6''%'"
q $db "SELECT dasa.resolve('aw-6', '\"all\"')" >/dev/null
wait $pids
is "$(cat "$out"/many_* | sort -u)" '"all"' "all five return the value"

# a timer settled by the worker wakes its awaiter
q $db "SELECT dasa.create_promise('aw-7', '400 ms', NULL, '{\"resonate:timer\": \"true\"}')" >/dev/null
await_in_background timer aw-7; pid=$bg_pid
wait $pid
is "$(cat "$out/timer")" "" "a timer resolves its awaiter with a NULL value"

# waiting inside the creating transaction could never end
psql -XAtq -v VERBOSITY=verbose -d $db -c "BEGIN" -c "SELECT dasa.create_promise('aw-8', '1 hour')" \
  -c "SELECT dasa.await('aw-8')" >"$out/same_xact" 2>&1
ok "awaiting a promise created in the same transaction is refused (25000)" \
  grep -q 'ERROR:  25000: cannot await promise "aw-8" in the transaction that created it' "$out/same_xact"
ok "the error hints at committing first" grep -q 'HINT:  Commit the transaction' "$out/same_xact"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id = 'aw-8'")" 0 "and the transaction rolled back"

# REPEATABLE READ: a settled promise works, a pending one is refused
q $db "SELECT dasa.create_promise('aw-9', '1 hour')" >/dev/null
psql -XAtq -v VERBOSITY=verbose -d $db -c "BEGIN ISOLATION LEVEL REPEATABLE READ" \
  -c "SELECT dasa.await('aw-1')" -c "SELECT dasa.await('aw-9')" >"$out/rr" 2>&1
ok "under REPEATABLE READ a settled promise is returned" grep -q '{"answer": 42}' "$out/rr"
ok "under REPEATABLE READ a pending one is refused (25000)" \
  grep -q 'ERROR:  25000: cannot await pending promise "aw-9" under REPEATABLE READ isolation' "$out/rr"

# a waiting session can be cancelled
await_in_background cancelled_wait aw-9; pid=$bg_pid
waiting_on aw-9
q $db "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%dasa.await(''aw-9''%' AND pid <> pg_backend_pid()" >/dev/null
wait $pid
ok "pg_cancel_backend interrupts a waiting await" grep -q '57014' "$out/cancelled_wait"

done_testing
