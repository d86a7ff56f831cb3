/*
 * executor.c: an executor background worker of one database.
 *
 * Claims due tasks through the kernel (FOR UPDATE SKIP LOCKED; their
 * promises FOR KEY SHARE: the timeout sweep passes them by, a cancellation
 * does not wait for the attempt, whose hold then fails and rolls it back),
 * runs each (attempt.c) and gathers its outcome (batch.c), a batch per
 * transaction: each task keeps
 * its own subtransaction and outcome, and they share the commit. Nothing is
 * marked claimed in the table: the row locks are the claim, so a crash
 * anywhere leaves every unfinished task pending and claimable at once.
 * Sleeps on its latch until an invoking transaction commits (wakeup.c),
 * a retry falls due, or the poll interval passes.
 */
#include "runtime/runtime.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "storage/itemptr.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/*
 * A batch aims to take about this long: long enough to share one commit
 * among many short tasks, short enough that finished work commits soon and
 * that tasks claimed but not yet run are not withheld from other executors.
 */
#define BATCH_TARGET_MS 100

/*
 * An executor the database no longer wants (a spare, or one past a smaller
 * pool) leaves once it has not been wanted for this long: a spare is not
 * stopped and started again between one limited attempt and the next.
 */
#define SPARE_LINGER_MS 2000

/* Pause after a batch failed outside any attempt, before trying again. */
#define RECOVERY_PAUSE_MS 100

static DasaDatabase *my_db = NULL;
static DasaExecutor *me = NULL;
static int	my_index = -1;
static double mean_task_us = 1000.0;	/* running estimate of one task's duration */
/* This batch's attempts of limited functions: how many, and how long they took (us). */
static int	limited_ran = 0;
static double limited_us = 0.0;
/* Show what runs now, in pg_stat_activity and in dasa.executors(). */
static void
show_running(DasaTask *task)
{
	if (task == NULL)
	{
		me->started_at = 0;
		me->task_id[0] = '\0';
		pgstat_report_activity(STATE_IDLE, NULL);
		return;
	}
	me->task_owner = task->run_as;
	strlcpy(me->task_id, task->id, sizeof(me->task_id));
	strlcpy(me->function, task->function, sizeof(me->function));
	me->started_at = task->started_at;
	pgstat_report_activity(STATE_RUNNING, psprintf("dasa: %s (%s)", task->function, task->id));
}

/*
 * How long each function's attempts take here (a moving mean, in ms): a
 * batch starts with a task of a function known to be quick, or that task
 * runs alone.
 */
typedef struct Pace
{
	char	   *function;		/* the key */
	double		mean_ms;
	bool		no_inline;		/* failed or suspended when run inside its parent's attempt */
} Pace;

static HTAB *paces = NULL;
static bool alone_next = false;
static bool limited_turn = false;

static Pace *
pace_of(const char *function)
{
	return paces ? hash_search(paces, &function, HASH_FIND, NULL) : NULL;
}

static bool
runs_quickly(const char *function)
{
	Pace	   *p = pace_of(function);

	return p != NULL && p->mean_ms <= DASA_BATCH_RUN_MS;
}

/* The pace entry of function, made if new (with a mean of ms). */
static Pace *
pace_entry(const char *function, double ms)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	bool		found;
	Pace	   *p;

	if (paces == NULL)
		paces = dasa_id_table("dasa function paces", 64, sizeof(Pace));
	p = hash_search(paces, &function, HASH_ENTER, &found);
	if (!found)
	{
		p->function = pstrdup(function);
		p->mean_ms = ms;
		p->no_inline = false;
	}
	MemoryContextSwitchTo(old);
	return p;
}

static void
note_run(const char *function, TimestampTz started)
{
	double		ms = (double) (GetCurrentTimestamp() - started) / 1000.0;
	Pace	   *p = pace_entry(function, ms);

	p->mean_ms = 0.7 * p->mean_ms + 0.3 * ms;
}

