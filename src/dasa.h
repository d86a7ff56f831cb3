/*
 * dasa.h: declarations shared by dasa's source files.
 *
 * Each file owns one responsibility; this header only exposes the small
 * interfaces they use of each other. Nothing here is SQL-callable.
 */
#ifndef DASA_H
#define DASA_H

#include "postgres.h"

#include "access/htup.h"
#include "storage/itemptr.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* SQLSTATEs of dasa's own outcomes (class DA); documented in README.md. */
#define ERRCODE_DASA_PROMISE_REJECTED	MAKE_SQLSTATE('D','A','0','0','1')
#define ERRCODE_DASA_PROMISE_CANCELED	MAKE_SQLSTATE('D','A','0','0','2')
#define ERRCODE_DASA_PROMISE_TIMEDOUT	MAKE_SQLSTATE('D','A','0','0','3')
#define ERRCODE_DASA_AWAIT_TIMEOUT		MAKE_SQLSTATE('D','A','0','0','4')
#define ERRCODE_DASA_NONDETERMINISTIC	MAKE_SQLSTATE('D','A','0','0','5')
#define ERRCODE_DASA_SUSPENDED			MAKE_SQLSTATE('D','A','0','1','0')

#define DASA_MAX_ID_BYTES 1024
#define DASA_MAX_TIMEOUT_YEARS 1000
#define DASA_TIMER_TAG "resonate:timer"

/* guc.c */
extern int	dasa_launcher_naptime_ms;
extern int	dasa_sweep_interval_ms;
extern int	dasa_await_recheck_ms;
extern int	dasa_max_payload_kb;
extern int	dasa_max_databases;
extern int	dasa_executors_per_database;
extern int	dasa_executor_batch_size;
extern int	dasa_executor_poll_ms;
extern void dasa_define_gucs(void);

/* shmem.c: databases the launcher manages, and sessions blocked in await */
#define DASA_MAX_EXECUTORS 16
#define DASA_MAX_FUNCTION_NAME 128

/* A background process's place in a database: who holds it, when it last failed. */
typedef struct DasaProcess
{
	pid_t		pid;			/* 0: nobody */
	int			procno;
	TimestampTz last_exit;		/* of a failed exit (delays a restart); 0 if none */
} DasaProcess;

/* One executor of a database, and what it runs now (for dasa.executors). */
typedef struct DasaExecutor
{
	DasaProcess proc;
	pg_atomic_uint32 idle;		/* 1: waiting for work, may be woken */
	TimestampTz started_at;		/* of the current task; 0 when none */
	char		task_id[DASA_MAX_ID_BYTES + 1];
	char		function[DASA_MAX_FUNCTION_NAME + 1];
} DasaExecutor;

typedef struct DasaDatabase
{
	Oid			dboid;			/* InvalidOid: slot is free */
	bool		probe_pending;	/* a worker should (re)check for the extension */
	bool		installed;		/* its worker found the extension */
	bool		stop_requested; /* launcher wants the worker gone */
	int			paused_by;		/* pid running DDL that needs the database idle */
	DasaProcess worker;
	pg_atomic_uint64 next_deadline; /* earliest pending timeout known: a hint */
	DasaExecutor executors[DASA_MAX_EXECUTORS];
} DasaDatabase;

extern void dasa_shmem_install_hooks(void);
extern LWLock *dasa_databases_lock(void);
extern DasaDatabase *dasa_database_slots(void);
extern DasaDatabase *dasa_database_find(Oid dboid);
extern DasaDatabase *dasa_database_find_or_add(Oid dboid);
extern DasaDatabase *dasa_my_database(void);
extern void dasa_set_launcher_procno(int procno);
extern DasaProcess *dasa_claim_process(Oid dboid, int executor, DasaDatabase **db);
extern void dasa_release_process(DasaProcess *proc, int code);
extern void dasa_wake_launcher(void);
extern void dasa_wake_procno(int procno);
extern void dasa_awaiter_register(uint32 id_hash);
extern void dasa_awaiter_unregister(void);
extern void dasa_awaiters_wake(const uint32 *hashes, int nhashes, bool wake_all);
extern void dasa_wake_idle_executor(DasaDatabase *db);

