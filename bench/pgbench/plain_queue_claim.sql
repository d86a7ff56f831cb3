-- The hand-written SKIP LOCKED queue doing the same bookkeeping: claim up
-- to 10 jobs (marked claimed, version bumped, worker and time noted), then
-- complete each with its result, in one transaction.
BEGIN;
WITH due AS (
  SELECT id FROM plain_jobs WHERE state = 'pending' AND run_at <= now()
  ORDER BY run_at LIMIT 10 FOR UPDATE SKIP LOCKED)
UPDATE plain_jobs j SET state = 'claimed', version = j.version + 1, worker = 'w-' || :client_id,
  claimed_at = now()
FROM due WHERE j.id = due.id;
UPDATE plain_jobs SET state = 'completed', result = '1', completed_at = now()
WHERE worker = 'w-' || :client_id AND state = 'claimed';
COMMIT;
