\set r random(1, 9000000000000000000)
SELECT id FROM dasa.create_promise('p-' || :client_id || '-' || :r, '1 hour', '{"fn":"noop","args":[1,2,3]}');
SELECT id FROM dasa.resolve('p-' || :client_id || '-' || :r, '{"result":42}');
