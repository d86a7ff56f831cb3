#!/usr/bin/env bash
# Schedules: a '1 second' schedule of an application role fires each second
# with no client connected, as that role; across a kill -9 of the dasa
# worker and an immediate shutdown no firing runs twice (each firing's id is
# its schedule and time, and its effect is there once), and the firings
# missed while the server was down collapse into one. A firing whose id was
# invoked already (another firer won the race) starts nothing new. Bad
# schedules are refused with clear errors; schedules belong to their
# creator; one that cannot invoke its function records why and goes on.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_schedules
pg_ctl=/usr/lib/postgresql/15/bin/pg_ctl

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
q $db "
DO \$\$ BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'sch_app') THEN
    DROP OWNED BY sch_app, sch_other; DROP ROLE sch_app, sch_other;
  END IF;
END \$\$;
CREATE ROLE sch_app; CREATE ROLE sch_other;
GRANT dasa_user TO sch_app, sch_other;
CREATE SCHEMA app AUTHORIZATION sch_app;" >/dev/null

as_role() {  # as_role ROLE SQL: run SQL after SET ROLE, print the result or the error's SQLSTATE
  psql -XAtq -v VERBOSITY=sqlstate -d $db -c "SET ROLE $1" -c "$2" 2>&1 | sed 's/^ERROR:  //'
}

