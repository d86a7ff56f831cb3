/*
 * wakeup.c: wake-ups that a transaction owes others once it commits.
 *
 * Settling a promise wakes its awaiters, a new deadline may wake the
 * database worker earlier, a new task wakes an idle executor (after
 * lowering the claim floor to it, claim_floor.c), and CREATE EXTENSION
 * wakes the launcher. All of it is collected during the transaction and
 * sent from the commit callback, after the changes are visible: a process
 * woken earlier would read the old state and go back to sleep. An abort
 * sends nothing, except that one which held pending tasks locked sends
 * claims back to the start of the queue.
 */
#include "ipc/ipc.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lwlock.h"

/* Past this many settlements in one transaction, wake every awaiter instead. */
#define MAX_TRACKED_SETTLEMENTS 256

static bool callback_registered = false;
static uint32 settled_hashes[MAX_TRACKED_SETTLEMENTS];
static int	nsettled = 0;
static bool settled_overflow = false;
static TimestampTz earliest_deadline = 0;
static bool have_deadline = false;
static bool installed_here = false;
static bool tasks_created = false;
static bool tasks_due = false;	/* a task became pending: lower the claim floor */
static TimestampTz earliest_due = 0;
static bool tasks_locked = false;	/* pending tasks locked: an abort lowers the floor */
static bool external_created = false;

uint32
dasa_hash_id(const char *id, int len)
{
	return hash_bytes((const unsigned char *) id, len);
}

static void
forget_owed_wakeups(void)
{
	nsettled = 0;
	settled_overflow = false;
	have_deadline = false;
	installed_here = false;
	tasks_created = false;
	tasks_due = false;
	tasks_locked = false;
	external_created = false;
}

/* Lower the database's next-deadline hint and wake its worker if ours is earlier. */
static void
offer_deadline(TimestampTz deadline)
{
	DasaDatabase *db = dasa_my_database();
	uint64		current;

	if (db == NULL)
		return;
	current = pg_atomic_read_u64(&db->next_deadline);
	while ((int64) deadline < (int64) current)
	{
		if (pg_atomic_compare_exchange_u64(&db->next_deadline, &current, (uint64) deadline))
		{
			dasa_wake_procno(db->worker.procno);
			break;
		}
	}
}

/* Ask the launcher to (re)check this database for the extension. */
static void
request_probe(void)
{
	DasaDatabase *db;

	LWLockAcquire(dasa_databases_lock(), LW_EXCLUSIVE);
	db = dasa_database_find_or_add(MyDatabaseId);
	if (db != NULL)
		db->probe_pending = true;
	LWLockRelease(dasa_databases_lock());
	if (db == NULL)
		ereport(WARNING,
				(errmsg("dasa cannot manage more than %d databases", dasa_max_databases),
				 errhint("Raise dasa.max_databases and restart the server.")));
	dasa_wake_launcher();
}

static void
send_owed_wakeups(void)
{
	if (nsettled > 0 || settled_overflow)
		dasa_awaiters_wake(settled_hashes, nsettled, settled_overflow);
	if (have_deadline)
		offer_deadline(earliest_deadline);
	if (installed_here)
		request_probe();
	if (tasks_due)
		dasa_claim_floor_lower(earliest_due);
	if (tasks_created)
	{
		DasaDatabase *db = dasa_my_database();

		if (db != NULL)
			dasa_wake_idle_executor(db);
	}
	if (external_created)
	{
		DasaDatabase *db = dasa_my_database();

		if (db != NULL)
		{
			pg_atomic_write_u32(&db->external_due, 1);
			dasa_wake_procno(db->worker.procno);
		}
	}
}

static void
wakeup_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			send_owed_wakeups();
			forget_owed_wakeups();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* A claim may have passed a task this transaction held: read from the start. */
			if (tasks_locked)
				dasa_claim_floor_lower(0);
			forget_owed_wakeups();
			break;
		case XACT_EVENT_PREPARE:
			/*
			 * A prepared transaction commits elsewhere; awaiters' re-check
			 * covers it, and claims find its tasks at their next full read.
			 */
			forget_owed_wakeups();
			break;
		default:
			break;
	}
}

static void
ensure_callback(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wakeup_xact_callback, NULL);
		callback_registered = true;
	}
}

/* The promise id settles in this transaction: wake its awaiters at commit. */
void
dasa_wake_at_commit_settled(const char *id)
{
	ensure_callback();
	if (nsettled < MAX_TRACKED_SETTLEMENTS)
		settled_hashes[nsettled++] = dasa_hash_id(id, strlen(id));
	else
		settled_overflow = true;
}

/* A pending promise with this deadline commits: the worker may need to wake earlier. */
void
dasa_wake_at_commit_deadline(TimestampTz timeout_at)
{
	ensure_callback();
	if (!have_deadline || timeout_at < earliest_deadline)
		earliest_deadline = timeout_at;
	have_deadline = true;
}

/* The extension is created in this database: tell the launcher at commit. */
void
dasa_wake_at_commit_installed(void)
{
	ensure_callback();
	installed_here = true;
}

/* An in-database task becomes pending, due at run_at (0: unknown): claims must see it. */
void
dasa_task_due_at_commit(TimestampTz run_at)
{
	ensure_callback();
	if (!tasks_due || run_at < earliest_due)
		earliest_due = run_at;
	tasks_due = true;
}

/* A task becomes due in this transaction: wake an executor at commit. */
void
dasa_wake_at_commit_task(TimestampTz run_at)
{
	dasa_task_due_at_commit(run_at);
	tasks_created = true;
}

/*
 * This transaction locks pending tasks that it may leave pending: if it
 * aborts, a claim that passed them by must read from the start.
 */
void
dasa_tasks_locked_here(void)
{
	ensure_callback();
	tasks_locked = true;
}

/* An external task becomes due: the worker notifies its queue after the commit. */
void
dasa_wake_at_commit_external(void)
{
	ensure_callback();
	external_created = true;
}
