/*
 * attempt.c: one attempt of a task.
 *
 * Calls the registered procedure in a subtransaction, as the role that
 * invoked it, under a statement timeout (the function's timeout, cut to
 * the promise's deadline), with GUC changes undone afterwards, and within
 * an execution context (context.c). A value keeps the subtransaction; an
 * error, a value after the deadline, or a suspension (an await on a pending
 * promise, even one whose signal the code caught) rolls it back: the
 * PL/Python idiom, never letting user errors reach the executor's loop. It
 * records nothing itself (batch.c and the kernel do).
 */
#include "runtime/runtime.h"

#include <math.h>

#include "access/xact.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "storage/latch.h"
#include "utils/timeout.h"

/*
 * A failure no retry can mend: the function or its procedure is gone, or
 * the invoking role is gone or may no longer call the procedure directly
 * (USAGE on its schema, EXECUTE on it).
 */
static ErrorData *
unrunnable(DasaTask *task)
{
	if (!task->registered)
		return dasa_make_error(ERRCODE_UNDEFINED_FUNCTION,
							   psprintf("function \"%s\" is not registered", task->function),
							   "It was unregistered after this invocation was created.");
	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(task->proc)))
		return dasa_make_error(ERRCODE_UNDEFINED_FUNCTION,
							   psprintf("the procedure of function \"%s\" no longer exists", task->function),
							   "It was dropped or renamed after the function was registered.");
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(task->run_as)))
		return dasa_make_error(ERRCODE_UNDEFINED_OBJECT,
							   psprintf("the role that invoked \"%s\" no longer exists", task->id),
							   NULL);
	if (pg_namespace_aclcheck(get_func_namespace(task->proc), task->run_as, ACL_USAGE) != ACLCHECK_OK)
		return dasa_make_error(ERRCODE_INSUFFICIENT_PRIVILEGE,
							   psprintf("permission denied for schema %s", get_namespace_name(get_func_namespace(task->proc))),
							   "The role that invoked it may no longer use the schema of its procedure.");
	if (pg_proc_aclcheck(task->proc, task->run_as, ACL_EXECUTE) != ACLCHECK_OK)
		return dasa_make_error(ERRCODE_INSUFFICIENT_PRIVILEGE,
							   psprintf("permission denied for function %s", format_procedure(task->proc)),
							   "The role that invoked it may no longer execute it.");
	return NULL;
}

/* Why task cannot run here at all (NULL if it can); as for an attempt. */
ErrorData *
dasa_attempt_unrunnable(DasaTask *task)
{
	return unrunnable(task);
}

/*
 * How long an attempt may go on after its timeout (ignoring the cancel, for
 * example by catching query_canceled in a loop) before its executor ends
 * it by ending its own process. The attempt then counts as failed when the
 * executor starts again (crash_record.c).
 */
#define OVERRUN_GRACE_MS 2000

static TimeoutId overrun_timeout = MAX_TIMEOUTS;