/* wakeup.c: wake-ups that must happen at commit, never before */
extern void dasa_wake_at_commit_settled(const char *id);
extern void dasa_wake_at_commit_deadline(TimestampTz timeout_at);
extern void dasa_wake_at_commit_installed(void);
extern void dasa_wake_at_commit_task(void);
extern uint32 dasa_hash_id(const char *id, int len);

/* promise.c */
extern void dasa_settle_internal(const char *id, const char *target_state, Jsonb *value);
extern bool dasa_expire_internal(const char *id);
/* (declared below: DasaContext) */

/* invoke.c */
extern char *dasa_invoke_internal(const char *name, Jsonb *args, const char *id,
								  Interval *timeout, Oid caller);

/* validate.c: checks on user input that raise clear errors */
extern char *dasa_check_id(FunctionCallInfo fcinfo, int argno);
extern TimestampTz dasa_check_timeout(FunctionCallInfo fcinfo, int argno,
									  const char *what, TimestampTz now);
extern Interval *dasa_check_interval(FunctionCallInfo fcinfo, int argno, const char *what);
extern char *dasa_check_function_name(FunctionCallInfo fcinfo, int argno);
extern Jsonb *dasa_check_args(FunctionCallInfo fcinfo, int argno);
extern Jsonb *dasa_check_tags(FunctionCallInfo fcinfo, int argno);
extern void dasa_check_payload(Jsonb *value, const char *what);

/* project.c: the timeout rule as readers see it */
typedef struct DasaOutcome
{
	char	   *state;			/* state label after the timeout rule */
	Jsonb	   *value;			/* NULL when SQL NULL */
	TimestampTz timeout_at;
	TimestampTz settled_at;		/* 0 while pending */
} DasaOutcome;

extern bool dasa_tags_mark_timer(Jsonb *tags);
extern bool dasa_state_is_pending(Oid typid, Datum state);
extern void dasa_project_row(TupleDesc desc, Datum *values, bool *nulls,
							 TimestampTz now);
extern Datum dasa_spi_row_as_promise(FunctionCallInfo fcinfo, int row,
									 MemoryContext result_cxt);
extern void dasa_spi_row_outcome(int row, DasaOutcome *out);
extern Datum dasa_spi_row_as_result(FunctionCallInfo fcinfo, int row, MemoryContext result_cxt);
extern Datum dasa_new_promise_datum(FunctionCallInfo fcinfo, const char *id, Jsonb *param,
									Jsonb *tags, TimestampTz timeout_at,
									TimestampTz created_at);
extern const char *dasa_timeout_state_sql;

/* await.c */
typedef struct DasaAwaitRead
{
	DasaOutcome outcome;
	bool		created_here;	/* inserted by the caller's own transaction */
} DasaAwaitRead;

extern Jsonb *dasa_await_internal(const char *id, TimestampTz wait_deadline);
extern void dasa_read_promise(const char *id, DasaAwaitRead *read, MemoryContext keep);
extern Jsonb *dasa_settled_result(const char *id, const DasaOutcome *o);
extern void dasa_refuse_hopeless_wait(const char *id, const DasaAwaitRead *read);

/* roles.c: whose privileges code runs with */
typedef struct DasaUserSave
{
	Oid			userid;
	int			sec_context;
} DasaUserSave;

extern Oid	dasa_extension_owner(void);
extern void dasa_switch_user(Oid role, DasaUserSave *save);
extern void dasa_restore_user(const DasaUserSave *save);

/* spi_plan.c: saved SPI plans */
extern SPIPlanPtr dasa_prepare_saved(const char *sql, int nargs, Oid *argtypes);
extern void dasa_execute(SPIPlanPtr plan, Datum *values, const char *nulls,
						 int expected, long limit);

/* executor.c, run.c, outcome.c: running invocations */
typedef struct DasaTask
{
	char	   *id;
	char	   *root_id;		/* NULL: the task is a root */
	ItemPointerData promise_tid;	/* the promise's row as claimed */
	char	   *function;
	int			attempt;		/* attempts made before this one */
	bool		promise_pending;
	Jsonb	   *args;
	TimestampTz timeout_at;
	bool		registered;		/* false: the function was unregistered */
	Oid			proc;
	Oid			run_as;
	int			max_attempts;
	double		initial_backoff_ms;
	double		max_backoff_ms;
	double		jitter;
	double		timeout_ms;
} DasaTask;

