/*
 * context.c: the execution context of the invocation an executor runs now.
 *
 * Inside a running function, dasa.invoke names children "<parent>.<n>" (n
 * counts this attempt's calls in order), promises it creates become its
 * children, and dasa.await on a pending promise suspends the attempt. The
 * context remembers what the attempt created and awaited, so that the
 * executor can keep those even though it rolls the attempt's work back, and
 * it knows the attempt suspended even if user code caught the signal.
 * Outside an executor there is no context and nothing here applies.
 */
#include "dasa.h"

#include "utils/memutils.h"

static DasaContext *current = NULL;

/* The context of the running invocation, or NULL outside one. */
DasaContext *
dasa_context(void)
{
	return current;
}

/* Start the context of one attempt of task; allocated in the current memory context. */
void
dasa_context_begin(DasaTask *task)
{
	DasaContext *c = palloc0(sizeof(DasaContext));

	c->id = task->id;
	c->root_id = task->root_id ? task->root_id : task->id;
	c->deadline = task->timeout_at;
	c->memory = CurrentMemoryContext;
	current = c;
}

void
dasa_context_end(void)
{
	current = NULL;
}

/* The id of the next child: "<parent>.<n>". */
char *
dasa_context_child_id(DasaContext *c)
{
	return MemoryContextStrdup(c->memory, psprintf("%s.%d", c->id, ++c->children));
}

/* A child's deadline may not pass its parent's. */
TimestampTz
dasa_context_cap(DasaContext *c, TimestampTz timeout_at)
{
	return Min(timeout_at, c->deadline);
}

/* Remember a promise (and, with function non-NULL, its task) this attempt created. */
void
dasa_context_created(DasaContext *c, const char *id, const char *function, Jsonb *param,
					 Jsonb *tags, TimestampTz timeout_at)
{
	MemoryContext old = MemoryContextSwitchTo(c->memory);
	DasaCreated *made = palloc0(sizeof(DasaCreated));

	made->id = pstrdup(id);
	made->function = function ? pstrdup(function) : NULL;
	made->param = param ? DatumGetJsonbPCopy(PointerGetDatum(param)) : NULL;
	made->tags = DatumGetJsonbPCopy(PointerGetDatum(tags));
	made->timeout_at = timeout_at;
	c->created = lappend(c->created, made);
	MemoryContextSwitchTo(old);
}

/*
 * Suspend the attempt until the given pending promises settle (all of them,
 * or any one). Raises an error to unwind the user's code; the executor reads
 * the flag, so catching the error changes nothing.
 */
void
dasa_context_suspend(DasaContext *c, List *ids, bool any)
{
	MemoryContext old = MemoryContextSwitchTo(c->memory);
	ListCell   *lc;

	foreach(lc, ids)
		c->awaited = lappend(c->awaited, pstrdup((char *) lfirst(lc)));
	c->await_any = c->await_any || any;
	c->suspended = true;
	MemoryContextSwitchTo(old);
	ereport(ERROR,
			(errcode(ERRCODE_DASA_SUSPENDED),
			 errmsg("invocation \"%s\" suspends until %s settles", c->id,
					list_length(ids) == 1 ? (char *) linitial(ids) : "what it awaits"),
			 errdetail("This is not a failure: dasa rolls this attempt back and runs the function again once the awaited promises settle."),
			 errhint("Do not catch this error; if you do, dasa suspends the invocation anyway.")));
}
