-- Registering functions and invoking them: what is accepted and what is refused.
-- (Running them needs committed invocations: see test/scripts/40_functions.sh.)
TRUNCATE dasa.promises, dasa.tasks, dasa.attempts, dasa.functions;

CREATE FUNCTION double_it(args jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT jsonb_build_object('n', (args->>'n')::int * 2) $$;
CREATE FUNCTION wrong_return(args jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION wrong_args(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT a $$;
CREATE FUNCTION many_rows(args jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT args $$;
CREATE PROCEDURE a_procedure(args jsonb) LANGUAGE sql AS $$ SELECT 1 $$;

-- register, with defaults and with options; re-registering updates
SELECT name, proc, owner, max_attempts, initial_backoff, max_backoff, jitter, timeout
FROM dasa.register('double', 'double_it(jsonb)');
SELECT name, max_attempts, initial_backoff, timeout
FROM dasa.register('double', 'double_it(jsonb)', max_attempts => 5,
                   initial_backoff => '10 ms', timeout => '5 minutes');

-- procedures that do not fit
SELECT dasa.register('bad', 'wrong_return(jsonb)');
SELECT dasa.register('bad', 'wrong_args(jsonb, jsonb)');
SELECT dasa.register('bad', 'many_rows(jsonb)');
SELECT dasa.register('bad', 'a_procedure(jsonb)');
SELECT dasa.register('bad', 'no_such_function(jsonb)');

-- options out of range
SELECT dasa.register(NULL, 'double_it(jsonb)');
SELECT dasa.register('', 'double_it(jsonb)');
SELECT dasa.register(repeat('n', 129), 'double_it(jsonb)');
SELECT dasa.register('bad', NULL);
SELECT dasa.register('bad', 'double_it(jsonb)', max_attempts => 0);
SELECT dasa.register('bad', 'double_it(jsonb)', initial_backoff => '-1 s');
SELECT dasa.register('bad', 'double_it(jsonb)', initial_backoff => '1 min', max_backoff => '1 s');
SELECT dasa.register('bad', 'double_it(jsonb)', jitter => 1.5);
SELECT dasa.register('bad', 'double_it(jsonb)', timeout => NULL);
SELECT count(*) AS registered FROM dasa.functions;

-- invoke: an id at once; the same id again starts nothing new
-- (in a transaction that rolls back, so no executor runs them meanwhile)
BEGIN;
SELECT dasa.invoke('double', '{"n": 21}', 'double-1');
SELECT dasa.invoke('double', '{"n": 99}', 'double-1');
SELECT t.id, t.function, t.state, p.state AS promise_state, p.param,
       p.timeout_at - p.created_at AS timeout
FROM dasa.tasks t JOIN dasa.promises p USING (id);
-- a generated id is a UUID
SELECT dasa.invoke('double') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid;
-- an explicit timeout overrides the function's
SELECT timeout_at - created_at AS timeout
FROM dasa.get_promise(dasa.invoke('double', '{}', 'double-2', '30 seconds'));

ROLLBACK;

-- invoke refusals
SELECT dasa.invoke('nope');
SELECT dasa.invoke(NULL);
SELECT dasa.invoke('double', NULL);
SELECT dasa.invoke('double', '{}', '');
SELECT dasa.invoke('double', '{}', NULL, '-1 s');
SELECT dasa.invoke('double', jsonb_build_object('blob', repeat('x', 11 * 1024 * 1024)));

-- the synchronous form cannot wait inside a transaction block
BEGIN;
CALL dasa.call('double', '{"n": 1}');
ROLLBACK;

-- unregister: true once, then false
SELECT dasa.unregister('double');
SELECT dasa.unregister('double');
