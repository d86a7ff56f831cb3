/*
 * promises.c: create, read and settle promises (SQL-callable).
 *
 * Thin wrappers: check the arguments, call the kernel as the extension
 * owner on behalf of the calling role, and return the promise as it reads
 * now (the timeout rule applied). Creating is idempotent on id for the
 * role that owns it; settling a settled promise changes nothing and returns
 * the stored row; a promise the caller may not see does not exist for it.
 * Blocking waits are in await.c.
 */
#include "api/api.h"

#include "miscadmin.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(dasa_create_promise);
PG_FUNCTION_INFO_V1(dasa_create_promise_at);
PG_FUNCTION_INFO_V1(dasa_get_promise);
PG_FUNCTION_INFO_V1(dasa_resolve);
PG_FUNCTION_INFO_V1(dasa_reject);
PG_FUNCTION_INFO_V1(dasa_cancel);

/*
 * Create promise id (the arguments from 2 on: param, tags) due at
 * timeout_at, created at now; idempotent on id.
 */
static Datum
create_promise(FunctionCallInfo fcinfo, char *id, TimestampTz timeout_at, TimestampTz now)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	Jsonb	   *param = dasa_check_optional_payload(fcinfo, 2, "param");
	Jsonb	   *tags = dasa_check_tags(fcinfo, 3);
	DasaContext *parent = dasa_context();
	Oid			caller = GetUserId();
	Datum		result = (Datum) 0;
	DasaUserSave save;
	DasaRows	found;
	bool		inserted;

	/* Inside a function: a child of the running invocation, kept if it suspends. */
	if (parent != NULL)
	{
		timeout_at = dasa_context_cap_asked(parent, id, timeout_at);
		dasa_context_created(parent, id, NULL, NULL, param, tags, timeout_at, caller);
	}
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	found = dasa_promise_create(id, param, tags, timeout_at, now, parent, caller, &inserted);
	if (!inserted)
		result = dasa_row_as_promise(fcinfo, &found, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	if (inserted)
		result = dasa_new_promise_datum(fcinfo, id, param, tags, timeout_at, now, caller, parent);
	return result;
}

/* dasa.create_promise(id, timeout, param, tags): idempotent on id. */
Datum
dasa_create_promise(PG_FUNCTION_ARGS)
{
	char	   *id = dasa_check_id(fcinfo, 0);
	TimestampTz now = GetCurrentTimestamp();

	PG_RETURN_DATUM(create_promise(fcinfo, id, dasa_check_timeout(fcinfo, 1, "timeout", now), now));
}

/*
 * dasa._create_promise_at(id, timeout_at, param, tags): the same with the
 * deadline given as a time (the Resonate protocol's timeoutAt). A deadline
 * already past makes a promise created at its deadline, read as timed out
 * (or resolved, for a timer) from the start.
 */
Datum
dasa_create_promise_at(PG_FUNCTION_ARGS)
{
	char	   *id = dasa_check_id(fcinfo, 0);
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz timeout_at;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("timeout_at must not be NULL"),
				 errhint("Pass the time the promise times out at.")));
	timeout_at = PG_GETARG_TIMESTAMPTZ(1);
	if (TIMESTAMP_NOT_FINITE(timeout_at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_at must be a finite time"),
				 errhint("Pass the time the promise times out at.")));
	PG_RETURN_DATUM(create_promise(fcinfo, id, timeout_at, Min(now, timeout_at)));
}

/* dasa.get_promise(id): the promise as it reads now; error if unknown. */
Datum
dasa_get_promise(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	Oid			caller = GetUserId();
	DasaUserSave save;
	DasaRows	found;
	Datum		result;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	found = dasa_promise_select_visible(id, caller);
	if (found.n == 0)
		dasa_raise_not_found(id);
	result = dasa_row_as_promise(fcinfo, &found, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_DATUM(result);
}

static Datum
settle(FunctionCallInfo fcinfo, const char *target_state)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	Jsonb	   *value = dasa_check_optional_payload(fcinfo, 1, "value");
	Oid			caller = GetUserId();
	DasaUserSave save;
	DasaRows	stored;
	Datum		result;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	stored = dasa_settle_or_read(id, target_state, value, caller);
	result = dasa_row_as_promise(fcinfo, &stored, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_DATUM(result);
}

Datum
dasa_resolve(PG_FUNCTION_ARGS)
{
	return settle(fcinfo, "resolved");
}

Datum
dasa_reject(PG_FUNCTION_ARGS)
{
	return settle(fcinfo, "rejected");
}

Datum
dasa_cancel(PG_FUNCTION_ARGS)
{
	return settle(fcinfo, "rejected_canceled");
}
