/*
 * shmem.c: dasa's shared memory.
 *
 * Holds hints only, never the truth (that lives in tables): which databases
 * the launcher manages and who works there, and which sessions sleep in
 * dasa.await on which promise. Losing all of it in a crash loses nothing.
 */
#include "ipc/ipc.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

/* One session blocked in dasa.await; indexed by pgprocno. */
typedef struct DasaAwaiter
{
	Oid			dboid;			/* InvalidOid: not waiting */
	uint32		id_hash;
} DasaAwaiter;

typedef struct DasaShared
{
	LWLock	   *databases_lock; /* guards databases[] and launcher_procno */
	LWLock	   *awaiters_lock;	/* guards awaiters[] */
	int			launcher_procno;
	pg_atomic_uint32 awaiter_count;
	DasaDatabase *databases;	/* dasa_max_databases entries */
	DasaAwaiter *awaiters;		/* MaxBackends entries */
} DasaShared;

static DasaShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static int	my_database_index = -1;
static bool awaiter_exit_hook_set = false;

/* Bytes of shared memory dasa needs. */
static Size
dasa_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(DasaShared));

	size = add_size(size, MAXALIGN(mul_size(dasa_max_databases, sizeof(DasaDatabase))));
	size = add_size(size, MAXALIGN(mul_size(MaxBackends, sizeof(DasaAwaiter))));
	return size;
}

/* Ask the postmaster for our memory and locks. */
static void
dasa_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(dasa_shmem_size());
	RequestNamedLWLockTranche("dasa", 2);
}

