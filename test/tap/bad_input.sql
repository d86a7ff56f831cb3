-- Bad input: the SQLSTATE and message of every refusal, and that nothing
-- was written. (test/regress/bad_input.sql shows details and hints.)
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
BEGIN;
SELECT plan(32);

-- ids
SELECT throws_ok($$SELECT dasa.create_promise(NULL, '1 hour')$$, '22004', 'promise id must not be NULL', 'NULL id');
SELECT throws_ok($$SELECT dasa.create_promise('', '1 hour')$$, '22023', 'promise id must not be empty', 'empty id');
SELECT throws_ok($$SELECT dasa.create_promise(repeat('é', 513), '1 hour')$$, '22001', 'promise id is too long', 'id over 1024 bytes');
SELECT lives_ok($$SELECT dasa.create_promise(repeat('x', 1024), '1 hour')$$, 'id of exactly 1024 bytes');
SELECT throws_ok($$SELECT dasa.get_promise(NULL)$$, '22004', NULL, 'get: NULL id');
SELECT throws_ok($$SELECT dasa.resolve(NULL)$$, '22004', NULL, 'resolve: NULL id');
SELECT throws_ok($$SELECT dasa.reject('')$$, '22023', NULL, 'reject: empty id');
SELECT throws_ok($$SELECT dasa.cancel(repeat('x', 2000))$$, '22001', NULL, 'cancel: long id');
SELECT throws_ok($$SELECT dasa.await(NULL)$$, '22004', NULL, 'await: NULL id');

-- unknown ids
SELECT throws_ok($$SELECT dasa.get_promise('unknown')$$, 'P0002', 'promise "unknown" does not exist', 'get: unknown id');
SELECT throws_ok($$SELECT dasa.resolve('unknown', '1')$$, 'P0002', NULL, 'resolve: unknown id');
SELECT throws_ok($$SELECT dasa.reject('unknown')$$, 'P0002', NULL, 'reject: unknown id');
SELECT throws_ok($$SELECT dasa.cancel('unknown')$$, 'P0002', NULL, 'cancel: unknown id');
SELECT throws_ok($$SELECT dasa.await('unknown')$$, 'P0002', NULL, 'await: unknown id');

-- timeouts
SELECT throws_ok($$SELECT dasa.create_promise('t', NULL)$$, '22004', 'timeout must not be NULL', 'NULL timeout');
SELECT throws_ok($$SELECT dasa.create_promise('t', '-1 ms')$$, '22023', 'timeout must not be negative', 'negative timeout');
SELECT throws_ok($$SELECT dasa.create_promise('t', '1001 years')$$, '22008', 'timeout is too long', 'timeout too long');
SELECT throws_ok($$SELECT dasa.await('x', '-1 ms')$$, '22023', 'await timeout must not be negative', 'negative await timeout');
SELECT lives_ok($$SELECT dasa.create_promise('t-zero', '0')$$, 'zero timeout is allowed');

-- tags
SELECT throws_ok($$SELECT dasa.create_promise('t', '1 hour', NULL, '[]')$$, '22023', 'tags must be a JSON object', 'array tags');
SELECT throws_ok($$SELECT dasa.create_promise('t', '1 hour', NULL, '"x"')$$, '22023', 'tags must be a JSON object', 'string tags');
SELECT throws_ok($$SELECT dasa.create_promise('t', '1 hour', NULL, 'null')$$, '22023', 'tags must be a JSON object', 'JSON null tags');
SELECT throws_ok($$SELECT dasa.create_promise('t', '1 hour', NULL, '{"a": 1}')$$, '22023', 'tag values must be JSON strings', 'number tag value');
SELECT throws_ok($$SELECT dasa.create_promise('t', '1 hour', NULL, '{"a": ["b"]}')$$, '22023', 'tag values must be JSON strings', 'array tag value');

-- payload limit
SELECT throws_ok($$SELECT dasa.create_promise('t', '1 hour', jsonb_build_object('x', repeat('y', 11000000)))$$, '54000', 'param is too large', 'param over the limit');
SELECT throws_ok($$SELECT dasa.create_promise('t', '1 hour', NULL, jsonb_build_object('x', repeat('y', 11000000)))$$, '54000', 'tags is too large', 'tags over the limit');
SELECT lives_ok($$SELECT dasa.create_promise('t-big', '1 hour')$$, 'promise for a large value');
SELECT throws_ok($$SELECT dasa.resolve('t-big', jsonb_build_object('x', repeat('y', 11000000)))$$, '54000', 'value is too large', 'value over the limit');
SELECT throws_ok($$SELECT dasa.reject('t-big', jsonb_build_object('x', repeat('y', 11000000)))$$, '54000', 'value is too large', 'rejection over the limit');

-- search
SELECT throws_ok($$SELECT * FROM dasa.search_promises('')$$, '22023', 'id pattern must not be empty', 'empty search pattern');
SELECT throws_ok($$SELECT * FROM dasa.search_promises('*', "limit" => 5000)$$, '22023', 'limit must be between 1 and 1000', 'search limit too large');

-- nothing was written by any refusal
SELECT is((SELECT array_agg(id ORDER BY id) FROM dasa.promises),
          ARRAY['t-big', 't-zero', repeat('x', 1024)] COLLATE "C",
          'only the accepted calls wrote rows');

SELECT * FROM finish();
ROLLBACK;
