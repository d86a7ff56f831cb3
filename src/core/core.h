/*
 * core.h: the kernel. Every write to dasa.promises, dasa.tasks and
 * dasa.callbacks goes through the functions declared here, and each state
 * change is written in one place, set-based:
 *
 *   promises.c   create and read promises; hold a pending one for an attempt
 *   settle.c     settle a set of promises and everything that sets off:
 *                descendants cancelled, tasks ended, callbacks fired,
 *                wake-ups queued for commit
 *   tasks.c      the task lifecycle: enqueue, claim, complete, retry or
 *                reject a failed attempt, end (all fenced by version)
 *   rejection.c  a failed attempt's error, bounded, and its rejection value
 *   suspension.c suspend a task on the promises it awaits, resume it
 *   invocations.c invoke: an invocation's promise and task, replay checks
 *   registry.c   registered functions
 *   procedures.c a registration's procedure, by signature
 *   origin.c     where the state was recorded: copies and restores
 *   external.c   external workers: claims, leases, heartbeats, notifications
 *   listeners.c  channels notified when a promise settles
 *   resonate.c   the Resonate protocol's tasks: their cascade and timers
 *   sweep.c      which promises have expired, and the next deadline
 *   cron.c       cron expressions and their next firing (no table access)
 *   schedules.c  schedules, and their firings as invocations
 *   retention.c  settled trees removed, and what a task may still read
 *   context.c    the invocation an executor runs now, and its children's ids
 *   timeout_rule.c the timeout rule as readers see it
 *
 * Callers are connected to SPI and run as the extension owner.
 */
#ifndef DASA_CORE_H
#define DASA_CORE_H

#include "ipc/ipc.h"
#include "storage/storage.h"

#include "access/htup.h"
#include "pgtime.h"
#include "storage/itemptr.h"
#include "utils/elog.h"

/* The columns of dasa.promises, in table order (the row type callers return). */
#define DASA_PROMISE_SQL_COLUMNS \
	"id, state, param, value, tags, timeout_at, created_at, settled_at, parent_id, root_id, awaited, owner"
#define DASA_PROMISE_COLUMN_NAMES \
	"id", "state", "param", "value", "tags", "timeout_at", "created_at", "settled_at", \
	"parent_id", "root_id", "awaited", "owner"

/* timeout_rule.c: a promise as a reader sees it (the timeout rule applied) */
typedef struct DasaPromiseRead
{
	char	   *state;			/* state label after the timeout rule */
	Jsonb	   *value;			/* NULL when SQL NULL */
	TimestampTz timeout_at;
	TimestampTz settled_at;		/* 0 while pending */
} DasaPromiseRead;

extern const char *dasa_timeout_state_sql;
extern bool dasa_tags_mark_timer(Jsonb *tags);
extern bool dasa_state_is_pending(Oid typid, Datum state);
extern Datum dasa_pending_state(Oid typid);
extern int	dasa_promise_column(TupleDesc desc, const char *name);
extern void dasa_apply_timeout_rule(TupleDesc desc, Datum *values, bool *nulls, TimestampTz now);
extern void dasa_promise_read_row(const DasaRows *rows, uint64 row, DasaPromiseRead *out);

/* context.c: the invocation an executor runs now */
typedef struct DasaCreated		/* a promise (and maybe task) an attempt created */
{
	char	   *id;
	char	   *function;		/* NULL: a plain promise */
	char	   *queue;			/* of an external function's invocation */
	Jsonb	   *param;
	Jsonb	   *tags;
	TimestampTz timeout_at;
	Oid			owner;			/* the role that created it */
	bool		recorded;		/* an earlier attempt's, found again: already written */
	bool		settled;		/* (recorded) settled when this attempt began */
	bool		unwritten;		/* not written yet: the attempt writes it when it ends */
	TimestampTz run_at;			/* (an invocation) due from then on; 0: when written */
	char	   *rerun_of;		/* (an invocation) the failed child it repeats, or NULL */
	int			priority;		/* (an invocation) its task's */
	bool		ran;			/* ran inside the attempt and resolved (core/inline.c) */
	Jsonb	   *value;			/* (ran) its value */
} DasaCreated;

