/*
 * inline.c: the executor's half of running an awaited child at once
 * (core/inline.c says why and when it may be tried).
 *
 * Only a child whose function this executor has seen finish quickly and
 * never fail or suspend when run this way: the child runs under its
 * parent's timeout, not its own, so a slow one would spend the parent's
 * time, and one that fails or awaits is better run as usual (its failure
 * counted, its retries spaced, its awaits suspending it alone). Whatever
 * goes wrong, the child's subtransaction is rolled back and the parent
 * suspends on it as it would have without this. Nothing is run this way
 * in an attempt that crashed its executor before (the crash would be
 * counted against the parent), nor deeper than a few children down.
 */
#include "runtime/runtime.h"

#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

/* Children run inside children inside the attempt, at most. */
#define MAX_INLINE_DEPTH 4

/* A child whose function allows attempts shorter than this runs as usual. */
#define MIN_CHILD_TIMEOUT_MS 1000.0

static TimestampTz permitted_until = 0;
static int	depth = 0;

/*
 * Children of the attempt about to run may run inside it until then (0:
 * none may): the attempt's timeout, or its give-way time, must not be
 * spent by them; past it a child runs as usual and the parent suspends.
 */
void
dasa_inline_permit(TimestampTz until)
{
	permitted_until = until;
	depth = 0;
}

/*
 * Whatever the child's run wrote is rolled back: if its own row was written
 * meanwhile (by a read of the tables, unwritten.c), it is not any more.
 */
static void
undo_written(DasaContext *parent, DasaCreated *made, bool was_unwritten)
{
	if (was_unwritten && !made->unwritten)
	{
		made->unwritten = true;
		parent->unwritten++;
	}
}

/*
 * Run child (made: as its parent's attempt created it, perhaps not written
 * yet) in a subtransaction, its own context current, then parent's again;
 * true if it returned a value in time, kept in *value. An error that is the
 * parent's (its timeout, a cancel) goes on up.
 */
