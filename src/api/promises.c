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
PG_FUNCTION_INFO_V1(dasa_get_promise);
PG_FUNCTION_INFO_V1(dasa_resolve);
PG_FUNCTION_INFO_V1(dasa_reject);
PG_FUNCTION_INFO_V1(dasa_cancel);

/* dasa.create_promise(id, timeout, param, tags): idempotent on id. */
Datum
dasa_create_promise(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz timeout_at = dasa_check_timeout(fcinfo, 1, "timeout", now);
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
	PG_RETURN_DATUM(result);
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
