/*
 * visibility.c: dasa._may_see(owner), for the views and the row security
 * policy that show each role only what it may see.
 *
 * Runs as the querying role (views evaluate functions as the role that
 * queries them), so current_user is the role asking.
 */
#include "api/api.h"

#include "miscadmin.h"

PG_FUNCTION_INFO_V1(dasa_may_see);

/* dasa._may_see(owner regrole): may the current role see promises owned by owner? */
Datum
dasa_may_see(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(dasa_may_access(GetUserId(), PG_GETARG_OID(0)));
}
