/*
 * invocations.c: creating invocations, and what a replay checks of them.
 *
 * An invocation is a promise (its param holds the arguments) plus a pending
 * task with the same id, both written in the caller's transaction, so an
 * invocation exists exactly when the caller's work commits. The caller must
 * be allowed to execute the registered procedure; the rows are written as
 * the extension owner. An executor is woken at commit.
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "port.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

/* The function a task was created for. */
static DasaStatement task_function = {
	.sql = "SELECT function FROM dasa.tasks WHERE id = $1",
	.args = {TEXTOID},
	.columns = {"function"},
};

/* A random (version 4) UUID as text: the id of an invocation given none. */
static char *
random_id(void)
{
	uint8		b[16];

	if (!pg_strong_random(b, sizeof(b)))
		elog(ERROR, "could not generate a random id");
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	return psprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
					b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
					b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* The empty tag set of every invocation, parsed once per backend. */
static Jsonb *
no_tags(void)
{
	static Jsonb *empty = NULL;

	if (empty == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		empty = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
		MemoryContextSwitchTo(old);
	}
	return empty;
}

/* Write the invocation's promise and task unless the id exists; true if written. */
static bool
create_invocation(const char *id, const char *name, Jsonb *args, TimestampTz timeout_at,
				  TimestampTz now, DasaContext *parent)
{
	if (!dasa_promise_insert(id, args, no_tags(), timeout_at, now, parent))
		return false;
	dasa_task_enqueue(id, name, now);
	return true;
}

static const char *
child_kind(const char *function)
{
	return function ? psprintf("an invocation of \"%s\"", function) : "a timer";
}

/*
 * A replay finds the child it named before: it must be what this run makes
 * there (an invocation of the same function, or a timer for function NULL),
 * or the function does not replay deterministically and no recorded result
 * can be trusted. Connected to SPI.
 */
void
dasa_check_replay(DasaContext *c, const char *id, const char *function)
{
	Datum		args[1] = {CStringGetTextDatum(id)};
	DasaRows	rows = dasa_run(&task_function, args, NULL, 1);
	char	   *recorded = rows.n == 1 ? dasa_get_text(&rows, 0, "function") : NULL;

	if (recorded == NULL ? function == NULL : (function != NULL && strcmp(recorded, function) == 0))
		return;
	c->nondeterministic = true;
	ereport(ERROR,
			(errcode(ERRCODE_DASA_NONDETERMINISTIC),
			 errmsg("non-deterministic replay of invocation \"%s\"", c->id),
			 errdetail("Child \"%s\" was recorded as %s, but this run makes %s there.", id,
					   child_kind(recorded), child_kind(function)),
			 errhint("A function must make the same calls in the same order each time it runs; pass explicit ids to calls that vary.")));
}

/*
 * Create the invocation of name with args (id NULL: a fresh one; timeout
 * NULL: the function's). Returns its id. An existing id starts nothing new.
 * Inside a running function, the invocation is its child: named
 * "<parent>.<n>" unless id is given, its deadline capped at the parent's.
 */
char *
dasa_invoke_internal(const char *name, Jsonb *args, const char *id,
					 Interval *timeout, Oid caller)
{
	Oid			proc;
	Interval	fn_timeout;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz timeout_at;
	DasaContext *parent = dasa_context();
	bool		named_here = (id == NULL);
	DasaUserSave save;

	if (id == NULL)
		id = parent ? dasa_context_child_id(parent) : random_id();
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	if (!dasa_registry_lookup(name, &proc, &fn_timeout))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function \"%s\" is not registered", name),
				 errhint("Register it with dasa.register first.")));
	if (pg_proc_aclcheck(proc, caller, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to invoke \"%s\"", name),
				 errdetail("Invoking needs EXECUTE on %s.", format_procedure(proc))));
	timeout_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														 TimestampTzGetDatum(now),
														 IntervalPGetDatum(timeout ? timeout : &fn_timeout)));
	if (parent != NULL)
		timeout_at = dasa_context_cap(parent, timeout_at);
	if (!create_invocation(id, name, args, timeout_at, now, parent) && parent && named_here)
		dasa_check_replay(parent, id, name);
	if (parent != NULL)
		dasa_context_created(parent, id, name, args, no_tags(), timeout_at);
	SPI_finish();
	dasa_restore_user(&save);
	return (char *) id;
}

/*
 * Write again, in the executor's own transaction, what a suspending attempt
 * created: its rollback took the rows away, but the children must go on.
 * Existing ids are left as they are.
 */
void
dasa_persist_created(DasaContext *c)
{
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	foreach(lc, c->created)
	{
		DasaCreated *made = lfirst(lc);

		if (made->function != NULL)
			(void) create_invocation(made->id, made->function, made->param,
									 made->timeout_at, now, c);
		else
			(void) dasa_promise_insert(made->id, made->param, made->tags,
									   made->timeout_at, now, c);
	}
}
