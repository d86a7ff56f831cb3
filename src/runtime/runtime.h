/*
 * runtime.h: dasa's background processes.
 *
 * One launcher per cluster keeps, in every database with dasa, a worker
 * (timeouts) and a pool of executors (invocations). Executors run attempts
 * (attempt.c) and gather their outcomes into batches (batch.c) that they
 * write through the kernel at commit. The DDL guard keeps them out of the
 * way of database-level DDL.
 */
#ifndef DASA_RUNTIME_H
#define DASA_RUNTIME_H

#include "core/core.h"

/* attempt.c: one attempt of a task */
typedef struct DasaAttempt
{
	bool		ok;				/* returned a value, effects kept */
	bool		suspended;		/* awaited a pending promise: replay later */
	bool		lost;			/* its promise was settled meanwhile (cancel, timeout) */
	bool		deferred;		/* stopped on a lock held by another batch: run it in the next */
	DasaContext *context;		/* what the attempt created and awaited */
	bool		final;			/* failed in a way no retry can fix */
	Jsonb	   *value;			/* when ok; NULL for SQL NULL */
	ErrorData  *error;			/* when not ok */
} DasaAttempt;

extern void dasa_run_attempt(DasaTask *task, bool after_others, DasaAttempt *out);
extern ErrorData *dasa_attempt_unrunnable(DasaTask *task);
extern Jsonb *dasa_call_inline(DasaTask *task, MemoryContext keep);

/* inline.c: an awaited child run at once inside its parent's attempt */
extern void dasa_inline_install(void);
extern void dasa_unwritten_install(void);

/* limits.c: at most max_running invocations of a function at once */
extern bool dasa_limit_take(DasaTask *task);
extern void dasa_limit_full(const char *function);
extern List *dasa_limit_passed_by(void);
extern void dasa_inline_permit(TimestampTz until);

/* executor.c: what this executor learned of each function */
extern bool dasa_function_inlines(const char *function);
extern double dasa_function_mean_ms(const char *function);
extern void dasa_function_inline_failed(const char *function);

/*
 * How long an attempt may run after others in its batch (their results
 * wait for the batch's commit) before it gives way, and how quick a
 * function must be known to be to start a batch.
 */
#define DASA_BATCH_RUN_MS 50

/* batch.c: what a batch of attempts writes at its end */
typedef struct DasaBatch
{
	int			nresolved;
	int			ncompleted;
	char	  **resolved_ids;
	Jsonb	  **resolved_values;
	char	  **completed_ids;
	int		   *completed_attempts;
	int64	   *completed_versions;
	TimestampTz *completed_started;
	TimestampTz *completed_ended;
} DasaBatch;

extern void dasa_batch_init(DasaBatch *batch, int capacity);
extern void dasa_batch_resolved(DasaBatch *batch, DasaTask *task, Jsonb *value);
extern void dasa_batch_completed(DasaBatch *batch, DasaTask *task, int attempts);
extern void dasa_batch_ended(DasaBatch *batch, DasaTask *task);
extern void dasa_batch_flush(DasaBatch *batch);

/* isolation.c: nothing one invocation leaves behind is seen by the next */
extern bool dasa_attempt_used_temp_objects(void);
extern void dasa_reset_session_state(void);

/* crash_record.c: the attempt a crashed executor was running */
extern void dasa_crash_record_open(Oid dboid, int index);
extern void dasa_crash_record_set(DasaTask *task);
extern void dasa_crash_record_clear(void);
extern void dasa_crash_record_mark_overran(void);
extern char *dasa_crash_record_take(bool *overran);
extern List *dasa_crash_records_take_all(DasaDatabase *db, int my_index);

/* bgworker.c, launcher.c, worker.c, executor.c */
extern void dasa_bgworker_start(Oid dboid, const char *appname);
extern void dasa_bgworker_tick(void);
extern void dasa_register_launcher(void);
PGDLLEXPORT void dasa_launcher_main(Datum main_arg);
PGDLLEXPORT void dasa_worker_main(Datum main_arg);
PGDLLEXPORT void dasa_executor_main(Datum main_arg);

/* copies.c: copied, restored and upgraded state */
extern bool dasa_worker_may_work(void);

/* retention.c: settled history removed by the worker and a retention process */
extern TimestampTz dasa_retention_walk(void);
PGDLLEXPORT void dasa_retention_main(Datum main_arg);

/* retention_vacuum.c: the retention process vacuums what it empties */
extern void dasa_history_vacuum_init(void);
extern void dasa_history_vacuum_after(int64 removed, bool ending);

/* ddl_guard.c: keep workers out of the way of database-level DDL */
extern void dasa_install_ddl_guard(void);

#endif							/* DASA_RUNTIME_H */
