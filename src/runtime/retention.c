/*
 * retention.c: removing settled history without getting in the way.
 *
 * When dasa.retention is set (not 0), the settled roots older than it are
 * walked in short transactions of their own (a bounded number of roots and
 * of promise rows each), spending at most a fifth of the time on it (after a
 * step, a wait four times as long as the step took); a new walk starts a
 * sweep interval after one ends.
 *
 * The database's worker takes the first step of each walk between its
 * cycles. When there is more (a backlog), it asks the launcher for a
 * retention process, which walks on at idle CPU priority (SCHED_IDLE): at
 * normal priority a step holds a core that a waking executor then waits for,
 * up to a scheduler slice (~1.5 ms), which is what a mass removal cost single
 * invocations. The process walks again while walks remove something and
 * leaves after one that removes nothing; it vacuums the tables it empties
 * (retention_vacuum.c). If no background worker slot is
 * free for it, the worker walks on itself. An error in a step is reported
 * and the walk pauses for a minute: removing history never stops the worker.
 */
#include "runtime/runtime.h"

#include <sched.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define ROOTS_PER_STEP 50
#define ROWS_PER_STEP 500
#define PAUSE_AFTER_ERROR_MS 60000
#define WAIT_PER_STEP_TIME 4		/* waits 4 times a step's time: a fifth of the time */
#define PROCESS_WAIT_MS 2000		/* then the worker walks on itself */
#define REST_AFTER_PROCESS_MS 10000	/* the worker's next walk after a retention process left */

static DasaRetention walk;
static bool walking = false;
static TimestampTz next_walk = 0;

/* The worker: since when it has asked for a retention process (0: it has not); has one run since? */
static TimestampTz asked_at = 0;
static bool process_ran = false;

/* The retention process: its slot. */
static DasaProcSlot *my_slot = NULL;

/* Is the database's DDL guard or the launcher asking its processes (or the retention process) to leave? */
static bool
asked_to_leave(void)
{
	DasaDatabase *db = dasa_my_database();

	return db == NULL || db->stop_requested || db->paused_by != 0 ||
		(MyProc->pgprocno == db->retention.procno && db->retention_yield);
}

/* One step of the walk (a new walk if none is under way); sets when the next is due. */
static void
step(TimestampTz now, int64 *removed)
{
	int64		before;

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
	before = walk.removed;
	if (dasa_schema() == DASA_SCHEMA_CURRENT && dasa_worker_may_work())
		dasa_retention_step(&walk, ROOTS_PER_STEP);
	else
		walk.done = true;
	*removed = walk.removed - before;
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
 * A step, or in the retention process the vacuum after it: an error is
 * reported and the walk paused; false after an error.
 */
static bool
step_safely(TimestampTz now, int64 *removed, bool vacuum)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		step(now, removed);
		if (vacuum)
			dasa_history_vacuum_after(*removed, !walking && walk.removed == 0);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		HOLD_INTERRUPTS();
		if (geterrcode() != ERRCODE_QUERY_CANCELED || !asked_to_leave())
			EmitErrorReport();	/* (DDL on the database cancels a step quietly) */
		AbortCurrentTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
		PortalContext = NULL;	/* (a vacuum's) */
		walking = false;
		next_walk = now + (TimestampTz) PAUSE_AFTER_ERROR_MS * 1000;
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

static void
want_process(DasaDatabase *db, bool wanted)
{
	if (db->retention_wanted == wanted)
		return;
	LWLockAcquire(dasa_databases_lock(), LW_EXCLUSIVE);
	db->retention_wanted = wanted;
	LWLockRelease(dasa_databases_lock());
	if (wanted)
		dasa_wake_launcher();
}

/*
 * The worker's part, between its cycles, outside a transaction: the first
 * step of a walk, and a retention process asked for when there is more.
 * Returns when it should be called again (0: retention is off).
 */
TimestampTz
dasa_retention_walk(void)
{
	DasaDatabase *db = dasa_my_database();
	TimestampTz now = GetCurrentTimestamp();
	int64		removed = 0;

	if (dasa_retention_s == 0 || db == NULL)
	{
		walking = false;
		asked_at = 0;
		if (db != NULL)
			want_process(db, false);
		return 0;
	}
	if (db->retention.pid != 0)
	{
		asked_at = 0;			/* it walks; look again a sweep interval later */
		process_ran = true;
		return now + (TimestampTz) dasa_sweep_interval_ms * 1000;
	}
	if (process_ran)
	{
		process_ran = false;	/* it left after a walk that removed nothing */
		walking = false;
		next_walk = now + (TimestampTz) REST_AFTER_PROCESS_MS * 1000;
	}
	if (asked_at != 0 && now - asked_at < (TimestampTz) PROCESS_WAIT_MS * 1000)
		return asked_at + (TimestampTz) PROCESS_WAIT_MS * 1000;
	if (now < next_walk)
		return next_walk;
	if (!step_safely(now, &removed, false) || !walking)
	{
		asked_at = 0;
		want_process(db, false);
	}
	else if (asked_at == 0)
	{
		asked_at = now;			/* a backlog: the retention process walks on */
		want_process(db, true);
	}
	return next_walk;
}

static void
release_slot(int code, Datum arg)
{
	dasa_slot_release(my_slot, code);
}

/* Take CPU time only when nothing else wants it (Linux); a failure leaves it as it is. */
static void
lower_cpu_priority(void)
{
#ifdef SCHED_IDLE
	struct sched_param param = {0};

	if (sched_setscheduler(0, SCHED_IDLE, &param) != 0)
		ereport(DEBUG1, (errmsg("dasa retention could not lower its CPU priority: %m")));
#endif
}

/* Entry point of a database's retention process, started by the launcher when its worker asks. */
void
dasa_retention_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	DasaDatabase *db;

	dasa_bgworker_start(dboid, "dasa retention");
	my_slot = dasa_slot_claim(dboid, DASA_SLOT_RETENTION, &db);
	if (my_slot == NULL)
		proc_exit(0);
	before_shmem_exit(release_slot, (Datum) 0);
	want_process(db, false);
	lower_cpu_priority();
	dasa_history_vacuum_init();
	for (;;)
	{
		TimestampTz now;
		int64		removed = 0;

		if (asked_to_leave())
			break;				/* (before a cancel it was sent is taken for an error) */
		dasa_bgworker_tick();
		if (dasa_retention_s == 0)
			break;
		now = GetCurrentTimestamp();
		if (now >= next_walk)
		{
			if (!step_safely(now, &removed, true))
				break;
			if (!walking && walk.removed == 0)
				break;			/* nothing left to remove: the worker looks again later */
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(1, (next_walk - GetCurrentTimestamp() + 999) / 1000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	proc_exit(0);
}
