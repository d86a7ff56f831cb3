/*
 * launcher.c: the dasa launcher, one per cluster.
 *
 * Keeps one dasa worker and a pool of executors running in every database
 * that has the extension (and a retention process while its worker asks
 * for one), with no configuration: it lists the databases (a shared catalog), probes
 * each new one by starting a worker there (the worker checks for the
 * extension itself and leaves if it is absent), is told at commit of CREATE
 * EXTENSION, restarts workers that die, and stops those whose database goes
 * away or becomes a template. It never connects to a database itself.
 *
 * When max_worker_processes is too small for all of them, slots are shared
 * out fairly: every database's worker first, then each database's first
 * executor, then the second ones, and so on. A database left without what
 * an earlier round promises it takes the slot of the highest-numbered
 * executor elsewhere (which leaves after its batch); a retention process
 * gives its slot back first, and none starts for a minute after. Spare
 * executors and retention processes come last and take no one's slot. The
 * shortage is logged at most once a minute.
 */
#include "runtime/runtime.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Pause before starting a worker again in a database whose worker just exited. */
#define RESTART_DELAY_MS 1000

/* At most one log line about too few background worker slots per this interval. */
#define SHORTAGE_LOG_INTERVAL_MS 60000

static TimestampTz last_shortage_log = 0;

/* No retention process starts for this long after a worker or executor found no slot. */
#define RETENTION_AFTER_SHORTAGE_MS 60000

static TimestampTz last_shortage = 0;

/*
 * Handles of the processes this launcher started, parallel to the shared
 * database entries: per database, the worker first (level 0), then its
 * executors (level 1 + e), then its retention process.
 */
#define RETENTION_LEVEL (1 + DASA_MAX_EXECUTORS)
#define PROCS_PER_DATABASE (1 + RETENTION_LEVEL)
static BackgroundWorkerHandle **handles = NULL;

static BackgroundWorkerHandle **
handle_of(int db, int proc)
{
	return &handles[db * PROCS_PER_DATABASE + proc];
}

/* Register the launcher; called from _PG_init. */
void
dasa_register_launcher(void)
{
	BackgroundWorker bgw = {0};

	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 1;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "dasa");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "dasa_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "dasa launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "dasa launcher");
	RegisterBackgroundWorker(&bgw);
}

/* Can a worker live in this database? Templates must stay free of sessions. */
static bool
database_is_eligible(Form_pg_database db)
{
	return db->datallowconn && !db->datistemplate && db->datconnlimit != -2;
}

