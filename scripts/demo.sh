#!/usr/bin/env bash
# make demo: build and install dasa, start a private throwaway cluster, and
# walk through durable promises, printing what happens. Stops the cluster
# and removes it at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

dasa_build_install "$root"
work=$(dasa_workdir)
port=55433
dasa_cluster_init "$work" "$port"
trap 'dasa_cluster_stop "$work"; rm -rf "$work"' EXIT
dasa_cluster_start "$work"

export PGHOST=$work PGPORT=$port PGUSER=postgres
sql() { as_pg env PGHOST=$work PGPORT=$port psql -X -q -d demo -v ON_ERROR_STOP=1 "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

as_pg env PGHOST=$work PGPORT=$port psql -Xq -d postgres -c 'CREATE DATABASE demo'
sql -c 'CREATE EXTENSION dasa'
say "A private cluster in $work runs with shared_preload_libraries = 'dasa'; the launcher found the new database:"
sleep 0.5
sql -c "SELECT backend_type, datname FROM pg_stat_activity WHERE backend_type LIKE 'dasa%' ORDER BY 1"

say "Create a durable promise: a row with a deadline."
sql -c "SELECT id, state, timeout_at - created_at AS timeout FROM dasa.create_promise('order-42', '1 minute', '{\"item\": \"book\"}')"

say "Session A awaits it (blocks on its latch, no polling); session B resolves it a second later."
as_pg env PGHOST=$work PGPORT=$port psql -XAtq -d demo \
  -c "SELECT 'session A got ' || dasa.await('order-42')::text || ' at ' || to_char(clock_timestamp(), 'HH24:MI:SS.MS')" &
a=$!
sleep 1
sql -At -c "SELECT 'session B resolves at ' || to_char(clock_timestamp(), 'HH24:MI:SS.MS') || ': ' || state
            FROM dasa.resolve('order-42', '{\"shipped\": true}')"
wait $a

say "Settling again changes nothing: the stored row comes back."
sql -c "SELECT id, state, value FROM dasa.reject('order-42', '{\"oops\": 1}')"

say "A timeout firing: await a promise that nobody settles within its 1 second."
sql -c "SELECT id, state FROM dasa.create_promise('payment-7', '1 second')"
sql -c "SELECT dasa.await('payment-7')" 2>&1 || true

say "The worker settled it in the table by itself, at its deadline:"
sql -c "SELECT id, state, settled_at = timeout_at AS at_deadline FROM dasa.promises WHERE id = 'payment-7'"

say "Durability: a promise due in 3 seconds, then the whole server is killed (kill -9 of the postmaster)."
sql -c "SELECT id, state FROM dasa.create_promise('reminder-1', '3 seconds', NULL, '{\"resonate:timer\": \"true\"}')"
dasa_cluster_crash "$work"
echo "killed the postmaster and all its processes with SIGKILL"
dasa_cluster_start "$work"
echo "server started again; no client asks about reminder-1..."
sleep 4
say "...yet the worker of the new server life settled the timer:"
sql -c "SELECT id, state, settled_at = timeout_at AS at_deadline FROM dasa.promises WHERE id = 'reminder-1'"

say "Search by id pattern and state:"
sql -c "SELECT id, state FROM dasa.search_promises('*', state => 'resolved')"
echo
echo "Demo done; the throwaway cluster is being removed."
