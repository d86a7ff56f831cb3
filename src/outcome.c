/*
 * outcome.c: what an executor writes when an attempt ends.
 *
 * Before an attempt keeps its effects, it takes its promise's row lock and
 * checks that the promise is still pending: a cancellation (which does not
 * wait for running attempts) or a timeout that came first rolls the attempt
 * back instead. Held that way, the batch's resolutions and completions are
 * then written with one statement each at the end of the batch. A failure
 * is written at once: the attempt's error, then a retry with exponential
 * backoff, or the rejection when attempts run out or the next try would
 * come after the promise's deadline. All of it commits with the batch.
 */
#include "dasa.h"

#include <math.h>

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

static SPIPlanPtr resolve_plan = NULL;

static AttrNumber
attnum_of_promises(Relation rel, const char *name)
{
	AttrNumber	attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		elog(ERROR, "dasa.promises has no column \"%s\"", name);
	return attnum;
}
static SPIPlanPtr complete_plan = NULL;
static SPIPlanPtr retry_plan = NULL;
static SPIPlanPtr attempt_plan = NULL;

static void
prepare_plans(void)
{
	Oid			resolve_types[3] = {TEXTARRAYOID, JSONBARRAYOID, TIMESTAMPTZOID};
	Oid			complete_types[3] = {TEXTARRAYOID, INT4ARRAYOID, TIMESTAMPTZOID};
	Oid			retry_types[3] = {TEXTOID, INT4OID, TIMESTAMPTZOID};
	Oid			attempt_types[6] = {TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};

	if (attempt_plan != NULL)
		return;
	resolve_plan = dasa_prepare_saved(
		"UPDATE dasa.promises p SET state = 'resolved', value = v.value, settled_at = $3 "
		"FROM unnest($1::text[], $2::jsonb[]) AS v(id, value) "
		"WHERE p.id = v.id AND p.state = 'pending' "
		"RETURNING p.id, p.awaited",
		3, resolve_types);
	complete_plan = dasa_prepare_saved(
		"UPDATE dasa.tasks t SET state = 'completed', attempt = v.attempt, completed_at = $3 "
		"FROM unnest($1::text[], $2::int[]) AS v(id, attempt) WHERE t.id = v.id",
		3, complete_types);
	retry_plan = dasa_prepare_saved(
		"UPDATE dasa.tasks SET attempt = $2, run_at = $3 WHERE id = $1", 3, retry_types);
	attempt_plan = dasa_prepare_saved(
		"INSERT INTO dasa.attempts (task_id, attempt, sqlstate, message, detail, failed_at) "
		"VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (task_id, attempt) DO UPDATE "
		"SET sqlstate = excluded.sqlstate, message = excluded.message, "
		"detail = excluded.detail, failed_at = excluded.failed_at",
		6, attempt_types);
}

void
dasa_batch_init(DasaBatch *batch, int capacity)
{
	memset(batch, 0, sizeof(*batch));
	batch->resolved_ids = palloc(capacity * sizeof(char *));
	batch->resolved_values = palloc(capacity * sizeof(Jsonb *));
	batch->completed_ids = palloc(capacity * sizeof(char *));
	batch->completed_attempts = palloc(capacity * sizeof(int));
}

/*
 * Lock the row of the task's promise (its newest version) and confirm it is
 * still pending and before its deadline. True: nobody else can settle it
 * until this transaction ends, so the attempt may keep its effects.
 */
bool
dasa_hold_pending_promise(DasaTask *task)
{
	Relation	rel = table_open(get_relname_relid("promises", get_namespace_oid("dasa", false)),
								 RowExclusiveLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TM_FailureData failure;
	ItemPointerData tid = task->promise_tid;
	bool		pending = false;

	if (table_tuple_lock(rel, &tid, GetActiveSnapshot(), slot, GetCurrentCommandId(false),
						 LockTupleNoKeyExclusive, LockWaitBlock,
						 TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &failure) == TM_Ok)
	{
		bool		isnull;
		Datum		state = slot_getattr(slot, attnum_of_promises(rel, "state"), &isnull);
		Datum		timeout_at = slot_getattr(slot, attnum_of_promises(rel, "timeout_at"), &isnull);

		pending = dasa_state_is_pending(TupleDescAttr(RelationGetDescr(rel),
													  attnum_of_promises(rel, "state") - 1)->atttypid, state) &&
			DatumGetTimestampTz(timeout_at) > GetCurrentTimestamp();
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	return pending;
}

/* The task's attempt resolves its promise with value (NULL: SQL NULL) at the batch's end. */
void
dasa_batch_resolved(DasaBatch *batch, DasaTask *task, Jsonb *value)
{
	batch->resolved_ids[batch->nresolved] = task->id;
	batch->resolved_values[batch->nresolved++] = value;
	dasa_batch_completed(batch, task, task->attempt + 1);
}

void
dasa_batch_completed(DasaBatch *batch, DasaTask *task, int attempts)
{
	batch->completed_ids[batch->ncompleted] = task->id;
	batch->completed_attempts[batch->ncompleted++] = attempts;
}

static Datum
text_array(char **items, int n)
{
	Datum	   *elems = palloc(n * sizeof(Datum));

	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
jsonb_array(Jsonb **items, int n)
{
	Datum	   *elems = palloc(n * sizeof(Datum));
	bool	   *nulls = palloc(n * sizeof(bool));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		elems[i] = PointerGetDatum(items[i]);
		nulls[i] = (items[i] == NULL);
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, JSONBOID, -1, false, TYPALIGN_INT));
}

static Datum
int_array(int *items, int n)
{
	Datum	   *elems = palloc(n * sizeof(Datum));

	for (int i = 0; i < n; i++)
		elems[i] = Int32GetDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
}

/* Write the batch's resolutions and completions, one statement each. */
void
dasa_batch_flush(DasaBatch *batch)
{
	TimestampTz now = GetCurrentTimestamp();

	prepare_plans();
	if (batch->nresolved > 0)
	{
		Datum		args[3] = {text_array(batch->resolved_ids, batch->nresolved),
		jsonb_array(batch->resolved_values, batch->nresolved), TimestampTzGetDatum(now)};
		List	   *awaited = NIL;

		dasa_execute(resolve_plan, args, NULL, SPI_OK_UPDATE_RETURNING, 0);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull)))
				awaited = lappend(awaited, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		}
		for (int i = 0; i < batch->nresolved; i++)
			dasa_wake_at_commit_settled(batch->resolved_ids[i]);
		if (awaited != NIL)
			dasa_fire_callbacks(awaited);
	}
	if (batch->ncompleted > 0)
	{
		Datum		args[3] = {text_array(batch->completed_ids, batch->ncompleted),
		int_array(batch->completed_attempts, batch->ncompleted), TimestampTzGetDatum(now)};

		dasa_execute(complete_plan, args, NULL, SPI_OK_UPDATE, 0);
	}
	batch->nresolved = 0;
	batch->ncompleted = 0;
}

