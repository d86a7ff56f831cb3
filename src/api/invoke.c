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

/* dasa.invoke(name, args, id, timeout, start_at, priority): the invocation's id, at once. */
Datum
dasa_invoke(PG_FUNCTION_ARGS)
{
	DasaInvokeArgs in;
	TimestampTz start_at;
	int			priority;

	dasa_check_invoke_args(fcinfo, &in);
	start_at = PG_NARGS() > 4 ? dasa_check_start_at(fcinfo, 4) : 0;
	priority = PG_NARGS() > 5 ? dasa_check_priority(fcinfo, 5) : 0;
	PG_RETURN_TEXT_P(cstring_to_text(dasa_invoke_at(in.name, in.args, in.id, in.timeout,
													dasa_no_tags(), GetUserId(), start_at, priority)));
}
