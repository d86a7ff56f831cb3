/*
 * rerun.c: dasa.rerun (SQL-callable).
 *
 * Checks the arguments; the kernel (core/rerun.c) finds what is re-run,
 * checks the caller may see it and invoke its function, and creates the
 * new invocation in the caller's transaction.
 */
#include "api/api.h"

#include "miscadmin.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(dasa_rerun);

/* dasa.rerun(id, new_id, timeout): the id of the new invocation. */
Datum
dasa_rerun(PG_FUNCTION_ARGS)
{
	char	   *id = dasa_check_id(fcinfo, 0);
	char	   *new_id = PG_ARGISNULL(1) ? NULL : dasa_check_id(fcinfo, 1);
	Interval   *timeout = PG_ARGISNULL(2) ? NULL : dasa_check_interval(fcinfo, 2, "timeout");

	PG_RETURN_TEXT_P(cstring_to_text(dasa_rerun_internal(id, new_id, timeout, GetUserId())));
}