/* May an awaited child of function run inside its parent's attempt (runtime/inline.c)? */
bool
dasa_function_inlines(const char *function)
{
	Pace	   *p = pace_of(function);

	return p != NULL && p->mean_ms <= DASA_BATCH_RUN_MS && !p->no_inline;
}

/* How long an attempt of function takes here, on average (ms; -1: not known yet). */
double
dasa_function_mean_ms(const char *function)
{
	Pace	   *p = pace_of(function);

	return p != NULL ? p->mean_ms : -1.0;
}

void
dasa_function_inline_failed(const char *function)
{
	pace_entry(function, DASA_BATCH_RUN_MS)->no_inline = true;
}

/*
 * Until when the attempt of task starting now may run its awaited children
 * inside it (runtime/inline.c): half its timeout (or of the time left to
 * its deadline), or half the time it has before it gives way to the rest
 * of its batch.
 */
static TimestampTz
inline_until(DasaTask *task, TimestampTz started, bool after_others)
{
	double		ms = after_others ? DASA_BATCH_RUN_MS : task->timeout_ms;
	double		to_deadline_ms = (double) (task->timeout_at - started) / 1000.0;

	return started + (TimestampTz) (Min(ms, to_deadline_ms) * 1000.0 / 2.0);
}

/* What became of a claimed task in a batch. */
typedef enum Processed
{
	PROCESSED,					/* ran, or ended: its outcome is in the batch */
	GAVE_WAY,					/* gave way to another batch's lock: the batch ends before it */
	PASSED_BY					/* its function ran at its limit: left pending */
} Processed;

/*
 * This executor runs (or no longer runs) an attempt of a limited function:
 * the launcher may start a spare meanwhile (dasa_executors_wanted).
 */
static void
mark_on_limited(bool on)
{
	if ((pg_atomic_read_u32(&me->on_limited) == 1) == on)
		return;
	pg_atomic_write_u32(&me->on_limited, on ? 1 : 0);
	if (on)
		dasa_wake_launcher();
}

/*
 * Run one claimed task (after_others: others ran before it in this batch)
 * and put its outcome into the batch.
 */
static Processed
process_task(DasaBatch *batch, DasaTask *task, bool after_others)
{
	DasaAttempt attempt;
	TimestampTz started;

	if (!task->promise_pending)
	{
		/* Settled meanwhile (canceled, or timed out by the worker): nothing to run. */
		dasa_batch_completed(batch, task, task->attempt);
		return PROCESSED;
	}
	if (task->timeout_at <= GetCurrentTimestamp())
	{
		dasa_batch_ended(batch, task);
		return PROCESSED;
	}
	if (task->max_running > 0 && !dasa_limit_take(task))
	{
		dasa_limit_full(task->function);
		return PASSED_BY;
	}
	started = GetCurrentTimestamp();
	task->started_at = started;
	show_running(task);
	dasa_crash_record_set(task);
	dasa_inline_permit(task->crashes > 0 ? 0 : inline_until(task, started, after_others));
	mark_on_limited(task->max_running > 0);
	dasa_run_attempt(task, after_others, &attempt);
	mark_on_limited(false);
	if (task->max_running > 0)
	{
		limited_ran++;
		limited_us += (double) (GetCurrentTimestamp() - started);
	}
	dasa_inline_permit(0);
	note_run(task->function, started);
	dasa_crash_record_clear();
	show_running(NULL);
	if (attempt.deferred)
		return GAVE_WAY;
	if (attempt.ok)
		dasa_batch_resolved(batch, task, attempt.value);
	else if (attempt.suspended)
	{
		dasa_task_suspend(task, attempt.context);
		dasa_holds_keep(task->id, attempt.context->read_elsewhere);
	}
	else if (attempt.lost)
		dasa_batch_ended(batch, task);
	else if (!dasa_task_fail(task, attempt.error, attempt.final) && attempt.context != NULL)
		dasa_holds_keep(task->id, attempt.context->read_elsewhere);
	return PROCESSED;
}