/* recorded.c: a child an earlier attempt of the running invocation recorded */
typedef struct DasaRecorded
{
	char	   *function;		/* NULL: a plain promise or timer */
	Oid			owner;
	bool		settled;		/* when this attempt read it (or past its deadline) */
	bool		final;			/* settled in its row: promise holds it */
	DasaPromiseRead promise;
	char	   *id;				/* its id: another than the key if from an earlier run */
	bool		earlier_run;	/* a child the run this one repeats (dasa.rerun) made */
} DasaRecorded;

typedef struct DasaContext
{
	char	   *id;
	char	   *root_id;
	TimestampTz deadline;
	int			children;		/* children named so far in this attempt */
	int			unwritten;		/* of created: invocations not written yet */
	List	   *created;		/* DasaCreated */
	List	   *awaited;		/* ids it suspended on */
	List	   *read_elsewhere; /* promises it awaited that are not its children */
	struct HTAB *read_set;		/* the same, as a set */
	bool		await_any;
	bool		suspended;
	bool		final;			/* failed in a way no retry can mend */
	bool		entered;		/* an external task a client session entered */
	struct HTAB *recorded;		/* DasaRecorded by id, read when first needed */
	struct HTAB *fresh;			/* DasaCreated by id: what this attempt created */
	struct HTAB *reruns;		/* child id -> the failed child it repeats (dasa.rerun) */
	struct DasaContext *outer;	/* of a child run inside an attempt: the attempt's */
	MemoryContext memory;
} DasaContext;

/* A claimed task, as the executor runs it. */
typedef struct DasaTask
{
	char	   *id;
	char	   *root_id;		/* NULL: the task is a root */
	ItemPointerData promise_tid;	/* the promise's row as claimed */
	char	   *function;
	int			attempt;		/* attempts made before this one */
	int64		version;		/* fencing token: what the claim saw */
	int			crashes;		/* attempts that died with their process */
	TimestampTz run_at;			/* when it fell due */
	bool		promise_pending;
	Jsonb	   *args;
	TimestampTz timeout_at;
	Oid			run_as;			/* the invocation's owner */
	bool		registered;		/* false: the function was unregistered */
	char	   *state;			/* of the task: pending, claimed, suspended, completed */
	char	   *queue;			/* external: its queue; NULL if in-database */
	Oid			function_owner; /* the registration's owner (owns the queue) */
	TimestampTz started_at;		/* when its attempt here started; 0: none yet */
	int			max_running;	/* of its function: at most so many at once; 0: no limit */
	Oid			proc;
	int			max_attempts;
	double		initial_backoff_ms;
	double		max_backoff_ms;
	double		jitter;
	double		timeout_ms;
} DasaTask;

/* inline.c: an awaited child run at once inside its parent's attempt */
typedef bool (*DasaInlineRunner) (DasaContext *parent, DasaCreated *child);
typedef bool (*DasaInlineAllRunner) (DasaContext *parent, DasaCreated **children, int n);
extern void dasa_inline_set_runner(DasaInlineRunner run, DasaInlineAllRunner run_all);
extern bool dasa_inline_try(DasaContext *c, const char *id);
extern bool dasa_inline_try_all(DasaContext *c, List *ids);

extern DasaContext *dasa_context(void);
extern DasaContext *dasa_context_swap(DasaContext *c);
extern DasaContext *dasa_suspending_context(void);
extern void dasa_context_enter(DasaTask *task);
extern bool dasa_context_leave(const char *id);
extern void dasa_context_refuse_own_line(DasaContext *c, List *ids);
extern void dasa_context_begin(DasaTask *task);
extern void dasa_context_end(void);
extern char *dasa_context_child_id(DasaContext *c);
extern TimestampTz dasa_context_cap(DasaContext *c, TimestampTz timeout_at);
extern TimestampTz dasa_context_cap_asked(DasaContext *c, const char *id, TimestampTz timeout_at);
extern void dasa_context_note_read(DasaContext *c, const char *id);
extern DasaCreated *dasa_context_created(DasaContext *c, const char *id, const char *function,
										 const char *queue, Jsonb *param, Jsonb *tags,
										 TimestampTz timeout_at, Oid owner);
