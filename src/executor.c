/*
 * executor.c: an executor background worker of one database.
 *
 * Claims due tasks with FOR UPDATE SKIP LOCKED (their promises with FOR KEY
 * SHARE: the timeout sweep passes them by, a cancellation does not wait for
 * the attempt, whose resolution then fails and rolls it back), runs each (run.c) and
 * records its outcome (outcome.c), a batch per transaction: each task keeps
 * its own subtransaction and outcome, and they share the commit. Nothing is
 * marked claimed in the table: the row locks are the claim, so a crash
 * anywhere leaves every unfinished task pending and claimable at once.
 * Sleeps on its latch until an invoking transaction commits (wakeup.c),
 * a retry falls due, or the poll interval passes.
 */
#include "dasa.h"

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
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/*
 * A batch aims to take about this long: long enough to share one commit
 * among many short tasks, short enough that finished work commits soon and
 * that tasks claimed but not yet run are not withheld from other executors.
 */
#define BATCH_TARGET_MS 100

static DasaDatabase *my_db = NULL;
static DasaExecutor *me = NULL;
static int	my_index = -1;
static double mean_task_us = 1000.0;	/* running estimate of one task's duration */
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;

static void
prepare_plans(void)
{
	Oid			claim_types[2] = {TIMESTAMPTZOID, INT4OID};
	Oid			due_types[1] = {TIMESTAMPTZOID};

	if (next_due_plan != NULL)
		return;
	claim_plan = dasa_prepare_saved(
		"SELECT t.id, t.function, t.attempt, p.state = 'pending', p.param, p.timeout_at,"
		"  f.name IS NOT NULL, f.proc::oid, f.run_as::oid, f.max_attempts,"
		"  extract(epoch FROM f.initial_backoff) * 1000, extract(epoch FROM f.max_backoff) * 1000,"
		"  f.jitter, extract(epoch FROM f.timeout) * 1000, p.root_id, p.ctid "
		"FROM dasa.tasks t "
		"JOIN dasa.promises p ON p.id = t.id "
		"LEFT JOIN dasa.functions f ON f.name = t.function "
		"WHERE t.state = 'pending' AND t.run_at <= $1 "
		"ORDER BY t.run_at LIMIT $2 "
		"FOR UPDATE OF t SKIP LOCKED FOR KEY SHARE OF p SKIP LOCKED",
		2, claim_types);
	next_due_plan = dasa_prepare_saved(
		"SELECT min(run_at) FROM dasa.tasks WHERE state = 'pending' AND run_at > $1",
		1, due_types);
}

static double
float_column(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (isnull)
		return 0;
	return SPI_gettypeid(desc, col) == FLOAT8OID ? DatumGetFloat8(d)
		: DatumGetFloat8(DirectFunctionCall1(numeric_float8, d));
}

/* Copy claimed row i into task (in the current memory context). */
static void
read_task(SPITupleTable *claimed, int i, DasaTask *task)
{
	HeapTuple	tup = claimed->vals[i];
	TupleDesc	desc = claimed->tupdesc;
	bool		isnull;
	Datum		args;

	task->id = SPI_getvalue(tup, desc, 1);
	task->function = SPI_getvalue(tup, desc, 2);
	task->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	task->promise_pending = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	args = SPI_getbinval(tup, desc, 5, &isnull);
	task->args = isnull ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")))
		: DatumGetJsonbPCopy(args);
	task->timeout_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
	task->root_id = SPI_getvalue(tup, desc, 15);
	task->promise_tid = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 16, &isnull));
	task->registered = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
	if (!task->registered)
		return;
	task->proc = DatumGetObjectId(SPI_getbinval(tup, desc, 8, &isnull));
	task->run_as = DatumGetObjectId(SPI_getbinval(tup, desc, 9, &isnull));
	task->max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 10, &isnull));
	task->initial_backoff_ms = float_column(tup, desc, 11);
	task->max_backoff_ms = float_column(tup, desc, 12);
	task->jitter = float_column(tup, desc, 13);
	task->timeout_ms = float_column(tup, desc, 14);
}

/* Claim up to limit due tasks (locked until commit); returns how many. */
static int
claim_tasks(TimestampTz now, int limit, DasaTask **tasks)
{
	Datum		args[2] = {TimestampTzGetDatum(now), Int32GetDatum(limit)};
	SPITupleTable *claimed;
	int			n;

	dasa_execute(claim_plan, args, NULL, SPI_OK_SELECT, 0);
	claimed = SPI_tuptable;
	n = (int) SPI_processed;
	*tasks = palloc0(Max(n, 1) * sizeof(DasaTask));
	for (int i = 0; i < n; i++)
		read_task(claimed, i, &(*tasks)[i]);
	return n;
}

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
	strlcpy(me->task_id, task->id, sizeof(me->task_id));
	strlcpy(me->function, task->function, sizeof(me->function));
	me->started_at = GetCurrentTimestamp();
	pgstat_report_activity(STATE_RUNNING, psprintf("dasa: %s (%s)", task->function, task->id));
}