/* Timeout handler (signal context): end this process at its next interrupt check. */
static void
end_overrunning_attempt(void)
{
	dasa_crash_record_mark_overran();
	ProcDiePending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * Milliseconds the attempt may take: the function's timeout, cut to the
 * deadline. Rounded up past the deadline, so that an attempt cut by it finds
 * the promise expired and times it out rather than rejecting it.
 */
static int
attempt_timeout_ms(DasaTask *task)
{
	double		left = ceil((double) (task->timeout_at - GetCurrentTimestamp()) / 1000.0) + 1;
	double		ms = Min(task->timeout_ms, left);

	return (int) Max(1.0, Min(ms, (double) INT_MAX));
}

/*
 * How long an attempt that runs after others in its batch may wait for a
 * row lock before it gives way. The batch holds the locks of the attempts
 * before it until it commits, so two executors' batches can each wait for
 * the other (a deadlock that batching made, not the function): rather than
 * wait, the attempt is rolled back uncounted, the batch commits what it
 * has, and the task runs first in the next batch, where it waits as long
 * as it needs.
 */
#define BATCH_LOCK_WAIT "2ms"

/*
 * An attempt after others in its batch gives way in the same manner once
 * it has run DASA_BATCH_RUN_MS: the others' results wait for the batch's
 * commit, so a long attempt would hold them back. It runs again first in
 * the next batch, where nothing waits for it.
 */
static TimeoutId give_way_timeout = MAX_TIMEOUTS;
static volatile sig_atomic_t gave_way = false;

/* Timeout handler (signal context): cancel the attempt, as a statement timeout would. */
static void
give_way(void)
{
	gave_way = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * Call the procedure as its role, search_path pinned, every setting it
 * changes undone afterwards; the value is copied into keep. timed: an
 * attempt of its own (its timeouts, and its deferred triggers fired at its
 * end); else a child run inside its parent's attempt, under the parent's.
 */
static Jsonb *
call_procedure(DasaTask *task, bool after_others, bool timed, MemoryContext keep)
{
	FmgrInfo	flinfo;
	LOCAL_FCINFO(call, 1);
	DasaUserSave save;
	int			nest;
	Datum		result;
	Jsonb	   *value = NULL;

	fmgr_info(task->proc, &flinfo);
	InitFunctionCallInfoData(*call, &flinfo, 1, InvalidOid, NULL, NULL);
	call->args[0].value = JsonbPGetDatum(task->args);
	call->args[0].isnull = false;

	dasa_switch_user(task->run_as, &save);
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "\"$user\", public", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (after_others)
	{
		(void) set_config_option("lock_timeout", BATCH_LOCK_WAIT, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		enable_timeout_after(give_way_timeout, DASA_BATCH_RUN_MS);
	}
	if (timed)
	{
		enable_timeout_after(STATEMENT_TIMEOUT, attempt_timeout_ms(task));
		enable_timeout_after(overrun_timeout, attempt_timeout_ms(task) + OVERRUN_GRACE_MS);
	}
	result = FunctionCallInvoke(call);

	/*
	 * Deferred constraints and triggers fire now, as the invocation's role
	 * and inside its subtransaction: one that fails is this attempt's
	 * failure, not the whole batch's at commit.
	 */
	if (timed)
	{
		AfterTriggerFireDeferred();
		disable_timeout(STATEMENT_TIMEOUT, false);
		disable_timeout(overrun_timeout, false);
		disable_timeout(give_way_timeout, false);
	}
	/* Undo every setting the code changed, even with plain SET. */
	AtEOXact_GUC(false, nest);
	dasa_restore_user(&save);
	/* What it invoked and has not written yet is written as part of its work. */
	if (!dasa_suspending_context()->suspended)
		dasa_write_unwritten(dasa_suspending_context());

	if (!call->isnull)
	{
		Jsonb	   *raw = DatumGetJsonbP(result);

		dasa_check_payload(raw, "the function's value");
		value = MemoryContextAlloc(keep, VARSIZE(raw));
		memcpy(value, raw, VARSIZE(raw));
	}
	return value;
}

/*
 * The function failed with the rejection of a promise it awaited (rejected,
 * canceled, timed out): a settled promise never changes, so running it again
 * would meet the same one. It fails at once, the rejection nested in its own.
 * A function that wants to try again catches the error and raises its own.
 */
static bool
settled_against(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_DASA_PROMISE_REJECTED || sqlerrcode == ERRCODE_DASA_PROMISE_CANCELED ||
		sqlerrcode == ERRCODE_DASA_PROMISE_TIMEDOUT;
}

/* A failure that waiting behind another batch can cause: no fault of the function. */
static bool
batch_made(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE || sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE;
}

/*
 * Run one attempt of task (after_others: earlier attempts' effects are
 * held in this transaction); out says how it ended.
 */
void
dasa_run_attempt(DasaTask *task, bool after_others, DasaAttempt *out)
{
	MemoryContext keep = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	memset(out, 0, sizeof(*out));
	if (overrun_timeout == MAX_TIMEOUTS)
		overrun_timeout = RegisterTimeout(USER_TIMEOUT, end_overrunning_attempt);
	if (give_way_timeout == MAX_TIMEOUTS)
		give_way_timeout = RegisterTimeout(USER_TIMEOUT, give_way);
	gave_way = false;
	out->error = unrunnable(task);
	if (out->error != NULL)
	{
		out->final = true;
		dasa_reset_session_state();	/* (gives back a slot of its function's limit) */
		return;
	}

	dasa_context_begin(task);
	out->context = dasa_suspending_context();
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(keep);
	PG_TRY();
	{
		out->value = call_procedure(task, after_others, true, keep);
		if (dasa_attempt_used_temp_objects() && !out->context->suspended)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("dasa functions cannot use temporary objects"),
					 errdetail("Executors run every role's invocations in shared sessions; a temporary object would outlive this invocation."),
					 errhint("Use a regular table or a common table expression instead.")));
		if (out->context->suspended)
		{
			/* It awaited a pending promise and caught the signal: suspend anyway. */
			out->suspended = true;
			RollbackAndReleaseCurrentSubTransaction();
		}
		else if (!dasa_promise_hold_pending(task))
		{
			/* Cancelled or timed out meanwhile: the effects must not stay. */
			out->lost = true;
			RollbackAndReleaseCurrentSubTransaction();
		}
		else
		{
			out->ok = true;
			ReleaseCurrentSubTransaction();
		}
	}
	PG_CATCH();
	{
		disable_timeout(STATEMENT_TIMEOUT, false);
		disable_timeout(overrun_timeout, false);
		disable_timeout(give_way_timeout, false);
		MemoryContextSwitchTo(keep);
		out->error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		out->suspended = out->context->suspended;
		out->final = out->context->final || settled_against(out->error->sqlerrcode);
		out->deferred = after_others && !out->suspended &&
			(batch_made(out->error->sqlerrcode) ||
			 (gave_way && out->error->sqlerrcode == ERRCODE_QUERY_CANCELED));
	}
	PG_END_TRY();
	dasa_context_end();
	dasa_reset_session_state();

	/*
	 * The attempt's statement timeout may have fired just as the call
	 * returned: it was meant for the attempt, not for the executor's own
	 * work. An operator's cancel stays pending: it cancels the batch.
	 */
	if (get_timeout_indicator(STATEMENT_TIMEOUT, true) || gave_way)
		QueryCancelPending = false;
	gave_way = false;
	MemoryContextSwitchTo(keep);
	CurrentResourceOwner = owner;
}

/* Call task's procedure inside the running attempt, under its timeouts; the value is copied into keep. */
Jsonb *
dasa_call_inline(DasaTask *task, MemoryContext keep)
{
	return call_procedure(task, false, false, keep);
}
