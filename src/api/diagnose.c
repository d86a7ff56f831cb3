/*
 * diagnose.c: dasa._explain_claim(), the plan of an executor's claim as it
 * would run right now, with the buffers it reads (for tests and for a DBA
 * who wonders whether history slows the queue). Superuser only: it locks
 * the tasks it would claim until the caller's transaction ends.
 */
#include "api/api.h"

#include "funcapi.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(dasa_explain_claim);

Datum
dasa_explain_claim(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		limit = PG_GETARG_INT32(0);
	List	   *lines;
	ListCell   *lc;

	if (limit < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch must be at least 1, not %d", limit),
				 errdetail("It is how many tasks the explained claim takes."),
				 errhint("Pass the executor batch size, dasa.executor_batch_size.")));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	SPI_connect();
	lines = dasa_tasks_explain_claim(limit);
	foreach(lc, lines)
	{
		Datum		value = CStringGetTextDatum((char *) lfirst(lc));
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	SPI_finish();
	return (Datum) 0;
}
