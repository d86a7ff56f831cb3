/*
 * touch.c: dasa._touch (SQL-callable), what the resonate schema reads a
 * promise through.
 *
 * The Resonate protocol applies a promise's deadline whenever a request
 * touches it (the timeout is written, with everything it sets off, before
 * the request is answered), and a task's own promise and the promises a
 * task waits on must reach the protocol's cascade when they settle: they
 * are marked awaited (which also locks the row, so a settlement racing the
 * request waits for it and then sees what it wrote).
 */
#include "api/api.h"

#include "miscadmin.h"

PG_FUNCTION_INFO_V1(dasa_touch);

/*
 * dasa._touch(id, watch): settle promise id if its deadline has passed,
 * mark it awaited if watch and it is pending, and return it; NULL if there
 * is no such promise the caller may see.
 */
Datum
dasa_touch(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	bool		watch = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	Oid			caller = GetUserId();
	DasaUserSave save;
	DasaRows	found;
	Datum		result = (Datum) 0;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	found = dasa_promise_select_visible(id, caller);
	if (found.n == 1)
	{
		if (!dasa_settle_if_expired(id) && watch)
			(void) dasa_promise_mark_awaited(id);
		found = dasa_promise_select_visible(id, caller);
	}
	if (found.n == 1)
		result = dasa_row_as_promise(fcinfo, &found, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	if (found.n == 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