as_role sch_app "
CREATE TABLE app.ticks (firing text NOT NULL, run_as name NOT NULL, started timestamptz NOT NULL);
CREATE FUNCTION app.tick(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO app.ticks VALUES (a->>'firing', current_user, clock_timestamp());
  RETURN a;
END \$\$;
SELECT count(*) FROM dasa.register('tick', 'app.tick(jsonb)');" >/dev/null

# Refused: each with its SQLSTATE.
is "$(as_role sch_app "SELECT dasa.schedule('bad', '61 * * * *', 'tick')")" 22023 "a minute of 61 is refused (22023)"
is "$(as_role sch_app "SELECT dasa.schedule('bad', '0 0 30 2 *', 'tick')")" 22023 "a schedule that never fires is refused (22023)"
is "$(as_role sch_app "SELECT dasa.schedule('bad', '@daily', 'tick', promise_id => 'always-the-same')")" 22023 \
   "an id template without a time is refused (22023)"
is "$(as_role sch_app "SELECT dasa.schedule('bad', '@daily', 'tick', time_zone => 'Nowhere/Else')")" 22023 \
   "an unknown time zone is refused (22023)"
is "$(as_role sch_app "SELECT dasa.schedule('bad', '@daily', 'no_such_function')")" 42883 \
   "an unregistered function is refused (42883)"
is "$(as_role sch_other "SELECT dasa.schedule('bad', '@daily', 'tick')")" 42501 \
   "a function the role may not execute is refused (42501)"
is "$(as_role sch_app "SELECT dasa.schedule('', '@daily', 'tick')")" 22023 "an empty name is refused (22023)"
is "$(q $db "SELECT count(*) FROM dasa.schedules")" 0 "nothing refused was kept"

# A '1 second' schedule, then no client at all for 4 seconds.
first=$(as_role sch_app "SELECT next_run_at FROM dasa.schedule('sec', '1 second', 'tick', '{\"firing\": \"sec\"}')")
sleep 4
ok "it fires on its own: at least 3 firings in 4 seconds" \
   test "$(q $db "SELECT count(*) FROM dasa.invocations WHERE id LIKE 'sec:%'")" -ge 3
is "$(q $db "SELECT count(*) FROM dasa.invocations WHERE id LIKE 'sec:%' AND id !~ '^sec:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$'")" 0 \
   "each firing's id is the schedule's name and the firing time in UTC"
is "$(q $db "SELECT min(to_timestamp(substr(id, 5), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) = '$first'::timestamptz
              FROM dasa.invocations WHERE id LIKE 'sec:%'")" t "the first firing is the next_run_at dasa.schedule returned"
ok "the firings run as the role that made the schedule" \
   wait_for 10 $db "SELECT count(*) > 0 AND bool_and(run_as = 'sch_app') FROM app.ticks"
lateness=$(q $db "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.started - to_timestamp(substr(i.id, 5), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) * 1000)::numeric, 1)
                  FROM dasa.invocations i JOIN app.ticks t ON t.firing = 'sec' AND abs(extract(epoch FROM t.started - to_timestamp(substr(i.id, 5), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))) < 0.9
                  WHERE i.id LIKE 'sec:%'")
diag "firing time -> function start, p50: $lateness ms"
is "$(q $db "SELECT last_invocation = (SELECT max(id) FROM dasa.invocations WHERE id LIKE 'sec:%') AND last_error IS NULL
              FROM dasa.schedules WHERE name = 'sec'")" t "dasa.schedules shows the last firing"

# A firing whose id exists already (invoked by hand, as a racing firer would) starts nothing new.
raced=$(q $db "SELECT 'sec:' || to_char(dasa.cron_next('1 second', clock_timestamp() + interval '2 s') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
as_role sch_app "SELECT dasa.invoke('tick', '{\"firing\": \"raced\"}', '$raced')" >/dev/null
ok "the schedule reaches the raced firing's time" \
   wait_for 15 $db "SELECT last_run_at > to_timestamp(substr('$raced', 5), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM dasa.schedules WHERE name = 'sec'"
is "$(q $db "SELECT count(*) || ' ' || min(param->>'firing') FROM dasa.promises WHERE id = '$raced'") $(q $db "SELECT count(*) FROM app.ticks WHERE firing = 'raced'")" \
   "1 raced 1" "the firing invoked by hand ran once, with its own arguments: the schedule started nothing new"

# Exactly once across a kill -9 of the dasa worker (the server restarts everything).
pid=$(q postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dasa worker' AND datname = '$db'")
ok "the dasa worker of the database is found" test -n "$pid"
kill -9 "$pid"
sleep 1
ok "the server is back after the kill" wait_ready 60
before=$(q $db "SELECT count(*) FROM dasa.invocations WHERE id LIKE 'sec:%'")
ok "firings go on after the kill" \
   wait_for 30 $db "SELECT count(*) >= $before + 2 FROM dasa.invocations WHERE id LIKE 'sec:%'"

# An immediate shutdown for 4 seconds: the missed firings collapse into one.
"$pg_ctl" -D "$DASA_PGDATA" -m immediate -w stop >/dev/null
sleep 4
"$pg_ctl" -D "$DASA_PGDATA" -l "$DASA_WORK/server.log" -w start >/dev/null
ok "the server is back after the immediate shutdown" wait_ready 60
started=$(q $db "SELECT pg_postmaster_start_time()")
ok "firings go on after the restart" \
   wait_for 30 $db "SELECT count(*) >= 2 FROM dasa.invocations WHERE id LIKE 'sec:%' AND created_at > '$started'"
as_role sch_app "SELECT dasa.unschedule('sec')" >/dev/null
gap=$(q $db "WITH f AS (SELECT to_timestamp(substr(id, 5), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at, created_at FROM dasa.invocations WHERE id LIKE 'sec:%'),
              last_before AS (SELECT max(at) AS at FROM f WHERE created_at < '$started'),
              first_after AS (SELECT min(at) AS at FROM f WHERE created_at > '$started')
            SELECT extract(epoch FROM first_after.at - last_before.at)::int FROM last_before, first_after")
ok "no firing for each missed second: the first after the restart comes ${gap}s after the last before it (>= 4)" \
   test "${gap:-0}" -ge 4
late=$(q $db "SELECT count(*) FROM dasa.invocations WHERE id LIKE 'sec:%' AND created_at > '$started'
              AND to_timestamp(substr(id, 5), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') < '$started'")
ok "at most one firing time from the downtime fired after it ($late): the missed ones collapsed into the latest" \
   test "$late" -le 1
ok "every firing settles" wait_for 30 $db "SELECT bool_and(state = 'resolved') FROM dasa.invocations WHERE id LIKE 'sec:%'"
is "$(q $db "SELECT (SELECT count(*) FROM app.ticks WHERE firing = 'sec') = (SELECT count(*) FROM dasa.promises WHERE id LIKE 'sec:%' AND param->>'firing' = 'sec' AND state = 'resolved')")" t \
   "each firing's effect is there exactly once ($(q $db "SELECT count(*) FROM app.ticks WHERE firing = 'sec'") firings)"

# A cron schedule that missed many minutes fires once, for the latest of them.
as_role sch_app "SELECT dasa.schedule('minutely', '* * * * *', 'tick', '{\"firing\": \"minutely\"}')" >/dev/null
q $db "UPDATE dasa.schedules SET next_run_at = date_trunc('minute', now()) - interval '10 minutes' WHERE name = 'minutely'" >/dev/null
ok "the overdue cron schedule fires" wait_for 15 $db "SELECT count(*) > 0 FROM dasa.invocations WHERE id LIKE 'minutely:%'"
is "$(q $db "SELECT count(*) FROM dasa.invocations WHERE id LIKE 'minutely:%'")" 1 "ten missed minutes fire once"
is "$(q $db "SELECT to_timestamp(substr(min(id), 10), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') >= date_trunc('minute', now()) - interval '1 minute'
              AND s.next_run_at > now() FROM dasa.invocations i, dasa.schedules s WHERE i.id LIKE 'minutely:%' AND s.name = 'minutely' GROUP BY s.next_run_at")" t \
   "for the latest missed minute, and the next firing is in the future"

# Another role's schedule of a function it may execute.
as_role sch_app "GRANT USAGE ON SCHEMA app TO sch_other; CREATE FUNCTION app.tock(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT a';
  REVOKE EXECUTE ON FUNCTION app.tock(jsonb) FROM PUBLIC; GRANT EXECUTE ON FUNCTION app.tock(jsonb) TO sch_other" >/dev/null
as_role sch_other "SELECT dasa.register('tock', 'app.tock(jsonb)')" >/dev/null
as_role sch_other "SELECT dasa.schedule('tock', '1 second', 'tock')" >/dev/null

# Ownership: only the creator sees, changes or drops a schedule.
is "$(as_role sch_other "SELECT string_agg(name, ',') FROM dasa.schedules")" tock "another role sees only its own schedules"
is "$(as_role sch_app "SELECT count(*) FROM dasa.schedules")" 1 "its creator does"
is "$(as_role sch_other "SELECT dasa.unschedule('minutely')")" 42501 "another role cannot unschedule it (42501)"
is "$(as_role sch_other "SELECT dasa.schedule('minutely', '@daily', 'tock')")" 42501 "nor replace it (42501)"
is "$(as_role sch_app "SELECT cron FROM dasa.schedule('minutely', '*/2 * * * *', 'tick', '{\"firing\": \"minutely\"}')")" '*/2 * * * *' \
   "its creator replaces it"
is "$(as_role sch_app "SELECT extract(minute FROM next_run_at)::int % 2 FROM dasa.schedules WHERE name = 'minutely'")" 0 \
   "with the next firing worked out from the new cron"

# A schedule that cannot invoke its function records why and goes on firing.
as_role sch_app "REVOKE EXECUTE ON FUNCTION app.tock(jsonb) FROM sch_other" >/dev/null
ok "a firing that cannot invoke records why" \
   wait_for 15 $db "SELECT last_error LIKE '%permission denied%' FROM dasa.schedules WHERE name = 'tock'"
ok "and the schedule moves on to its next firing" \
   wait_for 15 $db "SELECT next_run_at > now() - interval '2 s' FROM dasa.schedules WHERE name = 'tock'"
as_role sch_app "GRANT EXECUTE ON FUNCTION app.tock(jsonb) TO sch_other" >/dev/null
ok "once the privilege is back, it fires again" \
   wait_for 15 $db "SELECT s.last_error IS NULL AND count(i.id) > 0 FROM dasa.schedules s LEFT JOIN dasa.invocations i ON i.id LIKE 'tock:%' WHERE s.name = 'tock' GROUP BY s.last_error"
is "$(as_role sch_other "SELECT dasa.unschedule('tock')") $(as_role sch_other "SELECT dasa.unschedule('tock')")" "t f" \
   "unschedule says whether there was one"

as_role sch_app "SELECT dasa.unschedule('minutely')" >/dev/null
PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE $db WITH (FORCE)" >/dev/null
q postgres "DROP ROLE sch_app, sch_other" >/dev/null
done_testing