extern void dasa_context_suspend(DasaContext *c, List *ids, bool any) pg_attribute_noreturn();
extern void dasa_context_found(DasaContext *c, const char *id, const char *function,
							   const DasaRecorded *recorded);

/* subtransaction.c */
extern ErrorData *dasa_try(void (*step) (void *arg), void *arg);

/* idset.c: sets and tables of ids */
extern uint32 dasa_id_hash(const void *key, Size keysize);
extern int	dasa_id_match(const void *a, const void *b, Size keysize);
extern struct HTAB *dasa_id_table(const char *name, long size, Size entrysize);
extern bool dasa_idset_add(struct HTAB *set, const char *id);
extern bool dasa_idset_contains(struct HTAB *set, const char *id);

/* recorded.c */
extern const DasaRecorded *dasa_recorded_child(DasaContext *c, const char *id);
extern void dasa_recorded_fresh(DasaContext *c, DasaCreated *made);
extern DasaCreated *dasa_recorded_fresh_child(DasaContext *c, const char *id);
extern char *dasa_recorded_rerun_of(DasaContext *c, const char *id);
extern void dasa_recorded_settled(DasaContext *c, const char *id);
extern bool dasa_recorded_is_child(DasaContext *c, const char *id);
extern bool dasa_recorded_read(DasaContext *c, const char *id, Oid role, DasaPromiseRead *out);

/* promises.c */
extern void dasa_check_payload(Jsonb *value, const char *what);
extern bool dasa_promise_insert(const char *id, Jsonb *param, Jsonb *tags,
								TimestampTz timeout_at, TimestampTz now, DasaContext *parent,
								Oid owner);
extern DasaRows dasa_promise_create(const char *id, Jsonb *param, Jsonb *tags,
									TimestampTz timeout_at, TimestampTz now,
									DasaContext *parent, Oid owner, bool *inserted);
extern DasaRows dasa_promise_select(const char *id);
extern DasaRows dasa_promise_select_visible(const char *id, Oid role);
extern bool dasa_promise_read(const char *id, Oid role, DasaPromiseRead *read, bool *created_here,
							  MemoryContext keep);
extern void dasa_raise_id_conflict(const char *id, const char *detail) pg_attribute_noreturn();
extern bool dasa_promise_hold_pending(DasaTask *task);
extern void dasa_raise_not_found(const char *id) pg_attribute_noreturn();

/* settle.c: the one writer of promise states */
extern bool dasa_settle_inline_child(const char *id, Jsonb *value, int64 version);
extern DasaRows dasa_settle(int n, char **ids, const char *state, Jsonb **values,
							bool deadline_applies);
extern DasaRows dasa_settle_or_read(const char *id, const char *state, Jsonb *value, Oid role);
extern bool dasa_settle_if_expired(const char *id);

/* tasks.c: the task lifecycle */
extern bool dasa_task_load(const char *id, DasaTask *task);
extern int	dasa_tasks_claim(int claimer, TimestampTz now, int limit, List *passed_by,
							 bool limited_first, DasaTask **tasks);
extern List *dasa_tasks_explain_claim(int limit);
extern TimestampTz dasa_tasks_next_due(TimestampTz now);
extern void dasa_tasks_complete(int n, char **ids, int *attempts, int64 *versions,
								TimestampTz *started, TimestampTz *ended);
extern void dasa_task_release(DasaTask *task);
extern bool dasa_task_fail(DasaTask *task, ErrorData *error, bool final);
extern void dasa_tasks_end(List *ids);
extern void dasa_task_crashed(const char *id, bool overran);
extern ErrorData *dasa_make_error(int sqlerrcode, const char *message, const char *detail);

/* rejection.c: a failed attempt's error, bounded, and the rejection value */
extern void dasa_bound_error(ErrorData *error);
extern Jsonb *dasa_rejection_value(ErrorData *error, int attempts);

/* suspension.c */
extern void dasa_task_suspend(DasaTask *task, DasaContext *c);
extern void dasa_callbacks_fire(List *ids, List *parents);
extern bool dasa_promise_mark_awaited(const char *id);

/* listeners.c: channels notified when a promise settles */
extern void dasa_listener_add(const char *id, const char *channel);
extern void dasa_listener_add_address(const char *id, const char *channel, const char *address);
extern void dasa_listeners_fire(List *ids);

