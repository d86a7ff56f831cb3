-- SQLSTATEs of refusals by dasa.register, dasa.invoke and dasa.call.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
BEGIN;
SELECT plan(22);

CREATE FUNCTION pg_temp.ok_fn(args jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT args $$;
CREATE FUNCTION pg_temp.text_fn(args jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;

SELECT lives_ok($$SELECT dasa.register('tap_ok', 'pg_temp.ok_fn(jsonb)')$$, 'a (jsonb) -> jsonb function registers');
SELECT throws_ok($$SELECT dasa.register('tap_bad', 'pg_temp.text_fn(jsonb)')$$, '42P13', NULL, 'wrong signature: 42P13');
SELECT throws_ok($$SELECT dasa.register('tap_bad', 'no_such(jsonb)')$$, '42883', NULL, 'unknown procedure: 42883');
SELECT throws_ok($$SELECT dasa.register(NULL, 'pg_temp.ok_fn(jsonb)')$$, '22004', NULL, 'NULL name: 22004');
SELECT throws_ok($$SELECT dasa.register('', 'pg_temp.ok_fn(jsonb)')$$, '22023', NULL, 'empty name: 22023');
SELECT throws_ok($$SELECT dasa.register('tap_bad', NULL)$$, '22004', NULL, 'NULL procedure: 22004');
SELECT throws_ok($$SELECT dasa.register('tap_bad', 'pg_temp.ok_fn(jsonb)', max_attempts => 0)$$, '22023', NULL, 'max_attempts 0: 22023');
SELECT throws_ok($$SELECT dasa.register('tap_bad', 'pg_temp.ok_fn(jsonb)', jitter => -0.1)$$, '22023', NULL, 'negative jitter: 22023');
SELECT throws_ok($$SELECT dasa.register('tap_bad', 'pg_temp.ok_fn(jsonb)', timeout => '-1 s')$$, '22023', NULL, 'negative timeout: 22023');

SELECT throws_ok($$SELECT dasa.invoke('tap_unknown')$$, '42883', 'function "tap_unknown" is not registered', 'unknown function: 42883');
SELECT throws_ok($$SELECT dasa.invoke('tap_ok', NULL)$$, '22004', NULL, 'NULL args: 22004');
SELECT throws_ok($$SELECT dasa.invoke('tap_ok', '{}', repeat('x', 2000))$$, '22001', NULL, 'long id: 22001');
SELECT throws_ok($$SELECT dasa.invoke('tap_ok', '{}', NULL, '2000 years')$$, '22008', NULL, 'timeout too long: 22008');
SELECT throws_ok($$CALL dasa.call('tap_ok')$$, '2D000', NULL, 'CALL dasa.call in a transaction block: 2D000');
SELECT is(dasa.invoke('tap_ok', '{"a": 1}', 'tap-1'), 'tap-1', 'invoke returns the given id');
SELECT is((SELECT count(*)::int FROM dasa.tasks WHERE id = 'tap-1' AND state = 'pending'), 1, 'and creates its pending task');

SELECT throws_ok($$SELECT dasa.await_all(NULL)$$, '22004', NULL, 'await_all(NULL): 22004');
SELECT throws_ok($$SELECT dasa.await_all('{}')$$, '22023', NULL, 'await_all of no ids: 22023');
SELECT throws_ok($$SELECT dasa.await_any(ARRAY['a', NULL])$$, '22004', NULL, 'await_any with a NULL id: 22004');
SELECT throws_ok($$SELECT dasa.await_any(ARRAY['no-such-promise'])$$, 'P0002', NULL, 'await_any of an unknown id: P0002');
SELECT throws_ok($$SELECT dasa.sleep('1 s')$$, '55000', NULL, 'dasa.sleep outside a function: 55000');
SELECT is(dasa.current_invocation(), NULL, 'no current invocation in a plain session');

SELECT * FROM finish();
ROLLBACK;