static bool
run_child(DasaContext *parent, DasaCreated *made, DasaTask *child, Jsonb **value)
{
	MemoryContext keep = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		was_unwritten = made->unwritten;
	volatile bool ok = false;

	dasa_context_begin(child);
	dasa_suspending_context()->outer = parent;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(keep);
	depth++;
	PG_TRY();
	{
		*value = dasa_call_inline(child, keep);
		ok = !dasa_suspending_context()->suspended && GetCurrentTimestamp() < child->timeout_at &&
			!dasa_attempt_used_temp_objects();
		if (ok)
			ReleaseCurrentSubTransaction();
		else
		{
			RollbackAndReleaseCurrentSubTransaction();
			undo_written(parent, made, was_unwritten);
		}
	}
	PG_CATCH();
	{
		ErrorData  *error;

		depth--;
		(void) dasa_context_swap(parent);
		MemoryContextSwitchTo(keep);
		error = CopyErrorData();
		if (error->sqlerrcode == ERRCODE_QUERY_CANCELED || error->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		undo_written(parent, made, was_unwritten);
		depth++;
	}
	PG_END_TRY();
	depth--;
	(void) dasa_context_swap(parent);
	MemoryContextSwitchTo(keep);
	CurrentResourceOwner = owner;
	return ok;
}

/*
 * The task of made, the attempt's own child, as written moments ago (no
 * other session can see or change it yet, so nothing is read back but its
 * registration); false if it cannot run here.
 */
static bool
child_task(DasaContext *c, const DasaCreated *made, DasaTask *child)
{
	DasaLookup	fn;

	if (!dasa_registry_lookup(made->function, &fn) || fn.queue != NULL || fn.max_running > 0)
		return false;			/* (a limited function runs only as its limit allows) */
	memset(child, 0, sizeof(*child));
	child->id = made->id;
	child->function = made->function;
	child->root_id = c->root_id;
	child->args = made->param ? made->param :
		DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	child->timeout_at = made->timeout_at;
	child->run_as = made->owner;
	child->registered = true;
	child->proc = fn.proc;
	child->state = "pending";
	child->promise_pending = true;
	child->timeout_ms = (double) fn.attempt_timeout.time / 1000.0 +
		((double) fn.attempt_timeout.day + 30.0 * fn.attempt_timeout.month) * 86400000.0;
	return child->timeout_ms >= MIN_CHILD_TIMEOUT_MS && dasa_attempt_unrunnable(child) == NULL;
}

/*
 * Settle made, run here with value: a child not written yet is written
 * settled (one statement), one written already is resolved and completed.
 */
static bool
settle_child(DasaContext *c, DasaCreated *made, const DasaTask *child, Jsonb *value)
{
	if (made->unwritten)
		return dasa_write_settled_child(c, made, value);
	return dasa_settle_inline_child(child->id, value, child->version);
}

/* The runner core/inline.c calls: run made, the attempt's own child, and settle it. */
static bool
run_inline(DasaContext *c, DasaCreated *made)
{
	DasaUserSave save;
	DasaTask	child;
	Jsonb	   *value = NULL;
	bool		ran = false;

	if (GetCurrentTimestamp() >= permitted_until || depth >= MAX_INLINE_DEPTH ||
		!dasa_function_inlines(made->function))
		return false;
	dasa_write_unwritten_but(c, made);	/* its siblings, as the tables would have them by now */
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	/* (an id taken beforehand fails the parent when it suspends, as dasa.invoke would) */
	if ((!made->unwritten || dasa_inline_child_id_free(made)) && child_task(c, made, &child))
	{
		ran = run_child(c, made, &child, &value) && settle_child(c, made, &child, value);
		if (!ran)
			dasa_function_inline_failed(made->function);
	}
	SPI_finish();
	dasa_restore_user(&save);
	return ran;
}

/*
 * A fan-out runs here only if its children are this quick (mean ms): past
 * that, running them on several executors at once wins over sparing their
 * claims, commits and the parent's replay.
 */
#define INLINE_ALL_MAX_MEAN_MS 1.0

/* Would children[0..n), run one after another, be done in the time the attempt may give them? */
static bool
all_fit(DasaCreated **children, int n)
{
	const char *function = NULL;
	double		mean = 0.0,
				total = 0.0;

	for (int i = 0; i < n; i++)
	{
		if (function == NULL || strcmp(function, children[i]->function) != 0)
		{
			function = children[i]->function;
			mean = dasa_function_inlines(function) ? dasa_function_mean_ms(function) : -1.0;
		}
		if (mean < 0.0 || mean > INLINE_ALL_MAX_MEAN_MS)
			return false;
		total += mean;
	}
	return GetCurrentTimestamp() + (TimestampTz) (total * 1000.0) < permitted_until;
}

/*
 * Run made here and keep its value on it (in c's memory, where the attempt
 * writes it from); one written meanwhile (a read of the tables) is settled
 * now. False if it cannot run here or did not return in time.
 */
static bool
run_one_of_all(DasaContext *c, DasaCreated *made)
{
	DasaTask	child;
	Jsonb	   *value = NULL;

	if (GetCurrentTimestamp() >= permitted_until || !child_task(c, made, &child))
		return false;
	if (!run_child(c, made, &child, &value) ||
		(!made->unwritten && !dasa_settle_inline_child(child.id, value, child.version)))
	{
		dasa_function_inline_failed(made->function);
		return false;
	}
	made->value = value ? MemoryContextAlloc(c->memory, VARSIZE(value)) : NULL;
	if (value)
		memcpy(made->value, value, VARSIZE(value));
	made->ran = true;
	return true;
}

/*
 * The runner of core/inline.c for a fan-out: run children[0..n), the
 * attempt's own, one after another, if all of them may and would be done
 * in time; true if all ran. They are written resolved with the attempt's
 * other children, in one statement (core/invocations.c).
 */
static bool
run_inline_all(DasaContext *c, DasaCreated **children, int n)
{
	DasaUserSave save;
	MemoryContext each;
	MemoryContext old;
	bool		ran;

	if (depth >= MAX_INLINE_DEPTH || !all_fit(children, n))
		return false;
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	/* What one child's run leaves in memory goes with it (but its value). */
	each = AllocSetContextCreate(CurrentMemoryContext, "dasa child run inside", ALLOCSET_DEFAULT_SIZES);
	/* (an id taken beforehand fails the parent when it suspends, as dasa.invoke would) */
	ran = dasa_children_ids_free(children, n);
	for (int i = 0; ran && i < n; i++)
	{
		old = MemoryContextSwitchTo(each);
		ran = run_one_of_all(c, children[i]);
		MemoryContextSwitchTo(old);
		MemoryContextReset(each);
	}
	SPI_finish();
	dasa_restore_user(&save);
	return ran;
}

void
dasa_inline_install(void)
{
	dasa_inline_set_runner(run_inline, run_inline_all);
}
