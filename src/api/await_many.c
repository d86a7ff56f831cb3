/*
 * await_many.c: dasa.await_all and dasa.await_any (SQL-callable).
 *
 * await_all is the array of values in the order of the ids (the first
 * rejection, in that order, is raised); await_any is the value of the one
 * that settled first. Inside a running function they suspend instead of
 * waiting: await_all until every pending one has settled, await_any until
 * one has. In a plain session they wait on the latch like dasa.await.
 */
#include "api/api.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(dasa_await_all);
PG_FUNCTION_INFO_V1(dasa_await_any);

#define MAX_AWAITED 1000000

/* The ids argument: a non-empty array without NULLs, each a valid id. */
static List *
check_ids(FunctionCallInfo fcinfo)
{
	ArrayType  *array;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *ids = NIL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("ids must not be NULL")));
	array = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0 || n > MAX_AWAITED)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ids must hold 1 to %d promise ids", MAX_AWAITED),
				 errdetail("The array given holds %d.", n)));
	for (int i = 0; i < n; i++)
	{
		char	   *id;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("ids must not contain NULL")));
		id = TextDatumGetCString(elems[i]);
		dasa_check_id_length(strlen(id));
		ids = lappend(ids, id);
	}
	return ids;
}

static TimestampTz
wait_deadline(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(1))
		return 0;
	return dasa_check_timeout(fcinfo, 1, "await timeout", GetCurrentTimestamp());
}

static DasaAwaitRead *
read_all(List *ids)
{
	DasaAwaitRead *reads = palloc0(list_length(ids) * sizeof(DasaAwaitRead));
	ListCell   *lc;

	foreach(lc, ids)
		dasa_await_read((char *) lfirst(lc), &reads[foreach_current_index(lc)], CurrentMemoryContext);
	return reads;
}

static bool
is_pending(const DasaAwaitRead *read)
{
	return strcmp(read->promise.state, "pending") == 0;
}

/* Read again those of ids that read as pending. */
static void
reread_pending(List *ids, DasaAwaitRead *reads)
{
	ListCell   *lc;

	foreach(lc, ids)
		if (is_pending(&reads[foreach_current_index(lc)]))
			dasa_await_read((char *) lfirst(lc), &reads[foreach_current_index(lc)], CurrentMemoryContext);
}

/* Append value (NULL: JSON null) to the array being built in *state. */
static void
push_element(JsonbParseState **state, Jsonb *value)
{
	JsonbValue	v;

	if (value == NULL)
		v.type = jbvNull;
	else if (JB_ROOT_IS_SCALAR(value))
		(void) JsonbExtractScalar(&value->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &value->root;
		v.val.binary.len = VARSIZE(value) - VARHDRSZ;
	}
	(void) pushJsonbValue(state, WJB_ELEM, &v);
}

/* The values, in the order of ids, as one jsonb array (built directly, never printed). */
static Datum
values_array(List *ids, DasaAwaitRead *reads)
{
	JsonbParseState *state = NULL;
	JsonbValue *array;
	ListCell   *lc;

	(void) pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, ids)
		push_element(&state, dasa_settled_result((char *) lfirst(lc),
												 &reads[foreach_current_index(lc)].promise));
	array = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(array));
}

/* dasa.await_all(ids, timeout): the values, in order, once all have settled. */
Datum
dasa_await_all(PG_FUNCTION_ARGS)
{
	List	   *ids = check_ids(fcinfo);
	TimestampTz deadline = wait_deadline(fcinfo);
	DasaContext *running = dasa_suspending_context();
	DasaAwaitRead *reads;
	List	   *pending = NIL;
	ListCell   *lc;

	if (running == NULL)
	{
		/* A plain session: waiting for each in turn waits for all. */
		foreach(lc, ids)
			(void) dasa_await_internal((char *) lfirst(lc), deadline);
	}
	reads = read_all(ids);
	foreach(lc, ids)
	{
		DasaAwaitRead *read = &reads[foreach_current_index(lc)];

		if (is_pending(read))
			pending = lappend(pending, lfirst(lc));
		else if (strcmp(read->promise.state, "resolved") != 0)
			(void) dasa_settled_result((char *) lfirst(lc), &read->promise);	/* raises */
	}
	if (pending != NIL && dasa_inline_try_all(running, pending))
		reread_pending(ids, reads);		/* they ran here and resolved */
	else if (pending != NIL)
		dasa_context_suspend(running, pending, false);
	PG_RETURN_DATUM(values_array(ids, reads));
}

/* The index of the promise that settled first, or -1 if all are pending. */
static int
first_settled(List *ids, DasaAwaitRead *reads)
{
	int			best = -1;

	for (int i = 0; i < list_length(ids); i++)
		if (!is_pending(&reads[i]) &&
			(best < 0 || reads[i].promise.settled_at < reads[best].promise.settled_at))
			best = i;
	return best;
}

/* Sleep until any settlement in this database, a deadline, or the re-check interval. */
static void
wait_for_any(List *ids, DasaAwaitRead *reads, TimestampTz deadline)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = now + (TimestampTz) dasa_await_recheck_ms * 1000;
	long		ms;

	for (int i = 0; i < list_length(ids); i++)
		until = Min(until, reads[i].promise.timeout_at);
	if (deadline != 0)
	{
		if (now >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_DASA_AWAIT_TIMEOUT),
					 errmsg("timed out awaiting any of %d promises", list_length(ids)),
					 errdetail("All of them are still pending."),
					 errhint("Await them again later, or pass a longer timeout.")));
		until = Min(until, deadline);
	}
	ms = Max(1, (long) ((until - now + 999) / 1000));
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms, PG_WAIT_EXTENSION);
	CHECK_FOR_INTERRUPTS();
}

/* What a plain session's await_any found: all reads, and the first settled. */
typedef struct AnyWait
{
	List	   *ids;
	TimestampTz deadline;
	DasaAwaitRead *reads;
	int			first;
} AnyWait;

static void
wait_until_any_settled(AnyWait *w)
{
	for (;;)
	{
		ResetLatch(MyLatch);
		w->reads = read_all(w->ids);
		if ((w->first = first_settled(w->ids, w->reads)) >= 0)
			return;
		for (int i = 0; i < list_length(w->ids); i++)
			dasa_refuse_hopeless_wait((char *) list_nth(w->ids, i), &w->reads[i]);
		wait_for_any(w->ids, w->reads, w->deadline);
	}
}

/* Any settlement in the database wakes us (hash 0); then we look again. */
static void
wait_any_in_session(AnyWait *w)
{
	dasa_awaiter_register(0);
	PG_TRY();
	{
		wait_until_any_settled(w);
	}
	PG_FINALLY();
	{
		dasa_awaiter_unregister();
	}
	PG_END_TRY();
}

/* dasa.await_any(ids, timeout): the value of the first to settle. */
Datum
dasa_await_any(PG_FUNCTION_ARGS)
{
	AnyWait		w = {.ids = check_ids(fcinfo), .deadline = wait_deadline(fcinfo)};
	DasaContext *running = dasa_suspending_context();
	Jsonb	   *value;

	if (running != NULL)
	{
		w.reads = read_all(w.ids);
		w.first = first_settled(w.ids, w.reads);
		if (w.first < 0)
			dasa_context_suspend(running, w.ids, true);
	}
	else
	{
		if (dasa_context() != NULL)
			dasa_context_refuse_own_line(dasa_context(), w.ids);
		wait_any_in_session(&w);
	}
	value = dasa_settled_result((char *) list_nth(w.ids, w.first), &w.reads[w.first].promise);
	if (value == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(value);
}
