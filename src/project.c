/*
 * project.c: the timeout rule as every reader sees it.
 *
 * A pending promise whose deadline has passed is never shown as pending: it
 * reads as rejected_timedout (or resolved, for a timer) settled at its
 * deadline, whether or not the worker has written that yet. This file turns
 * raw rows into what readers see; it writes nothing.
 */
#include "dasa.h"

#include "access/htup_details.h"
#include "catalog/pg_enum.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(dasa_project);

/* SQL for the state an expired pending row settles to (row's tags in scope). */
const char *dasa_timeout_state_sql =
"CASE WHEN tags @> '{\"" DASA_TIMER_TAG "\": \"true\"}' "
"THEN 'resolved'::dasa.promise_state ELSE 'rejected_timedout'::dasa.promise_state END";

/* The enum values the rule needs, looked up once per enum type. */
static Oid	labels_typid = InvalidOid;
static Oid	pending_oid;
static Oid	resolved_oid;
static Oid	timedout_oid;

static Oid
enum_label_oid(Oid typid, const char *label)
{
	HeapTuple	tup = SearchSysCache2(ENUMTYPOIDNAME, ObjectIdGetDatum(typid),
									  CStringGetDatum(label));
	Oid			result;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "dasa.promise_state has no label \"%s\"", label);
	result = ((Form_pg_enum) GETSTRUCT(tup))->oid;
	ReleaseSysCache(tup);
	return result;
}

static void
load_labels(Oid typid)
{
	if (typid == labels_typid)
		return;
	pending_oid = enum_label_oid(typid, "pending");
	resolved_oid = enum_label_oid(typid, "resolved");
	timedout_oid = enum_label_oid(typid, "rejected_timedout");
	labels_typid = typid;
}

/* Is the enum value (of dasa.promise_state, type typid) 'pending'? */
bool
dasa_state_is_pending(Oid typid, Datum state)
{
	load_labels(typid);
	return DatumGetObjectId(state) == pending_oid;
}

/* Is this tag set a timer's ({"resonate:timer": "true"})? */
bool
dasa_tags_mark_timer(Jsonb *tags)
{
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(tags))
		return false;
	v = getKeyJsonValueFromContainer(&tags->root, DASA_TIMER_TAG,
									 strlen(DASA_TIMER_TAG), NULL);
	return v != NULL && v->type == jbvString && v->val.string.len == 4 &&
		memcmp(v->val.string.val, "true", 4) == 0;
}

static int
attnum_of(TupleDesc desc, const char *name)
{
	int			attnum = SPI_fnumber(desc, name);

	if (attnum <= 0)
		elog(ERROR, "promise row has no column \"%s\"", name);
	return attnum - 1;
}

/* Apply the timeout rule to one deformed promise row, in place. */
void
dasa_project_row(TupleDesc desc, Datum *values, bool *nulls, TimestampTz now)
{
	int			state = attnum_of(desc, "state");
	int			timeout_at = attnum_of(desc, "timeout_at");
	int			settled_at = attnum_of(desc, "settled_at");
	int			tags = attnum_of(desc, "tags");

	load_labels(TupleDescAttr(desc, state)->atttypid);
	if (DatumGetObjectId(values[state]) != pending_oid ||
		DatumGetTimestampTz(values[timeout_at]) > now)
		return;

	values[state] = ObjectIdGetDatum(dasa_tags_mark_timer(DatumGetJsonbP(values[tags]))
									 ? resolved_oid : timedout_oid);
	values[settled_at] = values[timeout_at];
	nulls[settled_at] = false;
}

/* The function's result row type, looked up once per call site. */
static TupleDesc
result_desc(FunctionCallInfo fcinfo)
{
	TupleDesc	desc;
	MemoryContext old;

	if (fcinfo->flinfo->fn_extra != NULL)
		return (TupleDesc) fcinfo->flinfo->fn_extra;
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "function returning dasa.promises called in wrong context");
	desc = BlessTupleDesc(CreateTupleDescCopy(desc));
	MemoryContextSwitchTo(old);
	fcinfo->flinfo->fn_extra = desc;
	return desc;
}

/* Form a composite datum of the function's result type from projected values. */
static Datum
promise_datum(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	desc = result_desc(fcinfo);

	return heap_copy_tuple_as_datum(heap_form_tuple(desc, values, nulls), desc);
}

