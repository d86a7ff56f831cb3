-- Bad input: every case is a clear error, and nothing is written.
-- each test starts from an empty table
TRUNCATE dasa.promises;

-- ids
SELECT dasa.create_promise(NULL, '1 hour');
SELECT dasa.create_promise('', '1 hour');
SELECT dasa.create_promise(repeat('x', 1025), '1 hour');
SELECT length((dasa.create_promise(repeat('x', 1024), '1 hour')).id);
SELECT dasa.get_promise(NULL);
SELECT dasa.resolve('', '1');
SELECT dasa.await(NULL);

-- unknown ids
SELECT dasa.get_promise('nope');
SELECT dasa.resolve('nope', '1');
SELECT dasa.reject('nope');
SELECT dasa.cancel('nope');
SELECT dasa.await('nope');

-- timeouts
SELECT dasa.create_promise('t-null', NULL);
SELECT dasa.create_promise('t-negative', '-1 second');
SELECT dasa.create_promise('t-huge', '1001 years');
SELECT dasa.await('tags-6', '-1 second');

-- tags
SELECT dasa.create_promise('tags-1', '1 hour', NULL, '[1, 2]');
SELECT dasa.create_promise('tags-2', '1 hour', NULL, '"timer"');
SELECT dasa.create_promise('tags-3', '1 hour', NULL, 'null');
SELECT dasa.create_promise('tags-4', '1 hour', NULL, '{"resonate:timer": true}');
SELECT dasa.create_promise('tags-5', '1 hour', NULL, '{"a": {"b": "c"}}');
-- SQL NULL tags mean no tags
SELECT id, tags FROM dasa.create_promise('tags-6', '1 hour', NULL, NULL);

-- payloads over dasa.max_payload_size (10MB by default); large ones below it work
SELECT dasa.create_promise('big-1', '1 hour', jsonb_build_object('blob', repeat('x', 11 * 1024 * 1024)));
SELECT id FROM dasa.create_promise('big-2', '1 hour');
SELECT dasa.resolve('big-2', jsonb_build_object('blob', repeat('x', 11 * 1024 * 1024)));
SELECT state, length(value->>'blob') FROM dasa.resolve('big-2', jsonb_build_object('blob', repeat('x', 5 * 1024 * 1024)));
SELECT length(dasa.await('big-2')->>'blob');

-- search arguments
SELECT * FROM dasa.search_promises('');
SELECT * FROM dasa.search_promises('*', "limit" => 0);
SELECT * FROM dasa.search_promises('*', "limit" => NULL);
SELECT * FROM dasa.search_promises('*', tags => '[]');
SELECT * FROM dasa.search_promises('*', state => 'done');

-- nothing above left a row behind, except the two that succeeded
SELECT left(id, 8) AS id, state FROM dasa.promises ORDER BY id;