static bool
asked_to_stop(void)
{
	return my_db->stop_requested || my_db->paused_by != 0 || me->leave ||
		my_index >= Min(2 * dasa_executors_per_database, DASA_MAX_EXECUTORS);
}

/*
 * Run the claimed tasks[0..n) into the batch, after done others; returns
 * how many ran. *stop: the batch ends here (the rest stay pending, and
 * are unlocked at commit). *passed_due: the earliest due of those passed
 * by, left pending (DT_NOEND: none).
 */
static int
run_claimed(DasaBatch *batch, DasaTask *tasks, int n, int done, TimestampTz started, bool *stop,
			TimestampTz *passed_due)
{
	int			ran = 0;
	Processed	processed;

	for (; ran < n && !*stop; ran++)
	{
		int			position = done + ran;

		if (position > 0 && GetCurrentTimestamp() - started > 2 * BATCH_TARGET_MS * 1000)
			*stop = true;		/* the batch has run long enough */
		else if (position > 0 && tasks[ran].crashes > 0)
			*stop = true;		/* one that crashed its process before runs alone */
		else if (tasks[ran].max_running > 0 && limited_us >= DASA_BATCH_RUN_MS * 1000.0)
			*stop = true;		/* limited work has had its share of this batch */
		else if (asked_to_stop())
			*stop = true;		/* DDL waits for this database to be free */
		else if ((processed = process_task(batch, &tasks[ran], position > 0)) == GAVE_WAY)
			*stop = true;		/* it gave way: it runs first in the next batch */
		else if (processed == PASSED_BY)
			*passed_due = Min(*passed_due, tasks[ran].run_at);
		else if (tasks[ran].crashes > 0)
		{
			ran++;
			*stop = true;
		}
		if (*stop)
			break;
	}
	return ran;
}

/* How many tasks to claim: as many as fit the batch target at the recent pace. */
static int
claim_limit(void)
{
	double		fit = (BATCH_TARGET_MS * 1000.0) / Max(mean_task_us, 1.0);

	return (int) Max(1.0, Min(fit, (double) dasa_executor_batch_size));
}

/*
 * Learn the pace from the batch that started then and ran so many tasks.
 * Attempts of limited functions do not count: they wait their turn (or on
 * what they guard) at their own pace, and the claims that take them run
 * them whatever their size; counted, they would shrink every batch of
 * everything else.
 */
static void
learn_pace(TimestampTz started, int ran)
{
	double		us = (double) (GetCurrentTimestamp() - started) - limited_us;
	int			counted = ran - limited_ran;

	limited_ran = 0;
	limited_us = 0.0;
	if (counted <= 0)
		return;
	mean_task_us = 0.7 * mean_task_us + 0.3 * Max(us, 0.0) / counted;
}

/*
 * One transaction: claim a batch, run it, record it. Returns the number of
 * tasks claimed, or -1 when the extension is gone; *next_due is when a retry
 * falls due (0: none known) when nothing was claimed.
 */
