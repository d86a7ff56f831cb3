/*
 * worker.c: the per-database dasa worker.
 *
 * Started by the launcher for one database. It first checks that the
 * extension is installed there (if not, it reports so and exits), then
 * fires due schedules and settles expired promises, sleeping until the next
 * deadline or firing, the sweep interval, or a wake-up from a committing
 * transaction; between cycles it removes settled history (retention.c). It
 * exits when the extension is dropped or the launcher asks it to. One
 * transaction per cycle; it never runs user code.
 */
#include "runtime/runtime.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define SWEEP_BATCH 1000
#define SCHEDULE_BATCH 100
#define TIMER_BATCH 1000

static DasaDatabase *my_db = NULL;

static DasaProcSlot *my_slot = NULL;

/* The last cycle found the schema current and work allowed (not a paused copy). */
static bool worked = false;

static void
release_slot(int code, Datum arg)
{
	dasa_slot_release(my_slot, code);
}

static void
report_installed(bool installed)
{
	LWLockAcquire(dasa_databases_lock(), LW_EXCLUSIVE);
	my_db->installed = installed;
	my_db->probe_pending = false;
	LWLockRelease(dasa_databases_lock());
	dasa_wake_launcher();		/* executors follow the worker's finding */
}

static bool
asked_to_stop(void)
{
	return my_db->stop_requested || my_db->paused_by != 0;
}

static void
begin_cycle(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "settling expired promises");
}

