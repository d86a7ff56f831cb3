-- An external worker's loop in one round trip: claim up to 10 tasks of the
-- queue and complete them as a batch (what a worker does, minus its work).
SELECT dasa.complete_all(array_agg(c.id), array_agg(c.version), array_agg(jsonb '1'))
FROM dasa.claim('bench', 'w-' || :client_id, 10, '30 seconds', false) c;