/* Run one claimed task and put its outcome into the batch. */
static void
process_task(DasaBatch *batch, DasaTask *task)
{
	DasaAttempt attempt;

	if (!task->promise_pending)
	{
		/* Settled meanwhile (canceled, or timed out by the worker): nothing to run. */
		dasa_batch_completed(batch, task, task->attempt);
		return;
	}
	if (task->timeout_at <= GetCurrentTimestamp())
	{
		dasa_record_ended(batch, task);
		return;
	}
	show_running(task);
	dasa_run_attempt(task, &attempt);
	show_running(NULL);
	if (attempt.ok)
		dasa_batch_resolved(batch, task, attempt.value);
	else if (attempt.suspended)
		dasa_record_suspension(task, attempt.context);
	else if (attempt.lost)
		dasa_record_ended(batch, task);
	else
		dasa_record_failure(batch, task, attempt.error, attempt.final);
}

static TimestampTz
next_retry_due(TimestampTz now)
{
	Datum		args[1] = {TimestampTzGetDatum(now)};
	bool		isnull;
	Datum		next;

	dasa_execute(next_due_plan, args, NULL, SPI_OK_SELECT, 1);
	next = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(next);
}

/* How many tasks to claim: as many as fit the batch target at the recent pace. */
static int
claim_limit(void)
{
	double		fit = (BATCH_TARGET_MS * 1000.0) / Max(mean_task_us, 1.0);

	return (int) Max(1.0, Min(fit, (double) dasa_executor_batch_size));
}

static void
learn_pace(TimestampTz started, int ran)
{
	double		per_task = (double) (GetCurrentTimestamp() - started) / Max(ran, 1);

	mean_task_us = 0.7 * mean_task_us + 0.3 * per_task;
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
	int			n;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!OidIsValid(get_extension_oid("dasa", true)))
		n = -1;
	else if (!dasa_schema_has_callbacks())
		n = 0;					/* an older version: idle until ALTER EXTENSION UPDATE */
	else
	{
		int			limit = claim_limit();
		int			ran = 0;

		prepare_plans();
		n = claim_tasks(now, limit, &tasks);
		if (n > 0)
		{
			pg_atomic_write_u32(&me->idle, 0);
			if (n == limit)
				dasa_wake_idle_executor(my_db);		/* there may be more: get help */
			dasa_batch_init(&batch, n);
			for (; ran < n; ran++)
			{
				if (ran > 0 && GetCurrentTimestamp() - now > 2 * BATCH_TARGET_MS * 1000)
					break;		/* the rest stay pending, unlocked at commit */
				process_task(&batch, &tasks[ran]);
			}
			dasa_batch_flush(&batch);
			learn_pace(now, ran);
		}
		else
			*next_due = next_retry_due(now);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	return n;
}

static bool
asked_to_stop(void)
{
	return my_db->stop_requested || my_db->paused_by != 0 ||
		my_index >= dasa_executors_per_database;
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
 * The idle flag is raised before looking for work: a committing invoker
 * either sees it (and sets our latch) or committed before our claim looked,
 * so the claim sees its task. No wake-up is lost.
 */
static void
executor_loop(void)
{
	for (;;)
	{
		TimestampTz next_due = 0;
		int			n;

		dasa_bgworker_tick();
		if (asked_to_stop())
			return;
		ResetLatch(MyLatch);
		pg_atomic_write_u32(&me->idle, 1);
		pg_memory_barrier();
		n = run_batch(&next_due);
		if (n < 0)
			return;
		if (n > 0)
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms(next_due), PG_WAIT_EXTENSION);
	}
}

static void
release_slot(int code, Datum arg)
{
	pg_atomic_write_u32(&me->idle, 0);
	me->started_at = 0;
	dasa_release_process(&me->proc, code);
}

/* Entry point of an executor: main_arg is the database, bgw_extra the slot index. */
void
dasa_executor_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);

	memcpy(&my_index, MyBgworkerEntry->bgw_extra, sizeof(int));
	dasa_bgworker_start(dboid, "dasa executor");

	if (dasa_claim_process(dboid, my_index, &my_db) == NULL)
		proc_exit(0);
	me = &my_db->executors[my_index];
	me->started_at = 0;
	me->task_id[0] = '\0';
	before_shmem_exit(release_slot, (Datum) 0);
	executor_loop();
	proc_exit(0);
}
