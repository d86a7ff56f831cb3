/*
 * retention.c: the dasa worker's walk that removes settled history.
 *
 * When dasa.retention is set (not 0), the worker walks the settled roots
 * older than it in short transactions of its own (a bounded number of roots
 * and of promise rows each), between its cycles, and starts a new walk a
 * sweep interval after one ends. It spends at most a fifth of its time
 * on it (after a step, it waits four times as long as the step took), so
 * that a large backlog of history does not take a core from the
 * executors. An error in a step is reported and the walk pauses for a
 * minute: removing history never stops the worker.
 */
#include "runtime/runtime.h"

#include "access/xact.h"
#include "pgstat.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define ROOTS_PER_STEP 50
#define ROWS_PER_STEP 500
#define PAUSE_AFTER_ERROR_MS 60000
#define WAIT_PER_STEP_TIME 4		/* waits 4 times a step's time: a fifth of the worker's */

static DasaRetention walk;
static bool walking = false;
static TimestampTz next_walk = 0;

static void
step(TimestampTz now)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "removing settled history");
	/* A removal lost in a crash is simply done again: no need to wait for the WAL flush. */
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	if (!walking)
		dasa_retention_start(&walk, now - (TimestampTz) dasa_retention_s * USECS_PER_SEC,
							 InvalidOid, ROWS_PER_STEP);
	walking = true;
	dasa_retention_step(&walk, ROOTS_PER_STEP);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	if (walk.done)
	{
		walking = false;
		next_walk = now + (TimestampTz) dasa_sweep_interval_ms * 1000;
	}
	else
	{
		TimestampTz ended = GetCurrentTimestamp();

		next_walk = ended + (ended - now) * WAIT_PER_STEP_TIME;
	}
}

/*
 * Take one step of the walk if one is due (call between cycles, outside a
 * transaction); returns when the next is due (0: retention is off).
 */
TimestampTz
dasa_retention_walk(void)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext cxt = CurrentMemoryContext;

	if (dasa_retention_s == 0)
	{
		walking = false;
		return 0;
	}
	if (now < next_walk)
		return next_walk;
	PG_TRY();
	{
		step(now);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
		walking = false;
		next_walk = now + (TimestampTz) PAUSE_AFTER_ERROR_MS * 1000;
	}
	PG_END_TRY();
	return next_walk;
}
