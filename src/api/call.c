/*
 * call.c: CALL dasa.call(name, args, id, timeout): invoke, commit, await.
 *
 * A procedure, because the invocation is visible to executors only once it
 * commits: it commits it, then waits for the value. Inside a transaction
 * block it cannot commit, so it refuses with a hint instead of waiting
 * forever. PostgreSQL forbids a SET clause on a procedure that commits, so
 * this one pins search_path itself for each of its two transactions.
 */
#include "api/api.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(dasa_call);

static int
pin_search_path(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

static void
refuse_in_transaction_block(FunctionCallInfo fcinfo)
{
	if (fcinfo->context != NULL && IsA(fcinfo->context, CallContext) &&
		!castNode(CallContext, fcinfo->context)->atomic)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
			 errmsg("dasa.call cannot run inside a transaction block"),
			 errdetail("An invocation becomes visible to executors only when it commits, so waiting for it in the same transaction would never end."),
			 errhint("Run CALL dasa.call(...) outside a transaction block, or use SELECT dasa.invoke(...), COMMIT, then SELECT dasa.await(id).")));
}

static Datum
result_record(FunctionCallInfo fcinfo, Jsonb *value)
{
	TupleDesc	desc;
	Datum		values[1] = {PointerGetDatum(value)};
	bool		nulls[1] = {value == NULL};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "dasa.call must return a record");
	desc = BlessTupleDesc(desc);
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

Datum
dasa_call(PG_FUNCTION_ARGS)
{
	DasaInvokeArgs in;
	Jsonb	   *value;
	int			nest;
	char		invoked[DASA_MAX_ID_BYTES + 1];

	dasa_check_invoke_args(fcinfo, &in);
	refuse_in_transaction_block(fcinfo);

	nest = pin_search_path();
	strlcpy(invoked, dasa_invoke_internal(in.name, in.args, in.id, in.timeout, GetUserId()), sizeof(invoked));
	AtEOXact_GUC(true, nest);

	SPI_connect_ext(SPI_OPT_NONATOMIC);
	SPI_commit();
	SPI_finish();

	nest = pin_search_path();
	value = dasa_await_internal(invoked, 0);
	AtEOXact_GUC(true, nest);
	PG_RETURN_DATUM(result_record(fcinfo, value));
}
