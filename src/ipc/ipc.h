/*
 * ipc.h: hints in shared memory and the wake-ups that use them.
 *
 * Shared memory holds hints only, never the truth (that lives in tables):
 * which databases the launcher manages and which process holds which slot
 * there, which sessions sleep in dasa.await, the next deadline a database
 * worker should wake for, and where its executors' claims start reading
 * the queue. Wake-ups owed by a transaction are sent at its commit, never
 * before.
 */
#ifndef DASA_IPC_H
#define DASA_IPC_H

#include "dasa.h"

#include "port/atomics.h"
#include "storage/spin.h"
#include "storage/lwlock.h"

/* A background process's slot in a database: who holds it, when it last failed. */
typedef struct DasaProcSlot
{
	pid_t		pid;			/* 0: nobody */
	int			procno;
	TimestampTz last_exit;		/* of a failed exit (delays a restart); 0 if none */
	bool		left;			/* its last process gave the slot back on a clean exit */
} DasaProcSlot;

/* One executor of a database, and what it runs now (for dasa.executors). */
typedef struct DasaExecutor
{
	DasaProcSlot slot;
	pg_atomic_uint32 idle;		/* 1: waiting for work, may be woken */
	pg_atomic_uint32 on_limited;	/* 1: running an attempt of a function with max_running */
	bool		leave;			/* the launcher wants its slot for another database */
	bool		counted;		/* has taken the crash records it found at its start */
	TimestampTz started_at;		/* of the current task; 0 when none */
	Oid			task_owner;		/* the role the current task runs as */
	char		task_id[DASA_MAX_ID_BYTES + 1];
	char		function[DASA_MAX_FUNCTION_NAME + 1];
} DasaExecutor;

/*
 * Where claims of in-database tasks start reading the queue index: no
 * pending task is due before floor (claim_floor.c).
 */
typedef struct DasaClaimFloor
{
	slock_t		lock;
	TimestampTz floor;			/* 0: from the start */
	TimestampTz walked_at;		/* last claim that read from the start */
	bool		claiming[DASA_MAX_EXECUTORS];	/* a claim of this executor is under way */
	TimestampTz lowered[DASA_MAX_EXECUTORS];	/* lowest the floor was lowered to meanwhile */
} DasaClaimFloor;

/* dasa_slot_claim's slots other than executor n (n >= 0) */
#define DASA_SLOT_WORKER (-1)
#define DASA_SLOT_RETENTION (-2)

/* A database the launcher manages: its worker, executors and retention process. */
typedef struct DasaDatabase
{
	Oid			dboid;			/* InvalidOid: entry is free */
	bool		probe_pending;	/* a worker should (re)check for the extension */
	bool		installed;		/* its worker found the extension */
	bool		stop_requested; /* launcher wants the worker gone */
	int			paused_by;		/* pid running DDL that needs the database idle */
	DasaProcSlot worker;
	pg_atomic_uint64 next_deadline; /* earliest pending timeout known: a hint */
	pg_atomic_uint32 external_due;	/* 1: external tasks were enqueued; the worker notifies */
	DasaClaimFloor claim_floor;
	DasaExecutor executors[DASA_MAX_EXECUTORS];
	DasaProcSlot retention;		/* removes settled history at idle CPU priority */
	bool		retention_wanted;	/* the worker asks the launcher for one */
	bool		retention_yield;	/* the launcher wants its slot for a worker or executor */
} DasaDatabase;

/* shmem.c */
extern void dasa_shmem_install_hooks(void);
extern LWLock *dasa_databases_lock(void);
extern DasaDatabase *dasa_databases(void);
extern DasaDatabase *dasa_database_find(Oid dboid);
extern DasaDatabase *dasa_database_find_or_add(Oid dboid);
extern DasaDatabase *dasa_my_database(void);
extern int	dasa_executors_wanted(DasaDatabase *db);
extern void dasa_set_launcher_procno(int procno);
extern DasaProcSlot *dasa_slot_claim(Oid dboid, int executor, DasaDatabase **db);
extern void dasa_slot_release(DasaProcSlot *slot, int code);
extern void dasa_wake_launcher(void);
extern void dasa_wake_procno(int procno);
extern void dasa_awaiter_register(uint32 id_hash);
extern void dasa_awaiter_unregister(void);
extern void dasa_awaiters_wake(const uint32 *hashes, int nhashes, bool wake_all);
extern void dasa_wake_idle_executor(DasaDatabase *db);

/* claim_floor.c */
extern void dasa_claim_floor_init(DasaClaimFloor *f);
extern TimestampTz dasa_claim_floor_read(int claimer);
extern void dasa_claim_floor_raise(int claimer, TimestampTz to);
extern TimestampTz dasa_claim_floor_peek(void);
extern void dasa_claim_floor_lower(TimestampTz to);

/* wakeup.c: wake-ups that must happen at commit, never before */
extern void dasa_wake_at_commit_settled(const char *id);
extern void dasa_wake_at_commit_deadline(TimestampTz timeout_at);
extern void dasa_wake_at_commit_installed(void);
extern void dasa_wake_at_commit_task(TimestampTz run_at);
extern void dasa_task_due_at_commit(TimestampTz run_at);
extern void dasa_tasks_locked_here(void);
extern void dasa_wake_at_commit_external(void);
extern uint32 dasa_hash_id(const char *id, int len);

#endif							/* DASA_IPC_H */
