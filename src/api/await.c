/*
 * await.c: dasa.await from a plain session.
 *
 * Returns a resolved promise's value, raises an error carrying the value for
 * a rejected one, and while the promise is pending sleeps on the backend's
 * latch until a settling transaction's commit wakes it (wakeup.c) or the
 * promise's own deadline passes. A slow periodic re-read is the safety net.
 * It refuses to wait where waiting could never end. Inside a running
 * function it never sleeps: a pending promise suspends the invocation.
 */
#include "api/api.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(dasa_await);

/*
 * Read the promise with a fresh snapshot on behalf of the calling role (an
 * unknown id and one it may not see are the same error), holding no lock
 * afterwards; copies what we keep into caller_cxt.
 */
void
dasa_await_read(const char *id, DasaAwaitRead *read, MemoryContext caller_cxt)
{
	DasaContext *running = dasa_suspending_context();

	/* A replay knows its settled children, and an attempt the children it made. */
	read->created_here = false;
	if (running != NULL && dasa_recorded_read(running, id, GetUserId(), &read->promise))
		return;
	if (!dasa_promise_read(id, GetUserId(), &read->promise, &read->created_here, caller_cxt))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("promise \"%s\" does not exist", id),
				 errhint("Create it with dasa.create_promise before awaiting it.")));
	if (running != NULL)
		dasa_context_note_read(running, id);
}

/* Errors for a pending promise that this session could wait on forever. */
void
dasa_refuse_hopeless_wait(const char *id, const DasaAwaitRead *read)
{
	if (read->created_here)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot await promise \"%s\" in the transaction that created it", id),
				 errdetail("No other session can settle the promise before this transaction commits, so the wait would never end."),
				 errhint("Commit the transaction that creates the promise, then await it in a new one.")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot await pending promise \"%s\" under %s isolation", id,
						IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errdetail("The transaction's snapshot would never show the settlement."),
				 errhint("Await in a READ COMMITTED transaction.")));
}

/* The value of a settled promise (NULL: SQL NULL), or the error its rejection stands for. */
Jsonb *
dasa_settled_result(const char *id, const DasaPromiseRead *o)
{
	const char *detail = o->value ? JsonbToCString(NULL, &o->value->root, VARSIZE(o->value)) : "null";

	if (strcmp(o->state, "resolved") == 0)
		return o->value;
	if (strcmp(o->state, "rejected_canceled") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DASA_PROMISE_CANCELED),
				 errmsg("promise \"%s\" was canceled", id),
				 errdetail_internal("%s", detail)));
	if (strcmp(o->state, "rejected_timedout") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DASA_PROMISE_TIMEDOUT),
				 errmsg("promise \"%s\" timed out", id),
				 errdetail_internal("%s", detail)));
	ereport(ERROR,
			(errcode(ERRCODE_DASA_PROMISE_REJECTED),
			 errmsg("promise \"%s\" was rejected", id),
			 errdetail_internal("%s", detail)));
	pg_unreachable();
}

/* Milliseconds to sleep: until the first of the deadlines, at most the re-check interval. */
static long
sleep_ms(TimestampTz promise_deadline, TimestampTz wait_deadline, TimestampTz now)
{
	TimestampTz until = promise_deadline;
	long		ms;

	if (wait_deadline != 0 && wait_deadline < until)
		until = wait_deadline;
	ms = (long) ((until - now + 999) / 1000);	/* round up: never wake early */
	return Max(1, Min(ms, (long) dasa_await_recheck_ms));
}

/* Sleep until the promise settles; returns it settled. Caller registered as awaiter. */
static void
wait_until_settled(const char *id, TimestampTz wait_deadline, DasaAwaitRead *read)
{
	MemoryContext cxt = CurrentMemoryContext;

	for (;;)
	{
		TimestampTz now;

		ResetLatch(MyLatch);
		dasa_await_read(id, read, cxt);
		if (strcmp(read->promise.state, "pending") != 0)
			return;
		dasa_refuse_hopeless_wait(id, read);

		now = GetCurrentTimestamp();
		if (wait_deadline != 0 && now >= wait_deadline)
			ereport(ERROR,
					(errcode(ERRCODE_DASA_AWAIT_TIMEOUT),
					 errmsg("timed out awaiting promise \"%s\"", id),
					 errdetail("The promise is still pending."),
					 errhint("Await it again later, or pass a longer timeout.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms(read->promise.timeout_at, wait_deadline, now),
						 PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Wait until promise id settles (or wait_deadline, 0: none, passes); its
 * value (NULL: SQL NULL), or the error its rejection stands for.
 */
Jsonb *
dasa_await_internal(const char *id, TimestampTz wait_deadline)
{
	DasaAwaitRead read;
	DasaContext *running = dasa_suspending_context();

	/* Inside a function: never block an executor; suspend instead. */
	if (running != NULL)
	{
		dasa_await_read(id, &read, CurrentMemoryContext);
		if (strcmp(read.promise.state, "pending") == 0 && dasa_inline_try(running, id))
			dasa_await_read(id, &read, CurrentMemoryContext);	/* it ran here and settled */
		if (strcmp(read.promise.state, "pending") == 0)
			dasa_context_suspend(running, list_make1(pstrdup(id)), false);
		return dasa_settled_result(id, &read.promise);
	}
	if (dasa_context() != NULL)
		dasa_context_refuse_own_line(dasa_context(), list_make1(pstrdup(id)));

	dasa_awaiter_register(dasa_hash_id(id, strlen(id)));
	PG_TRY();
	{
		wait_until_settled(id, wait_deadline, &read);
	}
	PG_FINALLY();
	{
		dasa_awaiter_unregister();
	}
	PG_END_TRY();

	return dasa_settled_result(id, &read.promise);
}

/* dasa.await(id, timeout): the promise's value once it settles. */
Datum
dasa_await(PG_FUNCTION_ARGS)
{
	char	   *id = dasa_check_id(fcinfo, 0);
	TimestampTz wait_deadline = 0;
	Jsonb	   *value;

	if (!PG_ARGISNULL(1))
		wait_deadline = dasa_check_timeout(fcinfo, 1, "await timeout", GetCurrentTimestamp());
	value = dasa_await_internal(id, wait_deadline);
	if (value == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(value);
}
