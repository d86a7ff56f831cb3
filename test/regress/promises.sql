-- Durable promises: the lifecycle seen through the public functions.
-- Timestamps vary from run to run, so the queries show facts about them.
-- each test starts from an empty table
TRUNCATE dasa.promises;

-- create: a pending promise with a deadline
SELECT id, state, param, value, tags, settled_at IS NULL AS unsettled,
       timeout_at - created_at AS timeout
FROM dasa.create_promise('order-1', '1 hour', '{"amount": 10}');

-- create again with the same id: the stored row comes back unchanged
SELECT id, state, param, timeout_at - created_at AS timeout
FROM dasa.create_promise('order-1', '5 minutes', '{"amount": 99}');

-- get
SELECT id, state, param FROM dasa.get_promise('order-1');

-- resolve settles it once; later settlements change nothing
SELECT id, state, value, settled_at IS NOT NULL AS settled FROM dasa.resolve('order-1', '{"paid": true}');
SELECT id, state, value FROM dasa.reject('order-1', '{"paid": false}');
SELECT id, state, value FROM dasa.cancel('order-1');
SELECT id, state, value FROM dasa.resolve('order-1', '"again"');

-- reject and cancel a pending promise
SELECT (dasa.create_promise('order-2', '1 hour')).state;
SELECT id, state, value FROM dasa.reject('order-2', '{"reason": "declined"}');
SELECT (dasa.create_promise('order-3', '1 hour')).state;
SELECT id, state, value FROM dasa.cancel('order-3', '"changed my mind"');

-- await a settled promise: the value, or an error carrying it
SELECT dasa.await('order-1');
SELECT dasa.await('order-2');
SELECT dasa.await('order-3');

-- a promise past its deadline never reads as pending
SELECT id, state, value, settled_at = timeout_at AS settled_at_deadline
FROM dasa.create_promise('order-4', '0 seconds');
SELECT id, state FROM dasa.get_promise('order-4');
SELECT dasa.await('order-4');
-- settling it now stores the timeout instead
SELECT id, state, value FROM dasa.resolve('order-4', '"too late"');

-- a timer resolves at its deadline instead of timing out
SELECT id, state, value, settled_at = timeout_at AS settled_at_deadline
FROM dasa.create_promise('wake-1', '0 seconds', NULL, '{"resonate:timer": "true"}');
SELECT dasa.await('wake-1');

-- what is stored (the worker may already have settled the timer, so leave it out)
SELECT id, state, value, settled_at IS NOT NULL AS settled
FROM dasa.promises WHERE id LIKE 'order-%' ORDER BY id;

-- search: id pattern, state, tags, keyset pagination
SELECT count(dasa.create_promise('job-' || i, '1 hour', NULL,
         CASE WHEN i % 2 = 0 THEN '{"kind": "even"}' ELSE '{"kind": "odd"}' END::jsonb))
FROM generate_series(1, 6) i;
SELECT id, state, tags FROM dasa.search_promises('job-*');
SELECT id FROM dasa.search_promises('job-*', tags => '{"kind": "even"}');
SELECT id FROM dasa.search_promises('*', state => 'rejected');
SELECT id FROM dasa.search_promises('*', state => 'rejected_timedout');
SELECT id FROM dasa.search_promises('*', state => 'resolved');
SELECT id FROM dasa.search_promises('job-*', "limit" => 2);
SELECT id FROM dasa.search_promises('job-*', "limit" => 2, after => 'job-2');
SELECT id FROM dasa.search_promises('*-1');
-- LIKE's metacharacters are literal in an id pattern
SELECT id FROM dasa.search_promises('job_*');
SELECT id FROM dasa.search_promises('order-%');
