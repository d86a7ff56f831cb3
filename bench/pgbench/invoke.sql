\set r random(1, 9000000000000000000)
SELECT dasa.invoke('noop', '{"fn":"noop","args":[1,2,3]}', 'p-' || :client_id || '-' || :r);
