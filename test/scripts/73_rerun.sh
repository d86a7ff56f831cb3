#!/usr/bin/env bash
# Re-running failed work: dasa.rerun(id) runs a rejected (or canceled)
# invocation again under a new id, reusing the results of the children that
# resolved in the run it repeats (their effects stay once) and repeating the
# ones that failed, at any depth; the failed promise never changes; a
# parent awaiting a failed child fails at once instead of burning its
# retries; ids, idempotence, refusals (55000, P0002, 23505) and ownership.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_rerun
quiet() { PGOPTIONS='-c client_min_messages=warning' q "$@"; }
as_role() { psql -XAtq -v VERBOSITY=sqlstate -d $db -c "SET ROLE $1" -c "$2" 2>&1 | sed 's/^ERROR:  //'; }
sqlstate() { sqlstate_of $db "$1"; }
fresh_database $db
quiet postgres "DROP ROLE IF EXISTS rr_other" >/dev/null
q postgres "CREATE ROLE rr_other IN ROLE dasa_user" >/dev/null
q $db "
CREATE TABLE rr_effects (step text NOT NULL, invocation text NOT NULL);
CREATE TABLE rr_switch (broken boolean NOT NULL);
INSERT INTO rr_switch VALUES (true);
CREATE FUNCTION rr_charge(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO rr_effects VALUES ('charge', dasa.current_invocation());
  RETURN '\"charged\"';
END \$\$;
CREATE FUNCTION rr_ship(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  IF (SELECT broken FROM rr_switch) THEN RAISE EXCEPTION 'shipping is down'; END IF;
  INSERT INTO rr_effects VALUES ('ship', dasa.current_invocation());
  RETURN '\"shipped\"';
END \$\$;
CREATE FUNCTION rr_order(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE paid jsonb := dasa.await(dasa.invoke('rr_charge', a));
BEGIN
  RETURN jsonb_build_object('paid', paid, 'shipped', dasa.await(dasa.invoke('rr_ship', a)));
END \$\$;
CREATE FUNCTION rr_batch(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO rr_effects VALUES ('batch', dasa.current_invocation());
  RETURN jsonb_build_array(dasa.await(dasa.invoke('rr_charge', a)), dasa.await(dasa.invoke('rr_order', a)));
END \$\$;
CREATE FUNCTION rr_wait(a jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT dasa.await(''rr-gate'')';
SELECT count(*) FROM (SELECT dasa.register('rr_charge', 'rr_charge(jsonb)')
  UNION ALL SELECT dasa.register('rr_ship', 'rr_ship(jsonb)', max_attempts => 1)
  UNION ALL SELECT dasa.register('rr_order', 'rr_order(jsonb)', max_attempts => 3, initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('rr_batch', 'rr_batch(jsonb)', max_attempts => 3, initial_backoff => '10 ms')
  UNION ALL SELECT dasa.register('rr_wait', 'rr_wait(jsonb)')) r;
GRANT SELECT, INSERT ON rr_effects TO rr_other;
GRANT SELECT ON rr_switch TO rr_other" >/dev/null
settled() { wait_for 20 $db "SELECT state <> 'pending' FROM dasa.promises WHERE id = '$1'"; }
effects() { q $db "SELECT coalesce(string_agg(step || '=' || n, ' ' ORDER BY step), '') FROM (SELECT step, count(*) n FROM rr_effects GROUP BY step) s"; }

# A workflow whose second step fails.
q $db "SELECT dasa.invoke('rr_order', '{}', 'order-1')" >/dev/null
ok "a workflow whose shipping step fails settles" settled order-1
is "$(q $db "SELECT state || ' ' || (SELECT count(*) FROM dasa.attempts WHERE task_id = 'order-1') FROM dasa.promises WHERE id = 'order-1'")" \
   "rejected 1" "rejected after one attempt: its child's rejection is final, no retries burnt on it"
is "$(effects)" "charge=1" "its payment step ran once"

# Fixed, then run again.
q $db "UPDATE rr_switch SET broken = false" >/dev/null
is "$(q $db "SELECT dasa.rerun('order-1')")" "order-1:rerun-1" "dasa.rerun returns the new invocation's id, <id>:rerun-1"
ok "the re-run settles" settled order-1:rerun-1
is "$(q $db "SELECT state || ' ' || value FROM dasa.promises WHERE id = 'order-1:rerun-1'")" \
   'resolved {"paid": "charged", "shipped": "shipped"}' "the re-run resolves with the recorded payment and a new shipment"
is "$(effects)" "charge=1 ship=1" "the payment was not made again; the shipping ran once"
is "$(q $db "SELECT state FROM dasa.promises WHERE id = 'order-1'")" rejected "the failed invocation stays rejected (settled promises never change)"
is "$(q $db "SELECT string_agg(t.id || '<' || coalesce(t.rerun_of, '-'), ' ' ORDER BY t.id) FROM dasa.tasks t WHERE t.id LIKE 'order-1:rerun-1%'")" \
   "order-1:rerun-1<order-1 order-1:rerun-1.2<order-1.2" "it made only the failed step again, which records what it repeats"
is "$(q $db "SELECT dasa.rerun('order-1', 'order-1:rerun-1')")" "order-1:rerun-1" "asking again under the same new id starts nothing new"
is "$(q $db "SELECT count(*) FROM dasa.tasks WHERE rerun_of = 'order-1'")" 1 "(still one re-run)"

# Deeper: the failed child is repeated, its own resolved child reused.
q $db "UPDATE rr_switch SET broken = true" >/dev/null
q $db "TRUNCATE rr_effects" >/dev/null
q $db "SELECT dasa.invoke('rr_batch', '{}', 'batch-1')" >/dev/null
ok "a workflow failing two levels down settles" settled batch-1
is "$(q $db "SELECT state FROM dasa.promises WHERE id = 'batch-1'")" rejected "rejected"
is "$(effects)" "charge=2" "after running its own and its child's payment step once each (its own failed attempt left nothing)"
q $db "UPDATE rr_switch SET broken = false" >/dev/null
is "$(q $db "SELECT dasa.rerun('batch-1')")" "batch-1:rerun-1" "re-run"
ok "the re-run settles" settled batch-1:rerun-1
is "$(q $db "SELECT state || ' ' || value FROM dasa.promises WHERE id = 'batch-1:rerun-1'")" \
   'resolved ["charged", {"paid": "charged", "shipped": "shipped"}]' "and resolves"
is "$(effects)" "batch=1 charge=2 ship=1" "no payment step ran again, at either level; the re-run's own body and the shipping ran once"

# A canceled invocation.
q $db "SELECT count(*) FROM dasa.create_promise('rr-gate', '1 hour')" >/dev/null
q $db "SELECT dasa.invoke('rr_wait', '{}', 'wait-1')" >/dev/null
ok "an invocation waiting for a gate suspends" wait_for 20 $db "SELECT state = 'suspended' FROM dasa.tasks WHERE id = 'wait-1'"
is "$(sqlstate "SELECT dasa.rerun('wait-1')")" 55000 "a pending invocation cannot be re-run (55000)"
q $db "SELECT count(*) FROM dasa.cancel('wait-1')" >/dev/null
is "$(q $db "SELECT dasa.rerun('wait-1', 'wait-again')")" wait-again "once cancelled, it can, under an id of one's choice"
q $db "SELECT count(*) FROM dasa.resolve('rr-gate', '\"open\"')" >/dev/null
ok "and the re-run finishes" wait_for 20 $db "SELECT state = 'resolved' AND value = '\"open\"' FROM dasa.promises WHERE id = 'wait-again'"

# Refusals and ownership.
is "$(sqlstate "SELECT dasa.rerun('order-1:rerun-1')")" 55000 "a resolved invocation cannot be re-run (55000)"
is "$(sqlstate "SELECT dasa.rerun('no-such-thing')")" P0002 "an unknown id: P0002"
is "$(sqlstate "SELECT dasa.rerun('rr-gate')")" P0002 "a plain promise is no invocation: P0002"
is "$(sqlstate "SELECT dasa.rerun('order-1', 'batch-1')")" 23505 "a new id taken by something else: 23505"
is "$(sqlstate "SELECT dasa.rerun('order-1', NULL, '-1 hour')")" 22023 "a negative timeout: 22023"
is "$(as_role rr_other "SELECT dasa.rerun('order-1')")" P0002 "another role cannot see, nor re-run, the invocation (P0002)"
q postgres "GRANT postgres TO rr_other" >/dev/null
is "$(as_role rr_other "SELECT dasa.rerun('order-1')")" "order-1:rerun-2" "a role with the owner's privileges can: the next id"
ok "its re-run settles" settled order-1:rerun-2
is "$(q $db "SELECT p.owner::text || ' ' || p.state || ' ' || (SELECT count(*) FROM dasa.tasks WHERE id LIKE 'order-1:rerun-2.%')
             FROM dasa.promises p WHERE id = 'order-1:rerun-2'")" "rr_other resolved 1" \
   "owned by and run as the role that asked; again only the failed step ran"
q postgres "REVOKE postgres FROM rr_other" >/dev/null

done_testing
