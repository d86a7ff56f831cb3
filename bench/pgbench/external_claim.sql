-- An external worker's loop in one round trip: claim up to 10 tasks of the
-- queue and complete each (what a worker does, minus its own work).
SELECT count(dasa.complete(c.id, c.version, '1'))
FROM dasa.claim('bench', 'w-' || :client_id, 10, '30 seconds', false) c;
