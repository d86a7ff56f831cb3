#!/usr/bin/env bash
# The launcher: finds the databases that have dasa with no configuration,
# starts a worker in each, notices CREATE/DROP EXTENSION without a restart,
# stays out of the way of DROP DATABASE, and comes back working after a
# kill -9 (which makes the postmaster reinitialize everything).
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"

workers_in() {  # number of dasa workers connected to database $1
  q postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = '$1'"
}
worker_pid() {
  q postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = '$1'"
}
# settles_in DB: a promise with a 100 ms timeout gets settled by the worker, with no reader
settles_in() {
  local id="probe-$RANDOM$RANDOM"
  q "$1" "SELECT dasa.create_promise('$id', '100 ms')" >/dev/null &&
    wait_for 15 "$1" "SELECT state = 'rejected_timedout' FROM dasa.promises WHERE id = '$id'"
}

is "$(q postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dasa launcher'")" 1 \
   "one launcher shows in pg_stat_activity"
ok "the suite's database has its worker" wait_for 10 postgres \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = 'dasa_tap'"
is "$(workers_in postgres)" 0 "a database without the extension has no worker"

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS dasa_l2"
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS dasa_l3"
q postgres "CREATE DATABASE dasa_l2" >/dev/null
q dasa_l2 "CREATE EXTENSION dasa" >/dev/null
ok "CREATE EXTENSION in a second database starts its own worker" wait_for 10 postgres \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = 'dasa_l2'"
ok "and that worker settles timeouts there" settles_in dasa_l2

q dasa_l2 "DROP EXTENSION dasa" >/dev/null
ok "DROP EXTENSION stops the worker" wait_for 10 postgres \
   "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = 'dasa_l2'"
sleep 1.5
is "$(workers_in dasa_l2)" 0 "and the launcher does not start it again"

q dasa_l2 "CREATE EXTENSION dasa" >/dev/null
ok "CREATE EXTENSION again brings it back" wait_for 10 postgres \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = 'dasa_l2'"

q postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = 'dasa_l2'" >/dev/null
ok "a terminated worker is started again by the launcher" wait_for 10 postgres \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = 'dasa_l2'"

# CREATE DATABASE from a template needs the template idle: the worker steps aside
ok "CREATE DATABASE ... TEMPLATE a database with dasa works" \
   q postgres "CREATE DATABASE dasa_l3 TEMPLATE dasa_l2"
ok "the copy gets a worker of its own (found without CREATE EXTENSION)" wait_for 15 postgres \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = 'dasa_l3'"
ok "the template's worker is back" wait_for 10 postgres \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = 'dasa_l2'"

# kill -9 of a worker: the postmaster reinitializes; everything comes back by itself
pending_id="crash-$RANDOM"
q dasa_l2 "SELECT dasa.create_promise('$pending_id', '3 seconds')" >/dev/null
old=$(worker_pid dasa_l2)
kill -9 "$old"
sleep 0.5
ok "the server accepts connections again after kill -9 of a worker" wait_ready 60
ok "the launcher is back" wait_for 20 postgres \
   "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dasa launcher'"
ok "every database with dasa has its worker again" wait_for 20 postgres \
   "SELECT count(DISTINCT datname) = 3 FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname IN ('dasa_tap', 'dasa_l2', 'dasa_l3')"
ok "a promise whose deadline fell after the crash is settled by the new worker" \
   wait_for 20 dasa_l2 "SELECT state = 'rejected_timedout' FROM dasa.promises WHERE id = '$pending_id'"
ok "and new timeouts are settled too" settles_in dasa_l2

# kill -9 of the launcher itself
kill -9 "$(q postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dasa launcher'")"
sleep 0.5
wait_ready 60
ok "after kill -9 of the launcher, launcher and workers return" wait_for 20 postgres \
   "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dasa launcher') = 1
       AND (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = 'dasa_l2') = 1"
ok "and work goes on" settles_in dasa_tap

# databases with dasa can be dropped without FORCE: the worker steps aside
ok "DROP DATABASE of a database with a running worker succeeds" q postgres "DROP DATABASE dasa_l3"
ok "DROP DATABASE dasa_l2 too" q postgres "DROP DATABASE dasa_l2"
sleep 1.5
is "$(q postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND (datname IN ('dasa_l2', 'dasa_l3') OR datname IS NULL)")" 0 \
   "no worker is left for the dropped databases"
ok "the suite's own worker is unaffected" settles_in dasa_tap
done_testing
