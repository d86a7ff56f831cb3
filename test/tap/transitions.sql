-- The full state-transition table: every operation against every prior
-- state, checking the row returned and the row stored.
-- All in one transaction: the worker cannot see these rows, so expired
-- promises stay raw 'pending' and only the lazy rule applies to them.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
BEGIN;

-- Put promise id into the given prior state.
CREATE FUNCTION pg_temp.prepare(id text, prior text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CASE prior
        WHEN 'absent' THEN NULL;
        WHEN 'pending' THEN PERFORM dasa.create_promise(id, '1 hour', '{"p": 1}');
        WHEN 'expired' THEN PERFORM dasa.create_promise(id, '0', '{"p": 1}');
        WHEN 'expired_timer' THEN
            PERFORM dasa.create_promise(id, '0', '{"p": 1}', '{"resonate:timer": "true"}');
        WHEN 'resolved' THEN
            PERFORM dasa.create_promise(id, '1 hour', '{"p": 1}');
            PERFORM dasa.resolve(id, '"old"');
        WHEN 'rejected' THEN
            PERFORM dasa.create_promise(id, '1 hour', '{"p": 1}');
            PERFORM dasa.reject(id, '"old"');
        WHEN 'rejected_canceled' THEN
            PERFORM dasa.create_promise(id, '1 hour', '{"p": 1}');
            PERFORM dasa.cancel(id, '"old"');
        WHEN 'rejected_timedout' THEN
            -- settling an expired promise stores its timeout
            PERFORM dasa.create_promise(id, '0', '{"p": 1}');
            PERFORM dasa.resolve(id, '"ignored"');
    END CASE;
END $$;

-- Apply one operation; returns the row, or the SQLSTATE as the state.
CREATE FUNCTION pg_temp.apply(id text, op text, OUT state text, OUT value jsonb, OUT param jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    r dasa.promises;
BEGIN
    CASE op
        WHEN 'create' THEN r := dasa.create_promise(id, '2 hours', '{"p": 2}');
        WHEN 'get' THEN r := dasa.get_promise(id);
        WHEN 'resolve' THEN r := dasa.resolve(id, '"new"');
        WHEN 'reject' THEN r := dasa.reject(id, '"new"');
        WHEN 'cancel' THEN r := dasa.cancel(id, '"new"');
        WHEN 'await' THEN
            r.state := 'resolved';
            r.value := dasa.await(id);
    END CASE;
    state := r.state; value := r.value; param := r.param;
EXCEPTION WHEN OTHERS THEN
    state := 'error ' || SQLSTATE;
END $$;

CREATE TEMP TABLE expectation (
    prior text, op text,
    ret_state text, ret_value jsonb, ret_param jsonb,
    stored_state text, stored_value jsonb);

-- absent: only create works
INSERT INTO expectation VALUES
 ('absent', 'create',  'pending', NULL, '{"p": 2}', 'pending', NULL),
 ('absent', 'get',     'error P0002', NULL, NULL, NULL, NULL),
 ('absent', 'resolve', 'error P0002', NULL, NULL, NULL, NULL),
 ('absent', 'reject',  'error P0002', NULL, NULL, NULL, NULL),
 ('absent', 'cancel',  'error P0002', NULL, NULL, NULL, NULL),
 ('absent', 'await',   'error P0002', NULL, NULL, NULL, NULL);

-- pending: create returns it unchanged; settling settles; await refuses
-- (it was created in this very transaction, so no one else could settle it)
INSERT INTO expectation VALUES
 ('pending', 'create',  'pending', NULL, '{"p": 1}', 'pending', NULL),
 ('pending', 'get',     'pending', NULL, '{"p": 1}', 'pending', NULL),
 ('pending', 'resolve', 'resolved', '"new"', '{"p": 1}', 'resolved', '"new"'),
 ('pending', 'reject',  'rejected', '"new"', '{"p": 1}', 'rejected', '"new"'),
 ('pending', 'cancel',  'rejected_canceled', '"new"', '{"p": 1}', 'rejected_canceled', '"new"'),
 ('pending', 'await',   'error 25000', NULL, NULL, 'pending', NULL);

-- pending but expired: reads as timed out; reads leave the row, writes store the timeout
INSERT INTO expectation VALUES
 ('expired', 'create',  'rejected_timedout', NULL, '{"p": 1}', 'pending', NULL),
 ('expired', 'get',     'rejected_timedout', NULL, '{"p": 1}', 'pending', NULL),
 ('expired', 'resolve', 'rejected_timedout', NULL, '{"p": 1}', 'rejected_timedout', NULL),
 ('expired', 'reject',  'rejected_timedout', NULL, '{"p": 1}', 'rejected_timedout', NULL),
 ('expired', 'cancel',  'rejected_timedout', NULL, '{"p": 1}', 'rejected_timedout', NULL),
 ('expired', 'await',   'error DA003', NULL, NULL, 'pending', NULL);

-- an expired timer resolves instead
INSERT INTO expectation VALUES
 ('expired_timer', 'create',  'resolved', NULL, '{"p": 1}', 'pending', NULL),
 ('expired_timer', 'get',     'resolved', NULL, '{"p": 1}', 'pending', NULL),
 ('expired_timer', 'resolve', 'resolved', NULL, '{"p": 1}', 'resolved', NULL),
 ('expired_timer', 'reject',  'resolved', NULL, '{"p": 1}', 'resolved', NULL),
 ('expired_timer', 'cancel',  'resolved', NULL, '{"p": 1}', 'resolved', NULL),
 ('expired_timer', 'await',   'resolved', NULL, NULL, 'pending', NULL);

-- settled states never change; await returns the value or raises its error
INSERT INTO expectation
SELECT s.prior, o.op,
       CASE WHEN o.op <> 'await' THEN s.prior
            WHEN s.prior = 'resolved' THEN 'resolved'
            ELSE 'error ' || s.await_code END,
       CASE WHEN o.op = 'await' AND s.prior <> 'resolved' THEN NULL ELSE s.old_value END,
       CASE WHEN o.op = 'await' THEN NULL ELSE '{"p": 1}'::jsonb END,
       s.prior, s.old_value
FROM (VALUES ('resolved', NULL, '"old"'::jsonb),
             ('rejected', 'DA001', '"old"'),
             ('rejected_canceled', 'DA002', '"old"'),
             ('rejected_timedout', 'DA003', NULL)) s(prior, await_code, old_value)
CROSS JOIN (VALUES ('create'), ('get'), ('resolve'), ('reject'), ('cancel'), ('await')) o(op);

SELECT plan((SELECT count(*)::int * 2 FROM expectation) + 2);

-- One promise per cell, prepared, operated on, and compared.
CREATE TEMP TABLE outcome AS
SELECT e.*, n.id, a.state AS got_state, a.value AS got_value, a.param AS got_param,
       NULL::text AS got_stored_state, NULL::jsonb AS got_stored_value
FROM expectation e
CROSS JOIN LATERAL (SELECT format('%s/%s', e.prior, e.op) AS id) n
CROSS JOIN LATERAL (SELECT pg_temp.prepare(n.id, e.prior)) prep
CROSS JOIN LATERAL pg_temp.apply(n.id, e.op) a;

-- A new statement, so the raw rows written above are visible.
UPDATE outcome o SET got_stored_state = p.state::text, got_stored_value = p.value
FROM dasa.promises p WHERE p.id = o.id;

SELECT is(row(got_state, got_value, got_param)::text,
          row(ret_state, ret_value, ret_param)::text,
          format('%s, %s: returns %s', prior, op, ret_state))
FROM outcome ORDER BY prior, op;

SELECT is(row(got_stored_state, got_stored_value)::text,
          row(stored_state, stored_value)::text,
          format('%s, %s: stores %s', prior, op, coalesce(stored_state, 'nothing')))
FROM outcome ORDER BY prior, op;

-- An expired promise reads as settled at its deadline.
SELECT is(settled_at, timeout_at, 'an expired promise reads as settled at its deadline')
FROM dasa.get_promise('expired/get');
SELECT is(settled_at, timeout_at, 'a stored timeout is settled at the deadline')
FROM dasa.promises WHERE id = 'expired/resolve';

SELECT * FROM finish();
ROLLBACK;
