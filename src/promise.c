/*
 * promise.c: create, read and settle durable promises (SQL-callable).
 *
 * Owns the write path of dasa.promises for users: creation is idempotent on
 * id, settling a settled promise changes nothing, and the timeout rule holds
 * in every path. Racing settlements rely on the row lock: the first UPDATE
 * wins, the others re-check the row after it commits and return the winner.
 * It never blocks waiting for a promise (that is await.c).
 */
#include "dasa.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(dasa_create_promise);
PG_FUNCTION_INFO_V1(dasa_get_promise);
PG_FUNCTION_INFO_V1(dasa_resolve);
PG_FUNCTION_INFO_V1(dasa_reject);
PG_FUNCTION_INFO_V1(dasa_cancel);

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr select_plan = NULL;
static SPIPlanPtr settle_plan = NULL;
static SPIPlanPtr expire_plan = NULL;

static void
prepare_plans(void)
{
	Oid			insert_types[7] = {TEXTOID, JSONBOID, JSONBOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	TEXTOID, TEXTOID};
	Oid			select_types[1] = {TEXTOID};
	Oid			settle_types[4] = {TEXTOID, TEXTOID, JSONBOID, TIMESTAMPTZOID};
	Oid			expire_types[2] = {TEXTOID, TIMESTAMPTZOID};

	if (expire_plan != NULL)
		return;
	insert_plan = dasa_prepare_saved(
		"INSERT INTO dasa.promises (id, param, tags, timeout_at, created_at, parent_id, root_id) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
		7, insert_types);
	select_plan = dasa_prepare_saved(
		"SELECT * FROM dasa.promises WHERE id = $1", 1, select_types);
	settle_plan = dasa_prepare_saved(
		"UPDATE dasa.promises SET state = $2::dasa.promise_state, value = $3, settled_at = $4 "
		"WHERE id = $1 AND state = 'pending' AND timeout_at > $4 RETURNING *",
		4, settle_types);
	expire_plan = dasa_prepare_saved(
		psprintf("UPDATE dasa.promises SET state = %s, settled_at = timeout_at "
				 "WHERE id = $1 AND state = 'pending' AND timeout_at <= $2 RETURNING *",
				 dasa_timeout_state_sql),
		2, expire_types);
}

static void
raise_not_found(const char *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("promise \"%s\" does not exist", id),
			 errhint("Create it with dasa.create_promise first.")));
}

/* Read the stored row into SPI_tuptable; false if there is none. */
static bool
select_promise(const char *id)
{
	Datum		args[1] = {CStringGetTextDatum(id)};

	dasa_execute(select_plan, args, NULL, SPI_OK_SELECT, 1);
	return SPI_processed == 1;
}

static Jsonb *
optional_payload(FunctionCallInfo fcinfo, int argno, const char *what)
{
	Jsonb	   *value;

	if (PG_ARGISNULL(argno))
		return NULL;
	value = PG_GETARG_JSONB_P(argno);
	dasa_check_payload(value, what);
	return value;
}

/*
 * Insert a pending promise unless the id exists; true if inserted. The
 * caller is connected to SPI and runs as the extension owner.
 */
bool
dasa_insert_promise(const char *id, Jsonb *param, Jsonb *tags,
					TimestampTz timeout_at, TimestampTz now, DasaContext *parent)
{
	Datum		args[7] = {CStringGetTextDatum(id), PointerGetDatum(param),
		PointerGetDatum(tags), TimestampTzGetDatum(timeout_at), TimestampTzGetDatum(now),
		parent ? CStringGetTextDatum(parent->id) : (Datum) 0,
	parent ? CStringGetTextDatum(parent->root_id) : (Datum) 0};
	char		nulls[7] = {' ', param ? ' ' : 'n', ' ', ' ', ' ', parent ? ' ' : 'n', parent ? ' ' : 'n'};

	prepare_plans();
	dasa_execute(insert_plan, args, nulls, SPI_OK_INSERT, 1);
	if (SPI_processed == 0)
		return false;
	dasa_wake_at_commit_deadline(timeout_at);
	return true;
}

/*
 * Insert a pending promise (true), or find the one that has the id (false,
 * and it is in SPI_tuptable).
 */
static bool
insert_or_find(const char *id, Jsonb *param, Jsonb *tags,
			   TimestampTz timeout_at, TimestampTz now, DasaContext *parent)
{
	/* Twice at most: a row can only vanish between the statements by an aborted insert. */
	for (int attempt = 0; attempt < 2; attempt++)
	{
		if (dasa_insert_promise(id, param, tags, timeout_at, now, parent))
			return true;
		if (select_promise(id))
			return false;
	}
	elog(ERROR, "promise \"%s\" neither inserted nor found", id);
}