/* Oids of the databases that may have a worker (read from pg_database). */
static List *
eligible_databases(void)
{
	List	   *oids = NIL;
	MemoryContext caller = CurrentMemoryContext;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (database_is_eligible(db))
		{
			MemoryContext old = MemoryContextSwitchTo(caller);

			oids = lappend_oid(oids, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	return oids;
}

/* Drop a handle whose process has stopped; true while it may still run. */
static bool
handle_alive(BackgroundWorkerHandle **handle)
{
	pid_t		pid;

	if (*handle == NULL)
		return false;
	if (GetBackgroundWorkerPid(*handle, &pid) != BGWH_STOPPED)
		return true;
	pfree(*handle);
	*handle = NULL;
	return false;
}

/* Is the worker of database entry i alive (started by us, or by a launcher before us)? */
static bool
worker_running(int i)
{
	DasaDatabase *db = &dasa_databases()[i];
	bool		had = *handle_of(i, 0) != NULL;
	bool		alive = handle_alive(handle_of(i, 0));

	if (had && !alive && db->worker.pid == 0 && db->probe_pending)
		db->worker.last_exit = GetCurrentTimestamp();	/* died before reporting */
	return alive || db->worker.pid != 0;
}

/* The slot of process level (1 + e: executor e, RETENTION_LEVEL) of database db. */
static DasaProcSlot *
slot_of(DasaDatabase *db, int level)
{
	return level == RETENTION_LEVEL ? &db->retention : &db->executors[level - 1].slot;
}

/* Is process level (1 + e: executor e, RETENTION_LEVEL) of database entry i alive? */
static bool
slot_running(int i, int level)
{
	DasaProcSlot *x = slot_of(&dasa_databases()[i], level);
	bool		had = *handle_of(i, level) != NULL;
	bool		alive = handle_alive(handle_of(i, level));

	if (had && !alive && x->pid == 0 && x->last_exit == 0 && !x->left)
		x->last_exit = GetCurrentTimestamp();	/* died before taking its slot */
	return alive || x->pid != 0;
}

static bool
anything_running(int i)
{
	bool		running = worker_running(i);

	for (int level = 1; level <= RETENTION_LEVEL; level++)
		running |= slot_running(i, level);
	return running;
}

/* Match the database entries to the current list of databases. Caller holds the lock. */
static void
sync_entries(List *oids)
{
	ListCell   *lc;

	foreach(lc, oids)
	{
		DasaDatabase *db = dasa_database_find_or_add(lfirst_oid(lc));

		if (db != NULL)
			db->stop_requested = false;
		else
			ereport(WARNING,
					(errmsg("dasa cannot watch database %u: all %d database entries are in use",
							lfirst_oid(lc), dasa_max_databases),
					 errhint("Raise dasa.max_databases and restart the server.")));
	}
	for (int i = 0; i < dasa_max_databases; i++)
	{
		DasaDatabase *db = &dasa_databases()[i];

		if (db->dboid == InvalidOid || list_member_oid(oids, db->dboid))
			continue;
		if (anything_running(i))
		{
			db->stop_requested = true;
			dasa_wake_procno(db->worker.procno);
			for (int e = 0; e < DASA_MAX_EXECUTORS; e++)
				dasa_wake_procno(db->executors[e].slot.procno);
			dasa_wake_procno(db->retention.procno);
		}
		else
			db->dboid = InvalidOid;
	}
}

/* Start process proc (0: the worker, 1 + e: executor e, RETENTION_LEVEL) of database entry i; false if no slot is free. */
static bool
start_process(int i, int proc, Oid dboid)
{
	BackgroundWorker bgw = {0};
	int			executor = proc - 1;

	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	bgw.bgw_main_arg = ObjectIdGetDatum(dboid);
	bgw.bgw_notify_pid = MyProcPid;
	memcpy(bgw.bgw_extra, &executor, sizeof(int));
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "dasa");
	if (proc == 0)
	{
		snprintf(bgw.bgw_function_name, BGW_MAXLEN, "dasa_worker_main");
		snprintf(bgw.bgw_name, BGW_MAXLEN, "dasa worker for database %u", dboid);
		snprintf(bgw.bgw_type, BGW_MAXLEN, "dasa worker");
	}
	else if (proc == RETENTION_LEVEL)
	{
		snprintf(bgw.bgw_function_name, BGW_MAXLEN, "dasa_retention_main");
		snprintf(bgw.bgw_name, BGW_MAXLEN, "dasa retention for database %u", dboid);
		snprintf(bgw.bgw_type, BGW_MAXLEN, "dasa retention");
	}
	else
	{
		snprintf(bgw.bgw_function_name, BGW_MAXLEN, "dasa_executor_main");
		snprintf(bgw.bgw_name, BGW_MAXLEN, "dasa executor %d for database %u", executor, dboid);
		snprintf(bgw.bgw_type, BGW_MAXLEN, "dasa executor");
	}

	if (!RegisterDynamicBackgroundWorker(&bgw, handle_of(i, proc)))
	{
		*handle_of(i, proc) = NULL;
		return false;
	}
	return true;
}

/* May a process that last exited at last_exit start again now? Lowers *wait_ms if not yet. */
static bool
restart_due(TimestampTz last_exit, TimestampTz now, long *wait_ms)
{
	TimestampTz due = TimestampTzPlusMilliseconds(last_exit, RESTART_DELAY_MS);
	long		ms;

	if (last_exit == 0 || due <= now)
		return true;
	ms = (long) ((due - now + 999) / 1000);
	*wait_ms = (*wait_ms < 0) ? ms : Min(*wait_ms, ms);
	return false;
}

/* Did a worker or an executor find no slot lately? */
static bool
shortage_recent(void)
{
	return last_shortage != 0 &&
		!TimestampDifferenceExceeds(last_shortage, GetCurrentTimestamp(), RETENTION_AFTER_SHORTAGE_MS);
}

/*
 * Ask a retention process to give its slot back (it leaves after its step,
 * its vacuum cancelled); true if one was asked or is leaving already.
 */
static bool
retention_gives_way(void)
{
	for (int i = 0; i < dasa_max_databases; i++)
	{
		DasaDatabase *db = &dasa_databases()[i];

		if (db->retention.pid == 0)
			continue;
		if (!db->retention_yield)
		{
			db->retention_yield = true;
			(void) kill(db->retention.pid, SIGINT);
		}
		return true;
	}
	return false;
}

/* May database entry i run processes now? */
static bool
database_active(DasaDatabase *db)
{
	return db->dboid != InvalidOid && !db->stop_requested && db->paused_by == 0;
}

/*
 * Give a slot to a database that could not get process level (0: its
 * worker, 1 + e: executor e): a retention process is asked to leave, or
 * else the highest-numbered running executor of a later level (e >= level).
 * One at a time: none is asked while another that was asked is still there.
 */
static void
make_room(int level)
{
	DasaExecutor *victim = NULL;
	int			victim_index = level;

	if (retention_gives_way())
		return;

	for (int i = 0; i < dasa_max_databases; i++)
	{
		DasaDatabase *db = &dasa_databases()[i];

		for (int e = 0; e < DASA_MAX_EXECUTORS; e++)
		{
			if (db->executors[e].slot.pid == 0)
				continue;
			if (db->executors[e].leave)
				return;
			if (e >= victim_index)
			{
				victim = &db->executors[e];
				victim_index = e + 1;
			}
		}
	}
	if (victim != NULL)
	{
		victim->leave = true;
		dasa_wake_procno(victim->slot.procno);
	}
}

/* Start process level (0: the worker, 1 + e: executor e, RETENTION_LEVEL) of entry i if it is missing; false if no slot was free. */
static bool
start_if_missing(int i, int level, TimestampTz now, long *wait_ms)
{
	DasaDatabase *db = &dasa_databases()[i];
	bool		running = level == 0 ? worker_running(i) : slot_running(i, level);
	TimestampTz last_exit = level == 0 ? db->worker.last_exit : slot_of(db, level)->last_exit;

	if (running || !restart_due(last_exit, now, wait_ms))
		return true;
	if (level == 0)
		db->worker.last_exit = 0;
	else
	{
		slot_of(db, level)->last_exit = 0;
		slot_of(db, level)->left = false;
		if (level != RETENTION_LEVEL)
			db->executors[level - 1].leave = false;
	}
	if (start_process(i, level, db->dboid))
		return true;
	*wait_ms = RESTART_DELAY_MS;
	return false;
}

/* Does entry i want process level (0: the worker, 1 + e: executor e, RETENTION_LEVEL)? */
static bool
wants_level(DasaDatabase *db, int level)
{
	if (!database_active(db))
		return false;
	if (level == 0)
		return db->installed || db->probe_pending;
	if (level == RETENTION_LEVEL)
		return db->installed && db->retention_wanted && !shortage_recent();
	return db->installed && level - 1 < dasa_executors_wanted(db);
}

static void
report_shortage(int level)
{
	TimestampTz now = GetCurrentTimestamp();

	if (last_shortage_log != 0 &&
		!TimestampDifferenceExceeds(last_shortage_log, now, SHORTAGE_LOG_INTERVAL_MS))
		return;
	last_shortage_log = now;
	ereport(WARNING,
			(errmsg("dasa could not start all its background processes: max_worker_processes (%d) is too small",
					max_worker_processes),
			 errdetail(level == 0 ? "A database with dasa has no worker: its timeouts and invocations wait."
					   : "Some databases with dasa run fewer executors than dasa.executors_per_database (%d); one with none runs no invocations.",
					   dasa_executors_per_database),
			 errhint("Set max_worker_processes to at least 1 + (number of databases with dasa) x (1 + dasa.executors_per_database), plus max_parallel_workers and what other extensions need.")));
}

/*
 * Start the processes that should run and do not, level by level across the
 * databases; returns the milliseconds until a delayed restart is due (or -1
 * if none is). Caller holds the lock.
 */
static long
start_missing_workers(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		wait_ms = -1;

	for (int level = 0; level <= RETENTION_LEVEL; level++)
	{
		for (int i = 0; i < dasa_max_databases; i++)
		{
			if (!wants_level(&dasa_databases()[i], level))
				continue;
			if (start_if_missing(i, level, now, &wait_ms))
				continue;
			if (level > dasa_executors_per_database)
				return wait_ms; /* a spare or a retention process: nobody gives way for one */
			last_shortage = now;
			make_room(level);
			report_shortage(level);
			return wait_ms;
		}
	}
	return wait_ms;
}

static long
launcher_cycle(void)
{
	List	   *oids = eligible_databases();
	long		wait_ms;

	LWLockAcquire(dasa_databases_lock(), LW_EXCLUSIVE);
	sync_entries(oids);
	wait_ms = start_missing_workers();
	LWLockRelease(dasa_databases_lock());
	list_free(oids);
	return wait_ms;
}

/* Entry point of the launcher. */
void
dasa_launcher_main(Datum main_arg)
{
	dasa_bgworker_start(InvalidOid, "dasa launcher");

	handles = MemoryContextAllocZero(TopMemoryContext, sizeof(BackgroundWorkerHandle *) *
									 dasa_max_databases * PROCS_PER_DATABASE);
	dasa_set_launcher_procno(MyProc->pgprocno);
	ereport(LOG, (errmsg("dasa launcher started")));

	for (;;)
	{
		long		wait_ms;

		ResetLatch(MyLatch);
		dasa_bgworker_tick();
		wait_ms = launcher_cycle();
		if (wait_ms < 0 || wait_ms > dasa_launcher_naptime_ms)
			wait_ms = dasa_launcher_naptime_ms;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
	}
}
