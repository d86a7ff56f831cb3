#!/usr/bin/env bash
# make demo: build and install dasa, start a private throwaway cluster, and
# walk through durable promises and functions (invoke, await, a crash and
# the recovery), printing what happens. Stops the cluster
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
admin() { as_pg env PGHOST=$work PGPORT=$port psql -X -q -d demo -v ON_ERROR_STOP=1 "$@"; }
# everything else runs as the application role, as an application would
sql() { as_pg env PGHOST=$work PGPORT=$port psql -X -q -U app -d demo -v ON_ERROR_STOP=1 "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

as_pg env PGHOST=$work PGPORT=$port psql -Xq -d postgres -c 'CREATE DATABASE demo'
admin -c 'CREATE EXTENSION dasa' \
  -c 'CREATE ROLE app LOGIN' -c 'GRANT dasa_user TO app' -c 'CREATE SCHEMA app AUTHORIZATION app'
say "A private cluster in $work runs with shared_preload_libraries = 'dasa'; the launcher found the new database.
   From here on the application role app (a member of dasa_user, with a schema of its own) runs everything:"
sleep 0.5
admin -c "SELECT backend_type, datname FROM pg_stat_activity WHERE backend_type LIKE 'dasa%' ORDER BY 1"

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
sql -c "SELECT id, state, settled_at = timeout_at AS at_deadline FROM dasa.visible_promises WHERE id = 'payment-7'"

say "Durability: a promise due in 3 seconds, then the whole server is killed (kill -9 of the postmaster)."
sql -c "SELECT id, state FROM dasa.create_promise('reminder-1', '3 seconds', NULL, '{\"resonate:timer\": \"true\"}')"
dasa_cluster_crash "$work"
echo "killed the postmaster and all its processes with SIGKILL"
dasa_cluster_start "$work"
echo "server started again; no client asks about reminder-1..."
sleep 4
say "...yet the worker of the new server life settled the timer:"
sql -c "SELECT id, state, settled_at = timeout_at AS at_deadline FROM dasa.visible_promises WHERE id = 'reminder-1'"

say "Durable functions: register a PL/pgSQL function (jsonb -> jsonb) and invoke it."
sql <<'SQL'
CREATE TABLE shipments (order_id text, shipped_at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION ship(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO shipments (order_id) VALUES (args->>'order');
  PERFORM pg_sleep(0.02);
  RETURN jsonb_build_object('shipped', args->>'order', 'by', current_user);
END $$;
SELECT name, proc, owner, max_attempts FROM dasa.register('ship', 'ship(jsonb)');
SQL
sql -c "SELECT dasa.invoke('ship', '{\"order\": \"o-1\"}', 'ship-o-1') AS invocation_id"
sql -c "SELECT dasa.await('ship-o-1') AS awaited_value"
sql -c "CALL dasa.call('ship', '{\"order\": \"o-2\"}')"

say "A workflow: fulfil invokes two children, awaits them, then awaits a person's approval."
sql <<'SQL'
CREATE FUNCTION charge(args jsonb) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT jsonb_build_object('charged', args->'amount') $$;
CREATE FUNCTION fulfil(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE pay text := dasa.invoke('charge', args);
        ship text := dasa.invoke('ship', args);
BEGIN
  RETURN jsonb_build_object('paid', dasa.await(pay), 'shipped', dasa.await(ship),
                            'approved', dasa.await('approve-' || (args->>'order')));
END $$;
SELECT count(*) AS registered FROM (SELECT dasa.register('charge', 'charge(jsonb)')
  UNION ALL SELECT dasa.register('fulfil', 'fulfil(jsonb)', timeout => '3 days')) r;
SELECT id, state FROM dasa.create_promise('approve-o-9', '2 days');
SELECT dasa.invoke('fulfil', '{"order": "o-9", "amount": 30}', 'fulfil-o-9') AS invocation_id;
SQL
sleep 1
echo "its children ran; fulfil waits for the approval, holding no executor:"
sql -c "SELECT id, depth, function, state, task_state, replays FROM dasa.call_tree('fulfil-o-9')"
echo "a person approves (from any session of a role allowed to settle app's promises):"
sql -c "SELECT id, state, value FROM dasa.resolve('approve-o-9', '\"yes\"')"
sql -c "SELECT dasa.await('fulfil-o-9') AS fulfilled"

say "Crash and recovery: 300 invocations (20 ms each), then kill -9 of the whole server mid-run."
sql -c "SELECT count(dasa.invoke('ship', jsonb_build_object('order', 'bulk-' || i), 'bulk-' || i)) AS invoked
        FROM generate_series(1, 300) i"
sleep 1.5
sql -c "SELECT count(*) FILTER (WHERE state = 'resolved') AS resolved_before_crash,
               count(*) FILTER (WHERE state = 'pending') AS pending
        FROM dasa.visible_promises WHERE id LIKE 'bulk-%'"
dasa_cluster_crash "$work"
echo "killed the postmaster and all its processes with SIGKILL; starting it again"
dasa_cluster_start "$work"
echo "no client asks for anything; the new executors pick up what was unfinished..."
for _ in $(seq 1 300); do
  [ "$(sql -At -c "SELECT count(*) FROM dasa.visible_promises WHERE id LIKE 'bulk-%' AND state = 'pending'")" = 0 ] && break
  sleep 0.1
done
sql -c "SELECT count(*) FILTER (WHERE p.state = 'resolved') AS resolved,
               (SELECT count(*) FROM shipments WHERE order_id LIKE 'bulk-%') AS shipment_rows,
               (SELECT count(DISTINCT order_id) FROM shipments WHERE order_id LIKE 'bulk-%') AS distinct_orders
        FROM dasa.visible_promises p WHERE p.id LIKE 'bulk-%'"
echo "every invocation ran to completion exactly once: its effects committed with its result."

say "What ran, from dasa.invocations:"
sql -c "SELECT function, state, count(*), max(attempts) AS max_attempts FROM dasa.invocations GROUP BY 1, 2"
echo
echo "Demo done; the throwaway cluster is being removed."