/* resonate.c: the Resonate protocol's tasks */
extern void dasa_resonate_settled(List *ids);
extern int	dasa_resonate_fire_timers(TimestampTz now, int batch);
extern TimestampTz dasa_resonate_next_timer(TimestampTz now, TimestampTz until);
extern int	dasa_resonate_fence_status(const char *id, int64 version, Oid role);

/* The function name of a Resonate schedule, whose firings are promises (no function has it). */
#define DASA_RESONATE_SCHEDULE "resonate:promise"
extern void dasa_resonate_schedule_fired(const char *name, const char *id, TimestampTz at,
										 Jsonb *args, Jsonb *tags, Oid owner);

/* invocations.c */
extern char *dasa_invoke_internal(const char *name, Jsonb *args, const char *id,
								  Interval *timeout, Oid caller);
extern char *dasa_invoke_tagged(const char *name, Jsonb *args, const char *id, Interval *timeout,
								Jsonb *tags, Oid caller);
extern Jsonb *dasa_no_tags(void);
extern bool dasa_create_invocation(const char *id, const char *name, const char *queue, Jsonb *args,
								   Jsonb *tags, TimestampTz timeout_at, TimestampTz now,
								   TimestampTz run_at, const char *repeats, int priority,
								   DasaContext *parent, Oid owner);
extern char *dasa_rerun_internal(const char *id, const char *new_id, Interval *timeout, Oid caller);
extern char *dasa_invoke_at(const char *name, Jsonb *args, const char *id, Interval *timeout,
							Jsonb *tags, Oid caller, TimestampTz start_at, int priority);
extern void dasa_check_replay_of(DasaContext *c, const char *id, const char *recorded,
								 const char *function);
extern void dasa_check_replay(DasaContext *c, const char *id, const char *function);
extern void dasa_check_may_call(Oid proc, Oid role, const char *name);
extern struct HTAB *dasa_persist_created(DasaContext *c, struct HTAB *waited_on);
extern void dasa_write_unwritten(DasaContext *c);
extern void dasa_check_unwritten(DasaContext *c);
extern bool dasa_unwritten_must_write(void);
extern void dasa_unwritten_reset(void);
extern void dasa_write_unwritten_but(DasaContext *c, DasaCreated *spared);
extern bool dasa_inline_child_id_free(const DasaCreated *made);
extern bool dasa_children_ids_free(DasaCreated **children, int n);
extern bool dasa_write_settled_child(DasaContext *c, DasaCreated *made, Jsonb *value);

/* registry.c: dasa.functions */
typedef struct DasaRegistration
{
	const char *name;
	Oid			proc;			/* in-database */
	const char *queue;			/* external (then proc is InvalidOid) */
	Oid			owner;
	int			max_attempts;
	Interval   *initial_backoff;
	Interval   *max_backoff;
	double		jitter;
	Interval   *timeout;		/* the invocation's deadline, from its start */
	Interval   *attempt_timeout;	/* one attempt's */
	int			max_running;	/* at most so many at once; 0: no limit */
} DasaRegistration;

/* origin.c: where this database's dasa state was recorded (copies, restores) */
typedef enum DasaOriginState
{
	DASA_ORIGIN_HOME,			/* recorded here: run */
	DASA_ORIGIN_PAUSED,			/* a copy with unfinished invocations: wait to be resumed */
	DASA_ORIGIN_FOREIGN,		/* copied, restored or upgraded from elsewhere: not yet taken over */
} DasaOriginState;

extern DasaOriginState dasa_origin_state(char **from);
extern DasaOriginState dasa_origin_take_over(char **from, int64 *unfinished);
extern bool dasa_origin_runnable(void);
extern bool dasa_origin_resume(void);
extern int64 dasa_sessions_started_before(TimestampTz since);

/* external.c: tasks carried out by workers outside the database */
extern char *dasa_queue_channel(const char *queue);
extern DasaRows dasa_external_claim(const char *queue, const char *worker, int max,
									Interval *lease, bool bind_session, Oid role);
