#!/usr/bin/env bash
# Delayed starts: dasa.invoke(..., start_at) makes the task due from then on
# and not before (run time recorded by the function), the invocation's
# timeout counting from then; a time past (or NULL, or -infinity) starts at
# once, infinity is refused (22023); a child invoked with a start time
# inside a function (its parent suspending on it) starts then too.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_start_at
fresh_database $db
q $db "
CREATE TABLE ds_runs (id text PRIMARY KEY, ran_at timestamptz NOT NULL);
CREATE FUNCTION ds_note(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO ds_runs VALUES (dasa.current_invocation(), clock_timestamp());
  RETURN a;
END \$\$;
CREATE FUNCTION ds_parent(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  RETURN dasa.await(dasa.invoke('ds_note', '{\"child\": true}',
                                start_at => clock_timestamp() + interval '2 seconds'));
END \$\$;
SELECT count(*) FROM (SELECT dasa.register('ds_note', 'ds_note(jsonb)')
  UNION ALL SELECT dasa.register('ds_parent', 'ds_parent(jsonb)')) r" >/dev/null

start=$(q $db "SELECT clock_timestamp() + interval '2 seconds'")
q $db "SELECT dasa.invoke('ds_note', '{}', 'ds-later', start_at => '$start')" >/dev/null
is "$(q $db "SELECT t.state || ' ' || (t.run_at = '$start') || ' ' || (p.timeout_at = '$start'::timestamptz + interval '7 days')
             FROM dasa.tasks t JOIN dasa.promises p USING (id) WHERE id = 'ds-later'")" "pending true true" \
   "a task invoked to start in 2 s is pending, due then, its deadline the function's timeout after that"
sleep 1
is "$(q $db "SELECT count(*) FROM ds_runs WHERE id = 'ds-later'")" 0 "a second later it has not run"
ok "it runs once its time comes, with no client asking" wait_for 15 $db \
   "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'ds-later'"
is "$(q $db "SELECT ran_at >= '$start' FROM ds_runs WHERE id = 'ds-later'")" t "and not before its start time"
diag "started $(q $db "SELECT round(extract(epoch FROM ran_at - '$start')::numeric * 1000, 1) FROM ds_runs WHERE id = 'ds-later'") ms after its start time"

# The timeout counts from the start.
start=$(q $db "SELECT clock_timestamp() + interval '2 seconds'")
q $db "SELECT dasa.invoke('ds_note', '{}', 'ds-short', '1 second', '$start')" >/dev/null
ok "a 1-second timeout starting in 2 s does not expire before the start" wait_for 15 $db \
   "SELECT state = 'resolved' FROM dasa.promises WHERE id = 'ds-short'"

# At once.
q $db "SELECT dasa.invoke('ds_note', '{}', 'ds-past', start_at => now() - interval '1 day'),
              dasa.invoke('ds_note', '{}', 'ds-null', start_at => NULL),
              dasa.invoke('ds_note', '{}', 'ds-minus-infinity', start_at => '-infinity')" >/dev/null
ok "a start time in the past, NULL and -infinity start at once" wait_for 10 $db \
   "SELECT count(*) = 3 FROM dasa.promises WHERE id IN ('ds-past', 'ds-null', 'ds-minus-infinity') AND state = 'resolved'"
is "$(psql -XAtq -v VERBOSITY=sqlstate -d $db -c "SELECT dasa.invoke('ds_note', '{}', 'ds-never', start_at => 'infinity')" 2>&1 | sed 's/^ERROR:  //')" \
   22023 "infinity is refused (22023)"

# A child started later by its parent.
is "$(q $db "CALL dasa.call('ds_parent', '{}', 'ds-parent')")" '{"child": true}' \
   "a parent awaiting a child it invoked to start 2 s later gets its value"
is "$(q $db "SELECT r.ran_at >= c.created_at + interval '2 seconds' - interval '50 ms'
                    AND r.ran_at >= t.run_at
             FROM ds_runs r JOIN dasa.promises c USING (id) JOIN dasa.tasks t USING (id) WHERE c.parent_id = 'ds-parent'")" t \
   "the child ran no earlier than its start time"

done_testing