static int
run_batch(TimestampTz *next_due)
{
	TimestampTz now = GetCurrentTimestamp();
	DasaTask   *tasks;
	DasaBatch	batch;
	DasaSchema	schema;
	int			n;
	TimestampTz unrun_due = DT_NOEND;	/* earliest claimed task left pending */

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	schema = dasa_schema();
	if (schema == DASA_SCHEMA_ABSENT)
		n = -1;
	else if (schema != DASA_SCHEMA_CURRENT)
		n = 0;					/* idle until ALTER EXTENSION UPDATE */
	else
	{
		int			limit = alone_next ? 1 : claim_limit();
		int			ran = 0;
		bool		stop = false;

		alone_next = false;
		n = dasa_tasks_claim(my_index, now, limit, dasa_limit_passed_by(), limited_turn, &tasks);
		limited_turn = !limited_turn;	/* limited functions' tasks and the others take turns */
		if (n > 0 && !dasa_origin_runnable())
		{
			unrun_due = tasks[0].run_at;
			n = 0;				/* a paused copy, or a restore going on: leave them */
		}
		if (n > 1 && tasks[0].max_running == 0 && !runs_quickly(tasks[0].function))
		{
			/*
			 * Not known to be quick: it runs alone in the next batch, so
			 * that it holds none of these back; another executor takes them.
			 * (A claim of limited functions' tasks holds only a few of
			 * those, and its batch stops once they had their share.)
			 */
			alone_next = true;
			unrun_due = tasks[0].run_at;
			dasa_wake_idle_executor(my_db);
		}
		else if (n > 0)
		{
			pg_atomic_write_u32(&me->idle, 0);
			if (n == limit)
				dasa_wake_idle_executor(my_db);		/* there may be more: get help */
			dasa_batch_init(&batch, n);
			limited_ran = 0;
			limited_us = 0.0;
			ran = run_claimed(&batch, tasks, n, 0, now, &stop, &unrun_due);
			dasa_batch_flush(&batch);
			learn_pace(now, ran);
			if (ran < n)
				unrun_due = Min(unrun_due, tasks[ran].run_at);
		}
		else
			*next_due = dasa_tasks_next_due(now);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (unrun_due != DT_NOEND)
	{
		dasa_claim_floor_lower(unrun_due);	/* unlocked now: the next claim takes them */
		dasa_wake_idle_executor(my_db); /* (an idle one may not look before its poll) */
	}
	pgstat_report_stat(false);
	return n;
}

static long
sleep_ms(TimestampTz next_due)
{
	TimestampTz now = GetCurrentTimestamp();

	if (next_due == 0 || next_due - now >= (TimestampTz) dasa_executor_poll_ms * 1000)
		return dasa_executor_poll_ms;
	return Max(1, (long) ((next_due - now + 999) / 1000));
}

/*
 * run_batch, surviving errors of the executor's own work (an operator's
 * cancel that came between attempts, say): the batch is rolled back, its
 * tasks stay pending, and the executor goes on after a short pause instead
 * of exiting.
 */
static int
run_batch_or_recover(TimestampTz *next_due)
{
	MemoryContext loop_cxt = CurrentMemoryContext;
	volatile int n = 0;

	PG_TRY();
	{
		dasa_bgworker_tick();
		n = run_batch(next_due);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(loop_cxt);
		HOLD_INTERRUPTS();
		dasa_context_end();
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
		dasa_crash_record_clear();
		show_running(NULL);
		mark_on_limited(false);
		dasa_claim_floor_lower(0);	/* its claims are pending again */
		n = 0;
		*next_due = GetCurrentTimestamp() + RECOVERY_PAUSE_MS * 1000;
	}
	PG_END_TRY();
	return n;
}

/*
 * A spare no longer wanted, or one the pool no longer has room for, leaves
 * (between batches): a committing invoker that took its idle flag
 * meanwhile meant to wake it, so another is woken in its place.
 */
static void
leave_idle(void)
{
	uint32		expected = 1;

	if (!pg_atomic_compare_exchange_u32(&me->idle, &expected, 0))
		dasa_wake_idle_executor(my_db);
}

/*
 * The idle flag is raised before looking for work: a committing invoker
 * either sees it (and sets our latch) or committed before our claim looked,
 * so the claim sees its task. No wake-up is lost.
 */
static void
executor_loop(void)
{
	TimestampTz unwanted_since = 0;	/* idle, and beyond what the database wants, since */

	for (;;)
	{
		TimestampTz next_due = 0;
		int			n;

		if (asked_to_stop())
			return;
		ResetLatch(MyLatch);
		pg_atomic_write_u32(&me->idle, 1);
		pg_memory_barrier();
		n = run_batch_or_recover(&next_due);
		if (n < 0)
			return;
		if (my_index < dasa_executors_wanted(my_db))
			unwanted_since = 0;
		else if (unwanted_since == 0)
			unwanted_since = GetCurrentTimestamp();
		else if (TimestampDifferenceExceeds(unwanted_since, GetCurrentTimestamp(), SPARE_LINGER_MS))
		{
			leave_idle();
			return;
		}
		if (n > 0)
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms(next_due), PG_WAIT_EXTENSION);
	}
}