extern int	dasa_external_heartbeat(const char *worker, Oid role);
extern DasaRows dasa_external_complete(const char *id, int64 version, Jsonb *value, Oid role);
extern int	dasa_external_complete_all(int n, char **ids, int64 *versions, Jsonb **values, Oid role);
extern DasaRows dasa_external_fail(const char *id, int64 version, ErrorData *error, bool retry,
								   Oid role);
extern void dasa_external_release(const char *id, int64 version, Oid role);
extern void dasa_external_enter(const char *id, int64 version, Oid role);
extern int	dasa_external_release_lost(TimestampTz now);
extern void dasa_external_notify_due(TimestampTz after, TimestampTz now);

/* procedures.c: a registration's procedure, named by its signature */
extern char *dasa_procedure_signature(Oid proc);
extern Oid	dasa_procedure_resolve(const char *signature);

typedef struct DasaLookup
{
	Oid			proc;			/* in-database: the procedure; InvalidOid if external */
	char	   *queue;			/* external: its queue; NULL if in-database */
	Oid			owner;
	Interval	timeout;
	Interval	attempt_timeout;
	int			max_running;	/* 0: no limit */
} DasaLookup;

extern bool dasa_registry_lookup(const char *name, DasaLookup *out);
extern void dasa_check_may_invoke(const char *name, Oid caller, DasaLookup *fn);
extern void dasa_registry_check_queue(const char *queue, const char *except_function, Oid role);
extern void dasa_registry_check_owner(const char *name, Oid caller);
extern DasaRows dasa_registry_upsert(const DasaRegistration *r);
extern bool dasa_registry_delete(const char *name);

/* sweep.c */
extern int	dasa_sweep_expired(TimestampTz now, int batch);
extern TimestampTz dasa_next_deadline(TimestampTz now, TimestampTz until);

/* cron.c: cron expressions */
typedef struct DasaCron
{
	uint64		minutes;		/* bit n: minute n matches */
	uint32		hours;
	uint32		days;			/* of the month, bits 1 to 31 */
	uint32		months;			/* bits 1 to 12 */
	uint32		weekdays;		/* bits 0 (Sunday) to 6 */
	bool		any_day;		/* the day-of-month field starts with '*' */
	bool		any_weekday;	/* the day-of-week field starts with '*' */
	int			every_seconds;	/* > 0: the 'N seconds' form */
} DasaCron;

extern void dasa_cron_parse(const char *text, DasaCron *cron);
extern TimestampTz dasa_cron_next(const DasaCron *cron, TimestampTz after, pg_tz *tz);
extern pg_tz *dasa_time_zone(const char *name);

/* schedules.c */
typedef struct DasaSchedule
{
	char	   *name;
	char	   *cron;
	char	   *time_zone;
	char	   *function;
	Jsonb	   *args;
	Interval   *timeout;		/* NULL: the function's */
	char	   *promise_id;		/* the template of each firing's id */
	Jsonb	   *tags;
	Oid			owner;
} DasaSchedule;

extern void dasa_schedule_check_owner(const char *name, Oid caller);
extern DasaRows dasa_schedule_upsert(const DasaSchedule *s, TimestampTz next_run_at);
extern bool dasa_schedule_delete(const char *name, Oid caller);
extern char *dasa_schedule_promise_id(const char *template, const char *name, TimestampTz at,
									  bool *timed);
extern int	dasa_schedules_fire(TimestampTz now, int batch);
extern TimestampTz dasa_schedules_next(void);

/* retention.c */
typedef struct DasaRetention
{
	TimestampTz cutoff;			/* trees whose root settled before it go */
	Oid			role;			/* only trees it may reach; InvalidOid: all */
	int			max_rows;		/* most promise rows one step removes; 0: no bound */
	TimestampTz after_at;		/* where the walk over settled roots is */
	char		after_id[DASA_MAX_ID_BYTES + 1];
	int64		removed;		/* promise rows removed so far */
	bool		done;			/* the walk reached the end */
} DasaRetention;

extern void dasa_retention_start(DasaRetention *r, TimestampTz cutoff, Oid role, int max_rows);
extern void dasa_retention_step(DasaRetention *r, int max_roots);
extern void dasa_holds_keep(const char *task_id, List *promise_ids);

#endif							/* DASA_CORE_H */
