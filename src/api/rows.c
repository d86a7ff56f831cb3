/*
 * rows.c: statement results returned as the calling function's row type.
 *
 * Promise rows get the timeout rule applied first, so that no caller ever
 * sees a pending promise past its deadline. Also dasa._project, the same
 * rule for search_promises.
 */
#include "api/api.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(dasa_project);

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
 * A row of a statement's result as the function's row-type result,
 * allocated in result_cxt (so it survives SPI_finish); a promise row gets
 * the timeout rule applied first.
 */
static Datum
row_datum(FunctionCallInfo fcinfo, const DasaRows *rows, uint64 row, MemoryContext result_cxt,
		  bool is_promise)
{
	TupleDesc	desc = rows->table->tupdesc;
	Datum	   *values = palloc(desc->natts * sizeof(Datum));
	bool	   *nulls = palloc(desc->natts * sizeof(bool));
	MemoryContext old;
	Datum		result;

	heap_deform_tuple(rows->table->vals[row], desc, values, nulls);
	if (is_promise)
		dasa_apply_timeout_rule(desc, values, nulls, GetCurrentTimestamp());
	old = MemoryContextSwitchTo(result_cxt);
	result = promise_datum(fcinfo, values, nulls);
	MemoryContextSwitchTo(old);
	return result;
}

Datum
dasa_row_as_result(FunctionCallInfo fcinfo, const DasaRows *rows, uint64 row,
				   MemoryContext result_cxt)
{
	return row_datum(fcinfo, rows, row, result_cxt, false);
}

Datum
dasa_row_as_promise(FunctionCallInfo fcinfo, const DasaRows *rows, uint64 row,
					MemoryContext result_cxt)
{
	return row_datum(fcinfo, rows, row, result_cxt, true);
}

static void
set_column(TupleDesc desc, Datum *values, bool *nulls, const char *name, Datum value)
{
	int			i = dasa_promise_column(desc, name);

	values[i] = value;
	nulls[i] = false;
}

/* The row a fresh create_promise just inserted, without reading it back. */
Datum
dasa_new_promise_datum(FunctionCallInfo fcinfo, const char *id, Jsonb *param, Jsonb *tags,
					   TimestampTz timeout_at, TimestampTz created_at, Oid owner,
					   DasaContext *parent)
{
	TupleDesc	desc = result_desc(fcinfo);
	Datum	   *values = palloc0(desc->natts * sizeof(Datum));
	bool	   *nulls = palloc(desc->natts * sizeof(bool));

	memset(nulls, true, desc->natts * sizeof(bool));
	set_column(desc, values, nulls, "id", CStringGetTextDatum(id));
	set_column(desc, values, nulls, "state",
			   dasa_pending_state(TupleDescAttr(desc, dasa_promise_column(desc, "state"))->atttypid));
	if (param != NULL)
		set_column(desc, values, nulls, "param", PointerGetDatum(param));
	set_column(desc, values, nulls, "tags", PointerGetDatum(tags));
	set_column(desc, values, nulls, "timeout_at", TimestampTzGetDatum(timeout_at));
	set_column(desc, values, nulls, "created_at", TimestampTzGetDatum(created_at));
	set_column(desc, values, nulls, "awaited", BoolGetDatum(false));
	set_column(desc, values, nulls, "owner", ObjectIdGetDatum(owner));
	if (parent != NULL)
	{
		set_column(desc, values, nulls, "parent_id", CStringGetTextDatum(parent->id));
		set_column(desc, values, nulls, "root_id", CStringGetTextDatum(parent->root_id));
	}
	dasa_apply_timeout_rule(desc, values, nulls, GetCurrentTimestamp());
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
	dasa_apply_timeout_rule(desc, values, nulls, GetCurrentTimestamp());
	result = promise_datum(fcinfo, values, nulls);
	ReleaseTupleDesc(desc);
	PG_RETURN_DATUM(result);
}

