/*
 * batch.c: what an executor's batch of attempts writes when it ends.
 *
 * An attempt that kept its effects has held its promise pending (the row
 * lock stays until commit), so the batch's resolutions and completions can
 * wait for the batch's end and be written through the kernel with one
 * statement each. Failures and suspensions are written by the kernel at
 * once; they are rare, and the executor needs their outcome to go on.
 */
#include "runtime/runtime.h"

void
dasa_batch_init(DasaBatch *batch, int capacity)
{
	memset(batch, 0, sizeof(*batch));
	batch->resolved_ids = palloc(capacity * sizeof(char *));
	batch->resolved_values = palloc(capacity * sizeof(Jsonb *));
	batch->completed_ids = palloc(capacity * sizeof(char *));
	batch->completed_attempts = palloc(capacity * sizeof(int));
	batch->completed_versions = palloc(capacity * sizeof(int64));
	batch->completed_started = palloc(capacity * sizeof(TimestampTz));
	batch->completed_ended = palloc(capacity * sizeof(TimestampTz));
}

/* The task's attempt resolves its promise with value (NULL: SQL NULL) at the batch's end. */
void
dasa_batch_resolved(DasaBatch *batch, DasaTask *task, Jsonb *value)
{
	batch->resolved_ids[batch->nresolved] = task->id;
	batch->resolved_values[batch->nresolved++] = value;
	dasa_batch_completed(batch, task, task->attempt + 1);
}

/* The task is done after attempts attempts: complete it at the batch's end. */
void
dasa_batch_completed(DasaBatch *batch, DasaTask *task, int attempts)
{
	batch->completed_ids[batch->ncompleted] = task->id;
	batch->completed_attempts[batch->ncompleted] = attempts;
	batch->completed_started[batch->ncompleted] = task->started_at;
	batch->completed_ended[batch->ncompleted] = GetCurrentTimestamp();
	batch->completed_versions[batch->ncompleted++] = task->version;
}

/*
 * The task's promise was settled by someone else (a cancellation), or its
 * deadline has passed (it times out now): the task ends. (Should it still
 * be pending, the task stays due and runs again.)
 */
void
dasa_batch_ended(DasaBatch *batch, DasaTask *task)
{
	if (dasa_settle_if_expired(task->id))
		dasa_batch_completed(batch, task, task->attempt);
}

/* Write the batch's resolutions and completions. */
void
dasa_batch_flush(DasaBatch *batch)
{
	if (batch->nresolved > 0)
		(void) dasa_settle(batch->nresolved, batch->resolved_ids, "resolved",
						   batch->resolved_values, false);
	dasa_tasks_complete(batch->ncompleted, batch->completed_ids, batch->completed_attempts,
						batch->completed_versions, batch->completed_started, batch->completed_ended);
	batch->nresolved = 0;
	batch->ncompleted = 0;
}