/* dasa.create_promise(id, timeout, param, tags): idempotent on id. */
Datum
dasa_create_promise(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz timeout_at = dasa_check_timeout(fcinfo, 1, "timeout", now);
	Jsonb	   *param = optional_payload(fcinfo, 2, "param");
	Jsonb	   *tags = dasa_check_tags(fcinfo, 3);
	DasaContext *parent = dasa_context();
	Datum		result = (Datum) 0;
	bool		inserted;

	/* Inside a function: a child of the running invocation, kept if it suspends. */
	if (parent != NULL)
	{
		timeout_at = dasa_context_cap(parent, timeout_at);
		dasa_context_created(parent, id, NULL, param, tags, timeout_at);
	}
	SPI_connect();
	prepare_plans();
	inserted = insert_or_find(id, param, tags, timeout_at, now, parent);
	if (!inserted)
		result = dasa_spi_row_as_promise(fcinfo, 0, caller_cxt);
	SPI_finish();
	if (inserted)
		result = dasa_new_promise_datum(fcinfo, id, param, tags, timeout_at, now);
	PG_RETURN_DATUM(result);
}

/* dasa.get_promise(id): the promise as it reads now; error if unknown. */
Datum
dasa_get_promise(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	Datum		result;

	SPI_connect();
	prepare_plans();
	if (!select_promise(id))
		raise_not_found(id);
	result = dasa_spi_row_as_promise(fcinfo, 0, caller_cxt);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* Try to settle a pending, unexpired promise; true if this call did. */
static bool
try_settle(const char *id, const char *target_state, Jsonb *value, TimestampTz now)
{
	Datum		args[4] = {CStringGetTextDatum(id), CStringGetTextDatum(target_state),
	PointerGetDatum(value), TimestampTzGetDatum(now)};
	char		nulls[4] = {' ', ' ', value ? ' ' : 'n', ' '};

	dasa_execute(settle_plan, args, nulls, SPI_OK_UPDATE_RETURNING, 1);
	return SPI_processed == 1;
}

/* Write the timeout of a pending, expired promise; true if this call did. */
static bool
try_expire(const char *id, TimestampTz now)
{
	Datum		args[2] = {CStringGetTextDatum(id), TimestampTzGetDatum(now)};

	dasa_execute(expire_plan, args, NULL, SPI_OK_UPDATE_RETURNING, 1);
	return SPI_processed == 1;
}

/*
 * What settling the promise (its row in SPI_tuptable) sets off in the same
 * transaction: waiting tasks become due, and a cancellation or timeout ends
 * the promise's own task and cancels what it started. SPI_tuptable is kept.
 */
static void
after_settled(const char *id)
{
	SPITupleTable *row = SPI_tuptable;
	DasaOutcome outcome;
	bool		isnull;
	int			awaited = SPI_fnumber(row->tupdesc, "awaited");

	dasa_wake_at_commit_settled(id);
	dasa_spi_row_outcome(0, &outcome);
	if (awaited > 0 && DatumGetBool(SPI_getbinval(row->vals[0], row->tupdesc, awaited, &isnull)))
		dasa_fire_callbacks(list_make1(pstrdup(id)));
	if (awaited > 0 &&
		(strcmp(outcome.state, "rejected_canceled") == 0 ||
		 strcmp(outcome.state, "rejected_timedout") == 0))
	{
		dasa_end_tasks(list_make1(pstrdup(id)));
		if (strcmp(outcome.state, "rejected_canceled") == 0)
			dasa_cancel_children(id);
	}
	SPI_tuptable = row;
	SPI_processed = 1;
}

/*
 * Settle the promise to target_state unless it already is settled (or
 * expired, which settles it by timeout). Leaves the stored row in
 * SPI_tuptable.
 */
static void
settle_or_find(const char *id, const char *target_state, Jsonb *value)
{
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		DasaOutcome outcome;

		if (try_settle(id, target_state, value, now) || try_expire(id, now))
		{
			after_settled(id);
			return;
		}
		if (!select_promise(id))
			raise_not_found(id);
		dasa_spi_row_outcome(0, &outcome);
		if (strcmp(outcome.state, "pending") != 0)
			return;
		/* Created and committed by someone else between our statements: try again. */
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Apply the timeout rule to a promise from dasa's own code: write its
 * timeout if it has expired. True if the promise is settled now.
 */
bool
dasa_expire_internal(const char *id)
{
	DasaOutcome outcome;

	prepare_plans();
	if (try_expire(id, GetCurrentTimestamp()))
	{
		after_settled(id);
		return true;
	}
	if (!select_promise(id))
		return true;			/* gone: nothing left to wait for */
	dasa_spi_row_outcome(0, &outcome);
	return strcmp(outcome.state, "pending") != 0;
}

/* Settle a promise from dasa's own code (connected to SPI, as the owner). */
void
dasa_settle_internal(const char *id, const char *target_state, Jsonb *value)
{
	prepare_plans();
	settle_or_find(id, target_state, value);
}

static Datum
settle(FunctionCallInfo fcinfo, const char *target_state)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	Jsonb	   *value = optional_payload(fcinfo, 1, "value");
	Datum		result;

	SPI_connect();
	prepare_plans();
	settle_or_find(id, target_state, value);
	result = dasa_spi_row_as_promise(fcinfo, 0, caller_cxt);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

Datum
dasa_resolve(PG_FUNCTION_ARGS)
{
	return settle(fcinfo, "resolved");
}

Datum
dasa_reject(PG_FUNCTION_ARGS)
{
	return settle(fcinfo, "rejected");
}

Datum
dasa_cancel(PG_FUNCTION_ARGS)
{
	return settle(fcinfo, "rejected_canceled");
}
