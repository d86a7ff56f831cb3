/*
 * promises.c: create, read and settle promises (SQL-callable).
 *
 * Thin wrappers: check the arguments, call the kernel, and return the
 * promise as it reads now (the timeout rule applied). Creating is
 * idempotent on id; settling a settled promise changes nothing and returns
 * the stored row. Blocking waits are in await.c.
 */
#include "api/api.h"

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
	Datum		result = (Datum) 0;
	DasaRows	found;
	bool		inserted;

	/* Inside a function: a child of the running invocation, kept if it suspends. */
	if (parent != NULL)
	{
		timeout_at = dasa_context_cap(parent, timeout_at);
		dasa_context_created(parent, id, NULL, param, tags, timeout_at);
	}
	SPI_connect();
	found = dasa_promise_create(id, param, tags, timeout_at, now, parent, &inserted);
	if (!inserted)
		result = dasa_row_as_promise(fcinfo, &found, 0, caller_cxt);
	SPI_finish();
	if (inserted)
		result = dasa_new_promise_datum(fcinfo, id, param, tags, timeout_at, now);
	PG_RETURN_DATUM(result);
}

/* dasa.get_promise(id): the promise as it reads now; error if unknown. */
Datum
dasa_get_promise(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	DasaRows	found;
	Datum		result;

	SPI_connect();
	found = dasa_promise_select(id);
	if (found.n == 0)
		dasa_raise_not_found(id);
	result = dasa_row_as_promise(fcinfo, &found, 0, caller_cxt);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

static Datum
settle(FunctionCallInfo fcinfo, const char *target_state)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	Jsonb	   *value = dasa_check_optional_payload(fcinfo, 1, "value");
	DasaRows	stored;
	Datum		result;

	SPI_connect();
	stored = dasa_settle_or_read(id, target_state, value);
	result = dasa_row_as_promise(fcinfo, &stored, 0, caller_cxt);
	SPI_finish();
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