/*
 * Row "row" of the last SPI result as the function's row-type result,
 * allocated in result_cxt (so it survives SPI_finish); a promise row gets
 * the timeout rule applied first.
 */
static Datum
spi_row_datum(FunctionCallInfo fcinfo, int row, MemoryContext result_cxt, bool is_promise)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;
	Datum	   *values = palloc(desc->natts * sizeof(Datum));
	bool	   *nulls = palloc(desc->natts * sizeof(bool));
	MemoryContext old;
	Datum		result;

	heap_deform_tuple(SPI_tuptable->vals[row], desc, values, nulls);
	if (is_promise)
		dasa_project_row(desc, values, nulls, GetCurrentTimestamp());
	old = MemoryContextSwitchTo(result_cxt);
	result = promise_datum(fcinfo, values, nulls);
	MemoryContextSwitchTo(old);
	return result;
}

Datum
dasa_spi_row_as_result(FunctionCallInfo fcinfo, int row, MemoryContext result_cxt)
{
	return spi_row_datum(fcinfo, row, result_cxt, false);
}

Datum
dasa_spi_row_as_promise(FunctionCallInfo fcinfo, int row, MemoryContext result_cxt)
{
	return spi_row_datum(fcinfo, row, result_cxt, true);
}

static void
set_column(TupleDesc desc, Datum *values, bool *nulls, const char *name, Datum value)
{
	int			i = attnum_of(desc, name);

	values[i] = value;
	nulls[i] = false;
}

/* The row a fresh create_promise just inserted, without reading it back. */
Datum
dasa_new_promise_datum(FunctionCallInfo fcinfo, const char *id, Jsonb *param, Jsonb *tags,
					   TimestampTz timeout_at, TimestampTz created_at)
{
	TupleDesc	desc = result_desc(fcinfo);
	Datum	   *values = palloc0(desc->natts * sizeof(Datum));
	bool	   *nulls = palloc(desc->natts * sizeof(bool));

	memset(nulls, true, desc->natts * sizeof(bool));
	load_labels(TupleDescAttr(desc, attnum_of(desc, "state"))->atttypid);
	set_column(desc, values, nulls, "id", CStringGetTextDatum(id));
	set_column(desc, values, nulls, "state", ObjectIdGetDatum(pending_oid));
	if (param != NULL)
		set_column(desc, values, nulls, "param", PointerGetDatum(param));
	set_column(desc, values, nulls, "tags", PointerGetDatum(tags));
	set_column(desc, values, nulls, "timeout_at", TimestampTzGetDatum(timeout_at));
	set_column(desc, values, nulls, "created_at", TimestampTzGetDatum(created_at));
	dasa_project_row(desc, values, nulls, GetCurrentTimestamp());
	return promise_datum(fcinfo, values, nulls);
}

/* dasa._project(p): a raw row as readers see it (used by search_promises). */
Datum
dasa_project(PG_FUNCTION_ARGS)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(row),
											  HeapTupleHeaderGetTypMod(row));
	HeapTupleData tuple;
	Datum	   *values = palloc(desc->natts * sizeof(Datum));
	bool	   *nulls = palloc(desc->natts * sizeof(bool));
	Datum		result;

	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;
	heap_deform_tuple(&tuple, desc, values, nulls);
	dasa_project_row(desc, values, nulls, GetCurrentTimestamp());
	result = promise_datum(fcinfo, values, nulls);
	ReleaseTupleDesc(desc);
	PG_RETURN_DATUM(result);
}

/* Row "row" of the last SPI result as readers see it: state label, value, deadline. */
void
dasa_spi_row_outcome(int row, DasaOutcome *out)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;
	Datum	   *values = palloc(desc->natts * sizeof(Datum));
	bool	   *nulls = palloc(desc->natts * sizeof(bool));
	int			state = attnum_of(desc, "state");
	int			value = attnum_of(desc, "value");

	heap_deform_tuple(SPI_tuptable->vals[row], desc, values, nulls);
	dasa_project_row(desc, values, nulls, GetCurrentTimestamp());
	out->state = DatumGetCString(DirectFunctionCall1(enum_out, values[state]));
	out->value = nulls[value] ? NULL : DatumGetJsonbP(values[value]);
	out->timeout_at = DatumGetTimestampTz(values[attnum_of(desc, "timeout_at")]);
	out->settled_at = nulls[attnum_of(desc, "settled_at")] ? 0 :
		DatumGetTimestampTz(values[attnum_of(desc, "settled_at")]);
}