static void
end_cycle(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Say once (per mismatch) why nothing runs while the SQL objects are at another version. */
static void
report_version_mismatch(bool mismatch)
{
	static bool reported = false;

	if (mismatch && !reported)
		ereport(LOG,
				(errmsg("dasa: database \"%s\" has dasa %s installed, but the library is version %s; its invocations and timeouts wait",
						get_database_name(MyDatabaseId), dasa_installed_version(), DASA_SCHEMA_VERSION),
				 errhint("Run ALTER EXTENSION dasa UPDATE in that database.")));
	else if (!mismatch && reported)
		ereport(LOG, (errmsg("dasa: database \"%s\" has dasa %s installed; its invocations run again",
							 get_database_name(MyDatabaseId), DASA_SCHEMA_VERSION)));
	reported = mismatch;
}

/*
 * External workers: release the claims they lost (lease run out, session
 * ended), then notify each queue of its due tasks: all of them after a
 * commit enqueued some, else those that fell due since the last cycle
 * (retries). The notifications go out when the cycle commits.
 */
static void
serve_external_workers(TimestampTz now, bool enqueued)
{
	static TimestampTz notified_until = 0;

	(void) dasa_external_release_lost(now);
	dasa_external_notify_due(enqueued ? DT_NOBEGIN : notified_until, now);
	notified_until = now;
}

/* The earlier of two wake-up times, where 0 and infinity mean none. */
static TimestampTz
earlier(TimestampTz a, TimestampTz b)
{
	if (a == DT_NOEND)
		a = 0;
	if (b == DT_NOEND)
		b = 0;
	if (a == 0 || (b != 0 && b < a))
		return b;
	return a;
}

/*
 * One cycle: fire due schedules, settle what has expired, then return the
 * next deadline (0: none, now: more is due at once). Returns -1 when the
 * extension is gone.
 */
static TimestampTz
run_cycle(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next;
	int			fired;
	int			timers;
	static bool enqueued = false;	/* kept until a cycle serves external workers */

	enqueued |= pg_atomic_exchange_u32(&my_db->external_due, 0) != 0;
	worked = false;
	begin_cycle();
	switch (dasa_schema())
	{
		case DASA_SCHEMA_ABSENT:
			end_cycle();
			return -1;
		case DASA_SCHEMA_OTHER:
			report_version_mismatch(true);
			end_cycle();
			return 0;			/* idle until ALTER EXTENSION dasa UPDATE */
		case DASA_SCHEMA_CURRENT:
			report_version_mismatch(false);
			break;
	}
	if (!dasa_worker_may_work())
	{
		end_cycle();
		return 0;				/* a paused copy, or a restore going on */
	}
	worked = true;
	fired = dasa_schedules_fire(now, SCHEDULE_BATCH);
	serve_external_workers(now, enqueued);
	enqueued = false;
	timers = dasa_resonate_fire_timers(now, TIMER_BATCH);
	if (dasa_sweep_expired(now, SWEEP_BATCH) == SWEEP_BATCH || fired == SCHEDULE_BATCH ||
		timers == TIMER_BATCH)
		next = now;
	else
		next = earlier(earlier(dasa_next_deadline(now, now + (TimestampTz) dasa_sweep_interval_ms * 1000),
							   dasa_schedules_next()),
					   dasa_resonate_next_timer(now, now + (TimestampTz) dasa_sweep_interval_ms * 1000));
	end_cycle();
	return next;
}

/* Merge the cycle's next deadline into the shared hint, which committers may lower. */
static TimestampTz
publish_deadline(TimestampTz next)
{
	uint64		current = pg_atomic_read_u64(&my_db->next_deadline);

	while (next != 0 && (int64) next < (int64) current)
	{
		if (pg_atomic_compare_exchange_u64(&my_db->next_deadline, &current, (uint64) next))
			return next;
	}
	return (TimestampTz) current;
}

/* Milliseconds to sleep toward deadline (rounded up), at most the sweep interval. */
static long
ms_until(TimestampTz deadline)
{
	TimestampTz now = GetCurrentTimestamp();

	if (deadline <= now)
		return 0;
	if (deadline - now >= (TimestampTz) dasa_sweep_interval_ms * 1000)
		return dasa_sweep_interval_ms;
	return (long) ((deadline - now + 999) / 1000);
}

/*
 * The hint protocol: while a cycle reads the table, the hint is "infinitely
 * far", so every deadline that commits meanwhile lowers it (and sets our
 * latch). After the cycle we reset the latch first and then merge the
 * table's earliest deadline into the hint: whatever committed during the
 * cycle is already in the hint, and whatever commits later sets the latch
 * again. So a stream of creates does not make the worker cycle again for
 * deadlines later than the one it sleeps toward.
 */
static void
worker_loop(void)
{
	for (;;)
	{
		TimestampTz next;
		long		timeout;

		dasa_bgworker_tick();
		if (asked_to_stop())
			return;

		pg_atomic_write_u64(&my_db->next_deadline, PG_INT64_MAX);
		pg_memory_barrier();
		next = run_cycle();
		if (next < 0)
		{
			report_installed(false);
			return;
		}

		if (worked)
			next = earlier(next, dasa_retention_walk());

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (asked_to_stop() || ConfigReloadPending ||
			pg_atomic_read_u32(&my_db->external_due) != 0)
			continue;			/* (external tasks enqueued during the cycle) */
		timeout = ms_until(publish_deadline(next));
		if (timeout > 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 timeout, PG_WAIT_EXTENSION);
	}
}

static bool
extension_installed(void)
{
	bool		installed;

	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("dasa", true));
	if (installed)
		ereport(LOG, (errmsg("dasa worker started for database \"%s\"",
							 get_database_name(MyDatabaseId))));
	CommitTransactionCommand();
	return installed;
}

/* Entry point of a database worker; main_arg is the database oid. */
void
dasa_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);

	dasa_bgworker_start(dboid, "dasa worker");


	my_slot = dasa_slot_claim(dboid, DASA_SLOT_WORKER, &my_db);
	if (my_slot == NULL)
		proc_exit(0);
	before_shmem_exit(release_slot, (Datum) 0);

	if (!extension_installed())
	{
		report_installed(false);
		proc_exit(0);
	}
	report_installed(true);
	worker_loop();
	proc_exit(0);
}