/* A promise (and maybe task) created by an attempt, to keep if it suspends. */
typedef struct DasaCreated
{
	char	   *id;
	char	   *function;		/* NULL: a plain promise */
	Jsonb	   *param;
	Jsonb	   *tags;
	TimestampTz timeout_at;
} DasaCreated;

/* context.c: the invocation an executor runs now */
typedef struct DasaContext
{
	char	   *id;
	char	   *root_id;
	TimestampTz deadline;
	int			children;		/* children named so far in this attempt */
	List	   *created;		/* DasaCreated */
	List	   *awaited;		/* ids it suspended on */
	bool		await_any;
	bool		suspended;
	bool		nondeterministic;
	MemoryContext memory;
} DasaContext;

extern DasaContext *dasa_context(void);
extern void dasa_context_begin(DasaTask *task);
extern void dasa_context_end(void);
extern char *dasa_context_child_id(DasaContext *c);
extern TimestampTz dasa_context_cap(DasaContext *c, TimestampTz timeout_at);
extern void dasa_context_created(DasaContext *c, const char *id, const char *function,
								 Jsonb *param, Jsonb *tags, TimestampTz timeout_at);
extern void dasa_context_suspend(DasaContext *c, List *ids, bool any) pg_attribute_noreturn();

/* promise.c, invoke.c, callbacks.c: what running invocations create and wait on */
extern bool dasa_insert_promise(const char *id, Jsonb *param, Jsonb *tags,
								TimestampTz timeout_at, TimestampTz now, DasaContext *parent);
extern void dasa_persist_created(DasaContext *c);
extern void dasa_check_replay(DasaContext *c, const char *id, const char *function);
extern bool dasa_schema_has_callbacks(void);
extern void dasa_fire_callbacks(List *ids);
extern void dasa_record_suspension(DasaTask *task, DasaContext *c);
extern void dasa_end_tasks(List *ids);
extern void dasa_cancel_children(const char *id);

typedef struct DasaAttempt
{
	bool		ok;				/* returned a value, effects kept */
	bool		suspended;		/* awaited a pending promise: replay later */
	bool		lost;			/* its promise was settled meanwhile (cancel, timeout) */
	DasaContext *context;		/* what the attempt created and awaited */
	bool		final;			/* failed in a way no retry can fix */
	Jsonb	   *value;			/* when ok; NULL for SQL NULL */
	ErrorData  *error;			/* when not ok */
} DasaAttempt;

typedef struct DasaBatch
{
	int			nresolved;
	int			ncompleted;
	char	  **resolved_ids;
	Jsonb	  **resolved_values;
	char	  **completed_ids;
	int		   *completed_attempts;
} DasaBatch;

extern void dasa_run_attempt(DasaTask *task, DasaAttempt *out);
extern void dasa_batch_init(DasaBatch *batch, int capacity);
extern bool dasa_hold_pending_promise(DasaTask *task);
extern void dasa_batch_resolved(DasaBatch *batch, DasaTask *task, Jsonb *value);
extern void dasa_batch_completed(DasaBatch *batch, DasaTask *task, int attempts);
extern void dasa_batch_flush(DasaBatch *batch);
extern void dasa_record_failure(DasaBatch *batch, DasaTask *task, ErrorData *error, bool final);
extern void dasa_record_ended(DasaBatch *batch, DasaTask *task);
extern ErrorData *dasa_make_error(int sqlerrcode, const char *message, const char *detail);
PGDLLEXPORT void dasa_executor_main(Datum main_arg);

/* bgworker.c, launcher.c, worker.c */
extern void dasa_bgworker_start(Oid dboid, const char *appname);
extern void dasa_bgworker_tick(void);
extern void dasa_register_launcher(void);
PGDLLEXPORT void dasa_launcher_main(Datum main_arg);
PGDLLEXPORT void dasa_worker_main(Datum main_arg);

/* timeouts.c: the background side of promise timeouts */
extern int	dasa_sweep_expired(TimestampTz now, int batch);
extern TimestampTz dasa_next_deadline(TimestampTz now);

/* utility.c: keep workers out of the way of database-level DDL */
extern void dasa_install_utility_hook(void);

#endif							/* DASA_H */
