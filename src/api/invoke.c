/*
 * invoke.c: dasa.invoke (SQL-callable).
 *
 * Checks the arguments and creates the invocation through the kernel
 * (core/invocations.c), in the caller's transaction, as the caller: the
 * kernel checks the caller may execute the procedure.
 */
#include "api/api.h"

#include "miscadmin.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(dasa_invoke);

/* dasa.invoke(name, args, id, timeout): the invocation's id, at once. */
Datum
dasa_invoke(PG_FUNCTION_ARGS)
{
	char	   *name = dasa_check_function_name(fcinfo, 0);
	char	   *id = PG_ARGISNULL(2) ? NULL : dasa_check_id(fcinfo, 2);
	Interval   *timeout = PG_ARGISNULL(3) ? NULL : dasa_check_interval(fcinfo, 3, "timeout");
	Jsonb	   *args = dasa_check_args(fcinfo, 1);
	PG_RETURN_TEXT_P(cstring_to_text(dasa_invoke_internal(name, args, id, timeout, GetUserId())));
}

