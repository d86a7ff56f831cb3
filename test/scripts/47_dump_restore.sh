#!/usr/bin/env bash
# Backups that restore: pg_dump -Fc of a database in mid-flight (registered
# functions, pending invocations, a suspended fan-out, a sleeping timer, a
# function awaiting a pending human promise), pg_restore into a fresh
# cluster: everything carries on there with no one asking, each effect
# exactly once, and nothing runs while the restore is still loading.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
src=dasa_dump
dir=$DASA_WORK/restore
port=55621
steps=60
children=10

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $src" >/dev/null
q postgres "DROP ROLE IF EXISTS dr_app; CREATE ROLE dr_app LOGIN; GRANT dasa_user TO dr_app" >/dev/null
q postgres "CREATE DATABASE $src" >/dev/null
q $src "CREATE EXTENSION dasa" >/dev/null
q $src "
CREATE TABLE effects (inv text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT, SELECT ON effects TO dr_app;
-- Bulk data restored after dasa's tables: a restore that takes a while.
CREATE TABLE bulk AS SELECT g AS n, md5(g::text) AS h FROM generate_series(1, 300000) g;
CREATE INDEX ON bulk (h);
-- Leaves wait on an advisory lock the test holds, so work is unfinished at the dump.
CREATE FUNCTION dr_step(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(4747);
  INSERT INTO effects (inv) VALUES (dasa.current_invocation());
  RETURN args;
END \$\$;
CREATE FUNCTION dr_fan(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE ids text[];
BEGIN
  SELECT array_agg(dasa.invoke('dr_step', jsonb_build_object('i', i))) INTO ids
  FROM generate_series(1, (args->>'n')::int) i;
  RETURN dasa.await_all(ids);
END \$\$;
CREATE FUNCTION dr_sleeper(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM dasa.sleep('5 seconds');
  PERFORM pg_advisory_xact_lock_shared(4747);
  INSERT INTO effects (inv) VALUES (dasa.current_invocation());
  RETURN '\"woke\"';
END \$\$;
CREATE FUNCTION dr_approval(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE answer jsonb;
BEGIN
  answer := dasa.await('dr-human');
  INSERT INTO effects (inv) VALUES (dasa.current_invocation());
  RETURN answer;
END \$\$;
SELECT count(dasa.register(f, (f || '(jsonb)')::regprocedure, max_attempts => 5, initial_backoff => '10 ms'))
FROM unnest(ARRAY['dr_step', 'dr_fan', 'dr_sleeper', 'dr_approval']) f" >/dev/null

# The advisory lock keeps every leaf waiting from now until after the dump.
lockfifo=$DASA_WORK/dr-lock.fifo
rm -f "$lockfifo"; mkfifo "$lockfifo"
psql -XAtq -d $src <"$lockfifo" >/dev/null 2>&1 &
locker=$!
exec 7>"$lockfifo"
echo "SELECT pg_advisory_lock(4747);" >&7
ok "the test holds the leaves' lock" wait_for 20 $src \
   "SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 4747 AND granted"

psql -XAtq -v ON_ERROR_STOP=1 -d $src >/dev/null <<SQL
SET ROLE dr_app;
SELECT dasa.create_promise('dr-human', '1 hour');
SELECT dasa.invoke('dr_sleeper', '{}', 'dr-sleeper');
SELECT dasa.invoke('dr_approval', '{}', 'dr-approval');
SELECT dasa.invoke('dr_fan', '{"n": $children}', 'dr-fan');
SQL
ok "the fan-out and the approval are suspended, the sleeper's timer set, before the dump" wait_for 30 $src \
   "SELECT count(*) = 2 FROM dasa.tasks WHERE id IN ('dr-fan', 'dr-approval') AND state = 'suspended'
    AND EXISTS (SELECT FROM dasa.promises WHERE parent_id = 'dr-sleeper')"
q $src "SET ROLE dr_app; SELECT count(dasa.invoke('dr_step', jsonb_build_object('i', i), 'dr-step-' || i)) FROM generate_series(1, $steps) i" >/dev/null
# A Resonate workflow in mid-flight too: its task suspended on a pending promise.
rs_rpc() { q $src "SET ROLE dr_app; SELECT resonate.resonate_rpc('{\"kind\": \"$1\", \"head\": {}, \"data\": $2}') #>> '{head,status}'"; }
rs_ok=$(rs_rpc promise.create '{"id": "rs-wf", "timeoutAt": 4102444800000, "param": {}, "tags": {"resonate:target": "poll://any@dr"}}')
rs_ok="$rs_ok $(rs_rpc task.acquire '{"id": "rs-wf", "version": 0, "pid": "p", "ttl": 3600000}')"
rs_ok="$rs_ok $(rs_rpc promise.create '{"id": "rs-wait", "timeoutAt": 4102444800000, "param": {}, "tags": {}}')"
rs_ok="$rs_ok $(rs_rpc task.suspend '{"id": "rs-wf", "version": 1, "actions": [{"kind": "promise.register_callback", "head": {}, "data": {"awaited": "rs-wait", "awaiter": "rs-wf"}}]}')"
is "$rs_ok" "200 200 200 200" "a Resonate task is suspended on a pending promise before the dump"
is "$(q $src "SELECT count(*) FROM effects")" 0 "no leaf has run in the source yet"

rm -rf "$dir"; mkdir -p "$dir"
ok "pg_dump -Fc of the source" pg_dump -Fc -f "$dir/src.dump" -d $src
ok "pg_dumpall --globals-only (the roles)" sh -c "pg_dumpall -g >'$dir/globals.sql'"
# Restored next to its original, which still runs (here: still waits), the
# dump is a copy: it stays paused, even though its tasks arrive after dasa.origin.
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS ${src}_beside" >/dev/null
q postgres "CREATE DATABASE ${src}_beside" >/dev/null
ok "pg_restore beside the original" pg_restore -d ${src}_beside --exit-on-error "$dir/src.dump"
ok "the restored copy is paused" wait_for 20 ${src}_beside "SELECT paused FROM dasa.origin"
is "$(q ${src}_beside "SELECT count(*) FROM dasa.tasks WHERE state <> 'completed'")" \
   "$(q $src "SELECT count(*) FROM dasa.tasks WHERE state <> 'completed'")" "and runs none of its original's work"
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE ${src}_beside" >/dev/null
# The source goes away, as after losing the server.
echo "SELECT pg_advisory_unlock_all();" >&7; exec 7>&-; wait $locker 2>/dev/null
rm -f "$lockfifo"
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE $src" >/dev/null

dasa_cluster_init "$dir" $port "dasa.launcher_naptime = 1s" "dasa.executor_poll_interval = 50ms"
dasa_cluster_start "$dir"
trap 'dasa_cluster_stop "$dir"' EXIT
r() { qat "$dir" $port "$1" "$2"; }
rwait() { wait_at "$1" "$dir" $port "$2" "$3"; }

psql -XAtq -h "$dir" -p $port -d postgres -f "$dir/globals.sql" >/dev/null 2>&1
r postgres "CREATE DATABASE restored" >/dev/null
started=$SECONDS
pg_restore -h "$dir" -p $port -d restored --exit-on-error "$dir/src.dump" >"$dir/restore.out" 2>&1
is "$?" 0 "pg_restore into a fresh cluster exits 0"
diag "pg_restore took about $((SECONDS - started)) s"
restored_at=$(r restored "SELECT clock_timestamp()")
sed 's/^/# /' "$dir/restore.out" | head -5 >&2

is "$(r restored "SELECT string_agg(name || '=' || proc, ' ' ORDER BY name) FROM dasa.functions")" \
   "dr_approval=public.dr_approval(jsonb) dr_fan=public.dr_fan(jsonb) dr_sleeper=public.dr_sleeper(jsonb) dr_step=public.dr_step(jsonb)" \
   "the registrations are restored, naming their procedures by signature"
ok "the restored work carries on with no client asking" rwait 60 restored \
   "SELECT count(*) >= $((steps + children)) FROM effects"
r restored "SELECT dasa.resolve('dr-human', '\"approved\"')" >/dev/null
ok "every invocation resolves once the human promise is resolved" rwait 60 restored \
   "SELECT count(*) = 0 FROM dasa.tasks WHERE state <> 'completed'"
is "$(r restored "SELECT count(*) FROM effects")" $((steps + children + 2)) \
   "each leaf, the sleeper and the approval left exactly one effect"
is "$(r restored "SELECT count(*) FROM effects WHERE at < '$restored_at'")" 0 \
   "nothing ran before pg_restore had finished"
is "$(r restored "SELECT state || ' ' || value::text FROM dasa.promises WHERE id = 'dr-approval'")" 'resolved "approved"' \
   "the approval got the human's answer"
is "$(r restored "SELECT state || ' ' || jsonb_array_length(value) FROM dasa.promises WHERE id = 'dr-fan'")" \
   "resolved $children" "the fan-out resolved with its $children children's values"
is "$(r restored "SELECT state || ' ' || value::text FROM dasa.promises WHERE id = 'dr-sleeper'")" 'resolved "woke"' \
   "the sleeping timer woke"
is "$(r restored "SELECT count(*) FROM dasa.promises WHERE owner = 'dr_app'::regrole AND state <> 'resolved' AND id NOT LIKE 'rs-%'")" 0 \
   "the invocations kept their owner"
is "$(r restored "SELECT count(*) FROM dasa.origin WHERE NOT paused AND database_name = 'restored'")" 1 \
   "dasa.origin now names the restored database"
ok "the log says the state was restored and runs" grep -q 'runs its invocations now' "$dir/server.log"
is "$(r restored "SELECT state || ' v' || version || ' ' || owner FROM resonate.tasks WHERE id = 'rs-wf'") $(r restored "SELECT count(*) FROM resonate.callbacks WHERE awaiter = 'rs-wf'")" \
   "suspended v1 dr_app 1" "the Resonate task and its callback are restored"
r restored "SET ROLE dr_app; SELECT state FROM dasa.resolve('rs-wait')" >/dev/null
is "$(r restored "SELECT state || ' ' || array_to_string(resumes, ',') FROM resonate.tasks WHERE id = 'rs-wf'") $(r restored "SELECT count(*) FROM resonate.outbox WHERE task_id = 'rs-wf' AND kind = 'execute'")" \
   "pending rs-wait 1" "resolving what it waits on in the restored database resumes it and sends it"
dasa_cluster_stop "$dir"
trap - EXIT
[ "$tap_failed" = 0 ] && rm -rf "$dir"
q postgres "DROP ROLE dr_app" >/dev/null
done_testing