/* Create (or, in a child, attach to) dasa's shared state. */
static void
dasa_shmem_startup(void)
{
	bool		found;
	char	   *base;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	base = ShmemInitStruct("dasa", dasa_shmem_size(), &found);
	shared = (DasaShared *) base;
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("dasa");

		memset(base, 0, dasa_shmem_size());
		shared->databases_lock = &locks[0].lock;
		shared->awaiters_lock = &locks[1].lock;
		shared->launcher_procno = -1;
		pg_atomic_init_u32(&shared->awaiter_count, 0);
		shared->databases = (DasaDatabase *) (base + MAXALIGN(sizeof(DasaShared)));
		shared->awaiters = (DasaAwaiter *)
			((char *) shared->databases +
			 MAXALIGN(mul_size(dasa_max_databases, sizeof(DasaDatabase))));
		for (int i = 0; i < dasa_max_databases; i++)
		{
			pg_atomic_init_u64(&shared->databases[i].next_deadline, PG_INT64_MAX);
			pg_atomic_init_u32(&shared->databases[i].external_due, 1);
			dasa_claim_floor_init(&shared->databases[i].claim_floor);
			for (int e = 0; e < DASA_MAX_EXECUTORS; e++)
			{
				pg_atomic_init_u32(&shared->databases[i].executors[e].idle, 0);
				pg_atomic_init_u32(&shared->databases[i].executors[e].on_limited, 0);
			}
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Chain our hooks in front of whatever was installed before. */
void
dasa_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = dasa_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = dasa_shmem_startup;
}

LWLock *
dasa_databases_lock(void)
{
	return shared->databases_lock;
}

DasaDatabase *
dasa_databases(void)
{
	return shared->databases;
}

/* The entry of a database; caller holds databases_lock. NULL if none. */
DasaDatabase *
dasa_database_find(Oid dboid)
{
	for (int i = 0; i < dasa_max_databases; i++)
		if (shared->databases[i].dboid == dboid)
			return &shared->databases[i];
	return NULL;
}

/* The entry of a database, taking a free one if needed; caller holds the lock exclusively. */
DasaDatabase *
dasa_database_find_or_add(Oid dboid)
{
	DasaDatabase *db = dasa_database_find(dboid);

	if (db != NULL)
		return db;
	db = dasa_database_find(InvalidOid);
	if (db == NULL)
		return NULL;
	db->dboid = dboid;
	db->probe_pending = true;
	db->installed = false;
	db->stop_requested = false;
	db->paused_by = 0;
	db->worker = (DasaProcSlot) {.procno = -1};
	db->retention = (DasaProcSlot) {.procno = -1};
	db->retention_wanted = false;
	db->retention_yield = false;
	pg_atomic_write_u64(&db->next_deadline, PG_INT64_MAX);
	pg_atomic_write_u32(&db->external_due, 1);
	dasa_claim_floor_init(&db->claim_floor);
	for (int i = 0; i < DASA_MAX_EXECUTORS; i++)
	{
		db->executors[i].slot = (DasaProcSlot) {.procno = -1};
		pg_atomic_write_u32(&db->executors[i].idle, 0);
		pg_atomic_write_u32(&db->executors[i].on_limited, 0);
		db->executors[i].started_at = 0;
	}
	return db;
}

/*
 * The entry of the current database, or NULL. The index is cached; an entry
 * only changes hands when its database goes away, so a stale index is caught
 * by comparing the oid.
 */
DasaDatabase *
dasa_my_database(void)
{
	if (my_database_index >= 0 &&
		shared->databases[my_database_index].dboid == MyDatabaseId)
		return &shared->databases[my_database_index];

	my_database_index = -1;
	LWLockAcquire(shared->databases_lock, LW_SHARED);
	for (int i = 0; i < dasa_max_databases; i++)
		if (shared->databases[i].dboid == MyDatabaseId)
			my_database_index = i;
	LWLockRelease(shared->databases_lock);
	return my_database_index >= 0 ? &shared->databases[my_database_index] : NULL;
}

/*
 * Take a database's worker slot (DASA_SLOT_WORKER), its retention process's
 * (DASA_SLOT_RETENTION) or executor slot executor; NULL if
 * the database is gone or another live process holds it. *db is its entry.
 */
DasaProcSlot *
dasa_slot_claim(Oid dboid, int executor, DasaDatabase **db)
{
	DasaProcSlot *claimed = NULL;

	LWLockAcquire(shared->databases_lock, LW_EXCLUSIVE);
	*db = dasa_database_find(dboid);
	if (*db != NULL)
	{
		DasaProcSlot *slot = executor == DASA_SLOT_WORKER ? &(*db)->worker :
			executor == DASA_SLOT_RETENTION ? &(*db)->retention : &(*db)->executors[executor].slot;

		if (slot->pid == 0 || kill(slot->pid, 0) != 0)
		{
			slot->pid = MyProcPid;
			slot->procno = MyProc->pgprocno;
			slot->left = false;
			claimed = slot;
			if (slot == &(*db)->retention)
				(*db)->retention_yield = false;
		}
	}
	LWLockRelease(shared->databases_lock);
	return claimed;
}

/* Give a slot back on exit; only a failed exit delays the next start. */
void
dasa_slot_release(DasaProcSlot *slot, int code)
{
	LWLockAcquire(shared->databases_lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->procno = -1;
		slot->last_exit = (code == 0) ? 0 : GetCurrentTimestamp();
		slot->left = (code == 0);
	}
	LWLockRelease(shared->databases_lock);
	dasa_wake_launcher();
}

void
dasa_set_launcher_procno(int procno)
{
	LWLockAcquire(shared->databases_lock, LW_EXCLUSIVE);
	shared->launcher_procno = procno;
	LWLockRelease(shared->databases_lock);
}

/* Set the latch of a process by its pgprocno; a stale number only costs a spurious wake-up. */
void
dasa_wake_procno(int procno)
{
	if (procno >= 0 && procno < ProcGlobal->allProcCount)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

void
dasa_wake_launcher(void)
{
	dasa_wake_procno(shared->launcher_procno);
}

/* Forget this backend's await on exit, even when it dies by FATAL. */
static void
awaiter_on_exit(int code, Datum arg)
{
	dasa_awaiter_unregister();
}

/*
 * Announce that this backend sleeps until promise (hash) settles. Must
 * happen before the caller reads the promise, so that a settlement
 * committing in between still finds us (no lost wake-up).
 */
void
dasa_awaiter_register(uint32 id_hash)
{
	DasaAwaiter *me = &shared->awaiters[MyProc->pgprocno];

	if (!awaiter_exit_hook_set)
	{
		before_shmem_exit(awaiter_on_exit, (Datum) 0);
		awaiter_exit_hook_set = true;
	}
	LWLockAcquire(shared->awaiters_lock, LW_EXCLUSIVE);
	if (me->dboid == InvalidOid)
		pg_atomic_fetch_add_u32(&shared->awaiter_count, 1);
	me->dboid = MyDatabaseId;
	me->id_hash = id_hash;
	LWLockRelease(shared->awaiters_lock);
}

void
dasa_awaiter_unregister(void)
{
	DasaAwaiter *me;

	if (shared == NULL || MyProc == NULL)
		return;
	me = &shared->awaiters[MyProc->pgprocno];
	if (me->dboid == InvalidOid)
		return;
	LWLockAcquire(shared->awaiters_lock, LW_EXCLUSIVE);
	me->dboid = InvalidOid;
	pg_atomic_fetch_sub_u32(&shared->awaiter_count, 1);
	LWLockRelease(shared->awaiters_lock);
}

static bool
hash_listed(uint32 hash, const uint32 *hashes, int nhashes)
{
	for (int i = 0; i < nhashes; i++)
		if (hashes[i] == hash)
			return true;
	return false;
}

/*
 * Wake sessions of this database awaiting any of the given promise hashes
 * (or all of them). Called after commit made the settlements visible; the
 * barrier pairs with the one in registering, so either we see the awaiter
 * or the awaiter's read sees our commit.
 */
void
dasa_awaiters_wake(const uint32 *hashes, int nhashes, bool wake_all)
{
	pg_memory_barrier();
	if (pg_atomic_read_u32(&shared->awaiter_count) == 0)
		return;

	LWLockAcquire(shared->awaiters_lock, LW_SHARED);
	for (int procno = 0; procno < MaxBackends; procno++)
	{
		DasaAwaiter *a = &shared->awaiters[procno];

		/* hash 0: an await_any, woken by any settlement */
		if (a->dboid == MyDatabaseId &&
			(wake_all || a->id_hash == 0 || hash_listed(a->id_hash, hashes, nhashes)))
			dasa_wake_procno(procno);
	}
	LWLockRelease(shared->awaiters_lock);
}

/*
 * How many executors the database wants now: dasa.executors_per_database,
 * plus one for each running an attempt of a limited function (max_running),
 * up to as many again. Such attempts mostly wait (on the rate-limited
 * service they guard, or for their turn), and a pool sized for the CPU would
 * otherwise lose an executor to each: the spare keeps the other functions'
 * pace. A spare leaves once it finds nothing to do and is not wanted.
 */
int
dasa_executors_wanted(DasaDatabase *db)
{
	int			base = dasa_executors_per_database;
	int			spares = 0;

	for (int i = 0; i < DASA_MAX_EXECUTORS; i++)
		if (db->executors[i].slot.pid != 0 && pg_atomic_read_u32(&db->executors[i].on_limited) == 1)
			spares++;
	return Min(base + Min(spares, base), DASA_MAX_EXECUTORS);
}

/*
 * Wake one idle executor of the database, claiming its idle flag so that the
 * next waker picks another. If none is idle, all are busy and each looks for
 * more work before it sleeps (see executor.c), so nobody needs waking.
 */
void
dasa_wake_idle_executor(DasaDatabase *db)
{
	pg_memory_barrier();
	for (int i = 0; i < DASA_MAX_EXECUTORS; i++)
	{
		DasaExecutor *e = &db->executors[i];
		uint32		expected = 1;

		if (pg_atomic_read_u32(&e->idle) == 1 &&
			pg_atomic_compare_exchange_u32(&e->idle, &expected, 0))
		{
			dasa_wake_procno(e->slot.procno);
			return;
		}
	}
}