/* An ErrorData for failures dasa detects itself. */
ErrorData *
dasa_make_error(int sqlerrcode, const char *message, const char *detail)
{
	ErrorData  *e = palloc0(sizeof(ErrorData));

	e->elevel = ERROR;
	e->sqlerrcode = sqlerrcode;
	e->message = pstrdup(message);
	e->detail = detail ? pstrdup(detail) : NULL;
	return e;
}

/* The rejection value: {"sqlstate", "message", "detail", "attempts"}. */
static Jsonb *
error_value(ErrorData *error, int attempts)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"sqlstate\": ");
	escape_json(&buf, unpack_sql_state(error->sqlerrcode));
	appendStringInfoString(&buf, ", \"message\": ");
	escape_json(&buf, error->message ? error->message : "");
	appendStringInfoString(&buf, ", \"detail\": ");
	if (error->detail)
		escape_json(&buf, error->detail);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfo(&buf, ", \"attempts\": %d}", attempts);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

static void
record_attempt(DasaTask *task, int attempt, ErrorData *error, TimestampTz now)
{
	Datum		args[6] = {CStringGetTextDatum(task->id), Int32GetDatum(attempt),
		CStringGetTextDatum(unpack_sql_state(error->sqlerrcode)),
		CStringGetTextDatum(error->message ? error->message : ""),
		error->detail ? CStringGetTextDatum(error->detail) : (Datum) 0,
	TimestampTzGetDatum(now)};
	char		nulls[6] = {' ', ' ', ' ', ' ', error->detail ? ' ' : 'n', ' '};

	dasa_execute(attempt_plan, args, nulls, SPI_OK_INSERT, 0);
}

/* Backoff before the next attempt: exponential, capped, with jitter. */
static double
backoff_ms(DasaTask *task, int attempts)
{
	double		ms = task->initial_backoff_ms * pow(2.0, Min(attempts - 1, 60));

	ms = Min(ms, task->max_backoff_ms);
	ms *= 1.0 + task->jitter * (2.0 * pg_prng_double(&pg_global_prng_state) - 1.0);
	return Max(ms, 0.0);
}

/*
 * An attempt failed: record it, then retry later or reject the promise with
 * the error (attempts exhausted, deadline first, or a final failure).
 */
void
dasa_record_failure(DasaBatch *batch, DasaTask *task, ErrorData *error, bool final)
{
	TimestampTz now = GetCurrentTimestamp();
	int			attempts = task->attempt + 1;
	TimestampTz next = now + (TimestampTz) (backoff_ms(task, attempts) * 1000.0);

	prepare_plans();
	record_attempt(task, attempts, error, now);
	if (final || attempts >= task->max_attempts || next >= task->timeout_at)
	{
		dasa_settle_internal(task->id, "rejected", error_value(error, attempts));
		dasa_batch_completed(batch, task, attempts);
	}
	else
	{
		Datum		args[3] = {CStringGetTextDatum(task->id), Int32GetDatum(attempts),
		TimestampTzGetDatum(next)};

		dasa_execute(retry_plan, args, NULL, SPI_OK_UPDATE, 0);
	}
}

/*
 * The task's promise is settled by someone else (a cancellation), or its
 * deadline has passed (it times out now): the task ends. (Should it still
 * be pending, the task stays due and runs again.)
 */
void
dasa_record_ended(DasaBatch *batch, DasaTask *task)
{
	if (dasa_expire_internal(task->id))
		dasa_batch_completed(batch, task, task->attempt);
}
