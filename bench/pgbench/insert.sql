\set r random(1, 9000000000000000000)
INSERT INTO bench_plain (id, param, tags, timeout_at, created_at) VALUES ('p-' || :client_id || '-' || :r, '{"fn":"noop","args":[1,2,3]}', '{}', now() + interval '1 hour', now());
