/*
 * sleep.c: dasa.sleep and dasa.current_invocation (SQL-callable).
 *
 * A durable sleep is a timer child of the running invocation: a promise
 * tagged as a timer, which the database worker resolves at its deadline.
 * The invocation awaits it, so it suspends and holds no executor while it
 * sleeps, and a restart in between changes nothing.
 */
#include "api/api.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(dasa_sleep);
PG_FUNCTION_INFO_V1(dasa_current_invocation);

static Jsonb *
timer_tags(void)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
											  CStringGetDatum("{\"" DASA_TIMER_TAG "\": \"true\"}")));
}

/* dasa.sleep(duration): inside a function, a durable timer; it returns once it fired. */
Datum
dasa_sleep(PG_FUNCTION_ARGS)
{
	DasaContext *running = dasa_context();
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake_at;
	char	   *id;
	Jsonb	   *tags = timer_tags();
	Oid			caller = GetUserId();
	DasaUserSave save;
	const DasaRecorded *recorded;

	if (running == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dasa.sleep can only run inside a dasa function"),
				 errdetail("A durable sleep suspends an invocation; a plain session has none."),
				 errhint("Use pg_sleep here, or create a promise tagged {\"%s\": \"true\"} and dasa.await it.",
						 DASA_TIMER_TAG)));
	wake_at = dasa_context_cap(running, dasa_check_timeout(fcinfo, 0, "duration", now));
	id = dasa_context_child_id(running);
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	recorded = dasa_recorded_child(running, id);
	if (recorded != NULL && recorded->earlier_run && recorded->function != NULL)
		recorded = NULL;		/* (a re-run: what the run it repeats did there is no timer) */
	if (recorded != NULL)
	{
		dasa_check_replay_of(running, id, recorded->function, NULL);
		dasa_context_found(running, id, NULL, recorded);
	}
	else if (!dasa_promise_insert(id, NULL, tags, wake_at, now, running, caller))
		dasa_check_replay(running, id, NULL);
	SPI_finish();
	dasa_restore_user(&save);
	if (recorded == NULL)
		dasa_context_created(running, id, NULL, NULL, NULL, tags, wake_at, caller);
	(void) dasa_await_internal(id, 0);
	PG_RETURN_VOID();
}

/* dasa.current_invocation(): the id of the invocation running this code, or NULL. */
Datum
dasa_current_invocation(PG_FUNCTION_ARGS)
{
	DasaContext *running = dasa_context();

	if (running == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(running->id));
}