/* Count each attempt in ids (task ids) as failed: it died with its process. One transaction. */
static void
count_attempts_that_died(List *ids, bool overran)
{
	ListCell   *lc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (dasa_schema() == DASA_SCHEMA_CURRENT)
		foreach(lc, ids)
			dasa_task_crashed((char *) lfirst(lc), overran);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	foreach(lc, ids)
		ereport(LOG, (errmsg("dasa executor: an attempt of \"%s\" %s; counted as a failed attempt",
							 (char *) lfirst(lc), overran ? "outlived its timeout and was ended with its executor" :
							 "ended with its server process")));
}

/* Siblings starting later leave this executor's record alone once it is counted. */
static void
set_counted(bool counted)
{
	LWLockAcquire(dasa_databases_lock(), LW_EXCLUSIVE);
	me->counted = counted;
	LWLockRelease(dasa_databases_lock());
}

/*
 * A sibling starting at the same time may have taken a crash record and
 * not yet counted it: claiming now could run the culprit again before its
 * crash is counted (and a second crash would then lose that count). Wait
 * for the siblings that have started to finish counting (a few seconds at
 * most).
 */
static void
wait_for_siblings_to_count(void)
{
	for (int waited = 0; waited < 5000; waited += 10)
	{
		bool		counting = false;

		LWLockAcquire(dasa_databases_lock(), LW_SHARED);
		for (int i = 0; i < DASA_MAX_EXECUTORS; i++)
			if (i != my_index && my_db->executors[i].slot.pid != 0 && !my_db->executors[i].counted)
				counting = true;
		LWLockRelease(dasa_databases_lock());
		if (!counting)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * At start: the attempts that died with their processes in this database
 * (a crash), counted before this executor claims anything.
 */
static void
count_crashed_attempts(void)
{
	List	   *ids = dasa_crash_records_take_all(my_db, my_index);

	if (ids != NIL)
		count_attempts_that_died(ids, false);
	set_counted(true);
	wait_for_siblings_to_count();
}

/*
 * Exiting: an attempt this executor ended because it outlived its timeout
 * is counted now, in a transaction of its own, before another executor can
 * run it again. Any other exit through here (SIGTERM, an error of the
 * executor's own) is no fault of the attempt: its record is just cleared.
 */
static void
count_overrun_on_exit(int code, Datum arg)
{
	bool		overran = false;
	char	   *id = dasa_crash_record_take(&overran);

	if (id == NULL || !overran)
		return;
	dasa_context_end();			/* the attempt's context went with its memory */
	AbortOutOfAnyTransaction();
	count_attempts_that_died(list_make1(id), true);
}

static void
release_slot(int code, Datum arg)
{
	/* What this executor held is unlocked with its transaction: claims must find it. */
	AbortOutOfAnyTransaction();
	dasa_claim_floor_lower(0);
	pg_atomic_write_u32(&me->idle, 0);
	me->started_at = 0;
	set_counted(false);
	dasa_slot_release(&me->slot, code);
}

/* Entry point of an executor: main_arg is the database, bgw_extra the slot index. */
void
dasa_executor_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);

	memcpy(&my_index, MyBgworkerEntry->bgw_extra, sizeof(int));
	dasa_bgworker_start(dboid, "dasa executor");

	if (dasa_slot_claim(dboid, my_index, &my_db) == NULL)
		proc_exit(0);
	me = &my_db->executors[my_index];
	set_counted(false);
	me->started_at = 0;
	me->task_id[0] = '\0';
	before_shmem_exit(release_slot, (Datum) 0);
	dasa_crash_record_open(dboid, my_index);
	before_shmem_exit(count_overrun_on_exit, (Datum) 0);
	dasa_inline_install();
	dasa_unwritten_install();
	count_crashed_attempts();
	executor_loop();
	proc_exit(0);
}
