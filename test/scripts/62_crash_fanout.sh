#!/usr/bin/env bash
# A crash during a fan-out: a parent starts 300 children (each inserts one
# row and takes 10 ms) and awaits them all, while the test kills an executor
# with kill -9 and then stops the server with an immediate shutdown. The
# parent must finish with the right result, every child's effect exactly once.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_crash_fan
n=400
pg_ctl=/usr/lib/postgresql/15/bin/pg_ctl

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q $db "
CREATE TABLE cf_effects (invocation text NOT NULL);
CREATE FUNCTION cf_child(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO cf_effects VALUES (dasa.current_invocation());
  PERFORM pg_sleep(0.01);
  RETURN args->'n';
END \$\$;
CREATE FUNCTION cf_parent(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE ids text[] := '{}'; total bigint := 0; v jsonb;
BEGIN
  FOR i IN 1..(args->>'n')::int LOOP
    ids := ids || dasa.invoke('cf_child', jsonb_build_object('n', i));
  END LOOP;
  FOR v IN SELECT jsonb_array_elements(dasa.await_all(ids)) LOOP
    total := total + v::bigint;
  END LOOP;
  RETURN to_jsonb(total);
END \$\$;
SELECT count(*) FROM (SELECT dasa.register('cf_child', 'cf_child(jsonb)', max_attempts => 50, initial_backoff => '10 ms')
                      UNION ALL SELECT dasa.register('cf_parent', 'cf_parent(jsonb)', max_attempts => 50, initial_backoff => '10 ms')) r;
CREATE FUNCTION cf_sleeper(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM dasa.sleep('2 seconds');
  RETURN jsonb_build_object('woke', clock_timestamp());
END \$\$;
SELECT count(*) FROM dasa.register('cf_sleeper', 'cf_sleeper(jsonb)')" >/dev/null
q $db "SELECT dasa.invoke('cf_parent', '{\"n\": $n}', 'fan'), dasa.invoke('cf_sleeper', '{}', 'sleeper')" >/dev/null

sleep 0.7
diag "$(q $db "SELECT count(*) FROM cf_effects") of $n children done before kill -9 of an executor"
kill -9 "$(q postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dasa executor' AND datname = '$db' LIMIT 1")"
sleep 0.3
wait_ready 60
sleep 0.3
diag "$(q $db "SELECT count(*) FROM cf_effects") of $n children done before the immediate shutdown"
"$pg_ctl" -D "$DASA_PGDATA" -m immediate -w stop >/dev/null
"$pg_ctl" -D "$DASA_PGDATA" -l "$DASA_WORK/server.log" -w start >/dev/null
wait_ready 60

ok "the parent finishes after the crashes, with no client asking" wait_for 180 $db \
   "SELECT state <> 'pending' FROM dasa.get_promise('fan')"
is "$(q $db "SELECT state || ' ' || value FROM dasa.get_promise('fan')")" "resolved $((n * (n + 1) / 2))" \
   "with the right result"
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT invocation) FROM cf_effects")" "$n $n" \
   "every child's effect exactly once"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE parent_id = 'fan'")" $n "and no child was started twice"
ok "a durable sleep across the crashes wakes after the restart" wait_for 60 $db \
   "SELECT state = 'resolved' FROM dasa.get_promise('sleeper')"
is "$(q $db "SELECT (value->>'woke')::timestamptz >= created_at + interval '2 s' FROM dasa.get_promise('sleeper')")" t \
   "not before its deadline"
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE $db" >/dev/null
done_testing
