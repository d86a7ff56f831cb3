/*
 * limits.c: at most so many invocations of a function running at once
 * (dasa.register's max_running), across the executors of a database.
 *
 * A slot is a session advisory lock (the function's name hashed, the slot's
 * number) that the executor takes just before the attempt: no shared
 * counter, no lock wider than the function's own slots. The lock is let go
 * when the attempt ends (the session is reset after every attempt). An
 * executor that finds every slot taken leaves the task pending for another
 * moment, and passes the function by in its claims for a short while, so
 * that it does not claim the same tasks again and again.
 */
#include "runtime/runtime.h"

#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* How long a function found at its limit is passed by in claims. */
#define PASS_BY_MS 500

/* A function at its limit, passed by until then. */
typedef struct Full
{
	char	   *function;
	TimestampTz until;
} Full;

static List *full = NIL;

/* May the attempt of task start? True once it holds one of its function's slots. */
bool
dasa_limit_take(DasaTask *task)
{
	int32		key = (int32) hash_bytes((const unsigned char *) task->function, strlen(task->function));

	for (int slot = 0; slot < task->max_running; slot++)
		if (DatumGetBool(DirectFunctionCall2(pg_try_advisory_lock_int4, Int32GetDatum(key),
											 Int32GetDatum(slot))))
			return true;
	return false;
}

/* Every slot of function was taken: pass it by in the next claims. */
void
dasa_limit_full(const char *function)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	Full	   *f = palloc(sizeof(Full));

	f->function = pstrdup(function);
	f->until = GetCurrentTimestamp() + PASS_BY_MS * 1000;
	full = lappend(full, f);
	MemoryContextSwitchTo(old);
}

/* The functions to pass by in a claim now (their limits were reached a moment ago). */
List *
dasa_limit_passed_by(void)
{
	TimestampTz now = GetCurrentTimestamp();
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, full)
	{
		Full	   *f = lfirst(lc);

		if (f->until <= now)
		{
			pfree(f->function);
			full = foreach_delete_current(full, lc);
		}
		else
			names = lappend(names, f->function);
	}
	return names;
}
