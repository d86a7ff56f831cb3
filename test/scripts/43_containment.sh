#!/usr/bin/env bash
# Fault containment, first part (issue 9): with 100 ordinary invocations
# running beside each case, all of which must resolve:
#  - a function breaking a deferred foreign key fails as its own attempt
#    (constraints fire at the attempt's end), not the batch's commit;
#  - a 30-level chain whose leaf fails: every level is rejected, each
#    rejection carries its child's as JSON (not an escaped string), so the
#    sizes grow by a few bytes per level, not doubling;
#  - an error with a 1 MB message: the attempt and the rejection keep a
#    bounded, marked part of it;
#  - awaiting itself or an ancestor is refused at once (DA006), no retry;
#  - negative intervals written with months, and too-long ids, give the same
#    errors everywhere; a wrong signature says what is wrong.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_tap
code() { psql -XAtq -v VERBOSITY=sqlstate -d $db -c "$1" 2>&1 | sed 's/^ERROR:  //'; }

q $db "
CREATE FUNCTION ct_ok(args jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT args \$\$;
-- level n invokes level n - 1 and returns its value; level 0 fails
CREATE FUNCTION ct_chain(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE n int := (args->>'n')::int;
BEGIN
  IF n = 0 THEN RAISE EXCEPTION 'leaf failed' USING ERRCODE = '22023', DETAIL = 'at the bottom'; END IF;
  RETURN dasa.await(dasa.invoke('ct_chain', jsonb_build_object('n', n - 1)));
END \$\$;
CREATE FUNCTION ct_huge(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN RAISE EXCEPTION '%', repeat('x', 1000000) USING DETAIL = repeat('y', 1000000); END \$\$;
CREATE FUNCTION ct_self(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN RETURN dasa.await(dasa.current_invocation()); END \$\$;
-- the child awaits its parent (passed as an argument)
CREATE FUNCTION ct_parent(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN RETURN dasa.await(dasa.invoke('ct_await_parent', jsonb_build_object('parent', dasa.current_invocation()))); END \$\$;
CREATE FUNCTION ct_await_parent(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN RETURN dasa.await(args->>'parent'); END \$\$;
CREATE TABLE ct_parents (id int PRIMARY KEY);
CREATE TABLE ct_children (parent int REFERENCES ct_parents DEFERRABLE INITIALLY DEFERRED);
-- breaks a deferred foreign key and returns as if all were well
CREATE FUNCTION ct_deferred(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN INSERT INTO ct_children VALUES (42); RETURN '\"looks fine\"'; END \$\$;
CREATE FUNCTION ct_two_args(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT a \$\$;
SELECT count(*) FROM (
  SELECT dasa.register('ct_ok', 'ct_ok(jsonb)')
  UNION ALL SELECT dasa.register('ct_chain', 'ct_chain(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('ct_huge', 'ct_huge(jsonb)', max_attempts => 2, initial_backoff => '0 s')
  UNION ALL SELECT dasa.register('ct_self', 'ct_self(jsonb)', max_attempts => 3)
  UNION ALL SELECT dasa.register('ct_parent', 'ct_parent(jsonb)', max_attempts => 3)
  UNION ALL SELECT dasa.register('ct_await_parent', 'ct_await_parent(jsonb)', max_attempts => 3)
  UNION ALL SELECT dasa.register('ct_deferred', 'ct_deferred(jsonb)', max_attempts => 2, initial_backoff => '0 s')) r" >/dev/null

beside() {  # beside TAG: 100 ordinary invocations
  q $db "SELECT count(dasa.invoke('ct_ok', jsonb_build_object('i', i), '$1-' || i)) FROM generate_series(1, 100) i" >/dev/null
}
all_resolved() {  # all_resolved TAG
  wait_for 60 $db "SELECT count(*) = 100 FROM dasa.promises WHERE id LIKE '$1-%' AND state = 'resolved'"
}

executor_pids() { q $db "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM dasa.executors()"; }

# a deferred constraint broken by a function that returns a value
pids=$(executor_pids)
beside ct-b0
q $db "SELECT dasa.invoke('ct_deferred', '{}', 'ct-deferred')" >/dev/null
ok "a function breaking a deferred foreign key settles" wait_for 30 $db "SELECT state <> 'pending' FROM dasa.promises WHERE id = 'ct-deferred'"
is "$(q $db "SELECT state || ' ' || (value->>'sqlstate') || ' ' || (value->>'attempts') FROM dasa.promises WHERE id = 'ct-deferred'")" \
   "rejected 23503 2" "as a failed attempt of its own (23503), retried, then rejected"
is "$(q $db "SELECT count(*) FROM ct_children")" 0 "its row is gone"
ok "the 100 invocations beside it all resolved" all_resolved ct-b0
is "$(executor_pids)" "$pids" "and no executor exited"

# a failing leaf 30 levels down
beside ct-b1
q $db "SELECT dasa.invoke('ct_chain', '{\"n\": 30}', 'ct-chain')" >/dev/null
ok "a 30-level chain whose leaf fails settles" wait_for 60 $db "SELECT state <> 'pending' FROM dasa.promises WHERE id = 'ct-chain'"
is "$(q $db "SELECT count(*) FILTER (WHERE state = 'rejected') || '/' || count(*) FROM dasa.promises WHERE root_id = 'ct-chain' OR id = 'ct-chain'")" \
   "31/31" "every level is rejected"
is "$(q $db "SELECT value #>> '{detail,detail,detail,sqlstate}' FROM dasa.promises WHERE id = 'ct-chain'")" DA001 \
   "each rejection carries its child's as JSON (the root's detail.detail.detail is an object)"
is "$(q $db "SELECT value #>> '{$(printf 'detail,%.0s' $(seq 1 30))message}' FROM dasa.promises WHERE id = 'ct-chain'")" "leaf failed" \
   "the leaf's error is 30 levels down in the root's rejection"
is "$(q $db "SELECT octet_length(value::text) < 30 * 200 FROM dasa.promises WHERE id = 'ct-chain'")" t \
   "the root's rejection is small: a few bytes per level ($(q $db "SELECT octet_length(value::text) FROM dasa.promises WHERE id = 'ct-chain'") bytes)"
ok "the 100 invocations beside it all resolved" all_resolved ct-b1

# an enormous error
beside ct-b2
q $db "SELECT dasa.invoke('ct_huge', '{}', 'ct-huge')" >/dev/null
ok "a function raising a 1 MB error is rejected" wait_for 60 $db "SELECT state = 'rejected' FROM dasa.promises WHERE id = 'ct-huge'"
is "$(q $db "SELECT (value->>'attempts') || ' ' || (octet_length(value::text) < 100000) || ' ' || (value->>'message' LIKE '%(truncated: 1000000 bytes in all)')
             FROM dasa.promises WHERE id = 'ct-huge'")" "2 true true" "after its attempts, with a bounded rejection that says it was cut"
is "$(q $db "SELECT count(*) || ' ' || (max(octet_length(message) + octet_length(detail)) < 100000) FROM dasa.attempts WHERE task_id = 'ct-huge'")" "2 true" \
   "each attempt is recorded, bounded"
ok "the 100 invocations beside it all resolved" all_resolved ct-b2

# awaiting itself, or its parent
beside ct-b3
q $db "SELECT dasa.invoke('ct_self', '{}', 'ct-self')" >/dev/null
q $db "SELECT dasa.invoke('ct_parent', '{}', 'ct-parent')" >/dev/null
ok "awaiting itself is rejected at once" wait_for 20 $db "SELECT state = 'rejected' FROM dasa.promises WHERE id = 'ct-self'"
is "$(q $db "SELECT (value->>'sqlstate') || ' ' || (value->>'attempts') FROM dasa.promises WHERE id = 'ct-self'")" "DA006 1" \
   "with DA006, and no retry"
ok "awaiting its parent is rejected at once, and so the parent too" \
   wait_for 20 $db "SELECT state = 'rejected' FROM dasa.promises WHERE id = 'ct-parent'"
is "$(q $db "SELECT value->>'sqlstate' FROM dasa.promises WHERE id = 'ct-parent.1'") / $(q $db "SELECT value #>> '{detail,sqlstate}' FROM dasa.promises WHERE id = 'ct-parent'")" \
   "DA006 / DA006" "the child with DA006, the parent with the child's rejection inside its own"
ok "the 100 invocations beside them all resolved" all_resolved ct-b3

# the same input errors everywhere
is "$(code "SELECT dasa.create_promise('ct-m', '-1 month 30 days 1 second')")" 22023 \
   "a timeout with a negative part (months) is refused (22023), whatever today's month length"
is "$(code "SELECT dasa.register('ct_x', 'ct_ok(jsonb)', initial_backoff => '1 day -1 hour')")" 22023 "so is a backoff written that way"
is "$(code "SELECT dasa.create_promise(repeat('i', 1025), '1 hour')")/$(code "SELECT dasa.await_all(ARRAY[repeat('i', 1025)])")/$(code "SELECT dasa.await_any(ARRAY[repeat('i', 1025)])")" \
   "22001/22001/22001" "a too-long id is 22001 in every function"
is "$(code "SELECT dasa.await_all(ARRAY[''])")/$(code "SELECT dasa.get_promise('')")" "22023/22023" "an empty one 22023"
is "$(psql -XAtq -d $db -c "SELECT dasa.register('ct_two', 'ct_two_args(jsonb, jsonb)')" 2>&1 | grep -c 'takes 2 arguments; a dasa function takes exactly one argument, of type jsonb')" 1 \
   "a wrong signature names what is wrong (here: the arguments)"
done_testing
