/*
 * tasks.c: the task lifecycle.
 *
 * A task is the schedulable part of an invocation (same id as its promise):
 * enqueued pending with the invocation, claimed by locking it (FOR UPDATE
 * SKIP LOCKED: the row lock is the claim, so a crash leaves nothing
 * claimed), completed when its promise settles, retried with exponential
 * backoff after a failed attempt or rejected when attempts run out, and
 * ended when its promise is cancelled or times out. Completions and retries
 * are fenced by the version the claim saw: a writer holding a stale claim
 * changes nothing. Suspension and resumption live in suspension.c.
 */
#include "core/core.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "utils/builtins.h"

/* A task with what running it needs (its promise p, its registration f). */
#define TASK_SELECT \
	"SELECT t.id, t.function, t.attempt, t.version, t.crashes, t.run_at, p.state = 'pending' AS promise_pending," \
	"  p.param AS args, p.timeout_at, p.root_id, p.ctid AS promise_tid, p.owner::oid AS run_as," \
	"  f.name IS NOT NULL AS registered, f.proc," \
	"  f.max_attempts, extract(epoch FROM f.initial_backoff)::float8 * 1000 AS initial_backoff_ms," \
	"  extract(epoch FROM f.max_backoff)::float8 * 1000 AS max_backoff_ms, f.jitter," \
	"  extract(epoch FROM f.attempt_timeout)::float8 * 1000 AS timeout_ms," \
	"  t.state::text AS task_state, t.queue, f.owner::oid AS function_owner," \
	"  coalesce(f.max_running, 0) AS max_running " \
	"FROM dasa.tasks t " \
	"JOIN dasa.promises p ON p.id = t.id " \
	"LEFT JOIN dasa.functions f ON f.name = t.function "
#define TASK_COLUMNS \
	"id", "function", "attempt", "version", "crashes", "run_at", "promise_pending", "args", "timeout_at", \
	"root_id", "promise_tid", "run_as", "registered", "proc", "max_attempts", \
	"initial_backoff_ms", "max_backoff_ms", "jitter", "timeout_ms", "task_state", "queue", \
	"function_owner", "max_running"

/*
 * Claim up to $2 tasks due by $1, reading the queue from the floor $3 on
 * (ipc/claim_floor.c). Their promises are share-locked: the timeout sweep
 * passes them by, and a cancellation does not wait for the attempt (the
 * attempt's hold then fails). A task whose promise the sweep holds right
 * now comes back with promise_locked false: claimed, but not to be run.
 * Promises and registrations are probed row by row (OFFSET 0 keeps the
 * probes apart): a plan saved while the tables were empty would otherwise
 * read all of dasa.promises for every task.
 */
#define CLAIM_SELECT \
	"SELECT t.id, t.function, t.attempt, t.version, t.crashes, t.run_at, p.state = 'pending' AS promise_pending," \
	"  p.param AS args, p.timeout_at, p.root_id, p.tid AS promise_tid, p.owner::oid AS run_as," \
	"  f.name IS NOT NULL AS registered, f.proc," \
	"  f.max_attempts, extract(epoch FROM f.initial_backoff)::float8 * 1000 AS initial_backoff_ms," \
	"  extract(epoch FROM f.max_backoff)::float8 * 1000 AS max_backoff_ms, f.jitter," \
	"  extract(epoch FROM f.attempt_timeout)::float8 * 1000 AS timeout_ms," \
	"  t.state::text AS task_state, t.queue, f.owner::oid AS function_owner," \
	"  coalesce(f.max_running, 0) AS max_running, p.id IS NOT NULL AS promise_locked "
#define CLAIM_PROBES \
	"LEFT JOIN LATERAL (SELECT x.id, x.state, x.param, x.timeout_at, x.root_id, x.owner, x.ctid AS tid" \
	"  FROM dasa.promises x WHERE x.id = t.id OFFSET 0 FOR KEY SHARE SKIP LOCKED) p ON true " \
	"LEFT JOIN LATERAL (SELECT * FROM dasa.functions y WHERE y.name = t.function OFFSET 0) f ON true "
#define CLAIM_SQL \
	CLAIM_SELECT \
	"FROM (SELECT * FROM dasa.tasks" \
	"  WHERE state = 'pending' AND queue IS NULL AND NOT limited AND run_at <= $1 AND run_at >= $3" \
	"    AND function <> ALL($4)" \
	"  ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED) t " \
	CLAIM_PROBES \
	"ORDER BY t.run_at"
static DasaStatement claim_tasks = {
	.since = "0.10.0",
	.sql = CLAIM_SQL,
	.args = {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, TEXTARRAYOID},
	.columns = {TASK_COLUMNS, "promise_locked"},
};

/*
 * The same for the tasks invoked with a priority (above 0): up to $2 due by
 * $1, highest first, through their own small index (tasks_due_priority).
 * They are claimed, and run, before the others.
 */
static DasaStatement claim_priority_tasks = {
	.since = "0.10.0",
	.sql = CLAIM_SELECT
	"FROM (SELECT * FROM dasa.tasks"
	"  WHERE state = 'pending' AND queue IS NULL AND priority > 0 AND NOT limited AND run_at <= $1"
	"    AND function <> ALL($4)"
	"  ORDER BY priority DESC, run_at LIMIT $2 FOR UPDATE SKIP LOCKED) t "
	CLAIM_PROBES
	"ORDER BY t.priority DESC, t.run_at",
	.args = {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, TEXTARRAYOID},
	.columns = {TASK_COLUMNS, "promise_locked"},
};

/*
 * The same for the tasks of limited functions (registered with max_running):
 * up to $2 due by $1, through their own index (tasks_limited_due), so that
 * other claims never step over a backlog waiting for its turn.
 */
static DasaStatement claim_limited_tasks = {
	.since = "0.10.0",
	.sql = CLAIM_SELECT
	"FROM (SELECT * FROM dasa.tasks"
	"  WHERE state = 'pending' AND queue IS NULL AND limited AND run_at <= $1 AND function <> ALL($4)"
	"  ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED) t "
	CLAIM_PROBES
	"ORDER BY t.run_at",
	.args = {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, TEXTARRAYOID},
	.columns = {TASK_COLUMNS, "promise_locked"},
};

/* The claim's plan, as it runs (with its buffers): dasa._explain_claim(). */
static DasaStatement explain_claim = {
	.since = "0.10.0",
	.sql = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " CLAIM_SQL,
	.args = {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, TEXTARRAYOID},
	.columns = {"QUERY PLAN"},
};

/*
 * The pending task $1, locked (to count an attempt that crashed); waits for
 * an executor that runs it right now, so that the count is never skipped.
 */
static DasaStatement crashed_task = {
	.since = "0.9.0",
	.sql = TASK_SELECT "WHERE t.id = $1 AND t.state = 'pending' FOR UPDATE OF t",
	.args = {TEXTOID},
	.columns = {TASK_COLUMNS},
};

/* Task $1, locked. */
static DasaStatement task_by_id = {
	.since = "0.9.0",
	.sql = TASK_SELECT "WHERE t.id = $1 FOR UPDATE OF t",
	.args = {TEXTOID},
	.columns = {TASK_COLUMNS},
};

static DasaStatement count_crash = {
	.sql = "UPDATE dasa.tasks SET crashes = crashes + 1 WHERE id = $1",
	.args = {TEXTOID},
};

/* When the next pending task after $1 falls due (each queue read through its own index). */
static DasaStatement next_due = {
	.since = "0.10.0",
	.sql = "SELECT least((SELECT min(run_at) FROM dasa.tasks"
	"    WHERE state = 'pending' AND queue IS NULL AND NOT limited AND run_at > $1),"
	"  (SELECT min(run_at) FROM dasa.tasks WHERE state = 'pending' AND queue IS NULL AND limited AND run_at > $1))"
	"  AS next",
	.args = {TIMESTAMPTZOID},
	.columns = {"next"},
};

/*
 * Complete the tasks $1 after $2 attempts each, if their version is still
 * $3; their last attempts started at $5 (-infinity: none ran now) in
 * executor $6 and ended at $4. (t.id = ANY($1) makes even a plan saved
 * while the table was empty look the tasks up by key, as in the statements
 * below.)
 */
static DasaStatement complete_tasks = {
	.since = "0.9.0",
	.sql = "UPDATE dasa.tasks t SET state = 'completed', attempt = v.attempt, completed_at = v.ended,"
	"  started_at = CASE WHEN v.started = '-infinity' THEN t.started_at ELSE v.started END,"
	"  executor_pid = CASE WHEN v.started = '-infinity' THEN t.executor_pid ELSE $6 END "
	"FROM unnest($1::text[], $2::int[], $3::bigint[], $5::timestamptz[], $4::timestamptz[])"
	"  AS v(id, attempt, version, started, ended) "
	"WHERE t.id = ANY($1) AND t.id = v.id AND t.version = v.version",
	.args = {TEXTARRAYOID, INT4ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, INT4OID},
};

/* Retry task $1 at $3 after $2 attempts, if its version is still $4 (the last started at $5 in executor $6). */
static DasaStatement retry_task = {
	.since = "0.9.0",
	.sql = "UPDATE dasa.tasks SET attempt = $2, run_at = $3, state = 'pending', version = version + 1,"
	"  worker = NULL, claimed_at = NULL, lease = NULL,"
	"  started_at = coalesce($5, started_at), executor_pid = CASE WHEN $5 IS NULL THEN executor_pid ELSE $6 END "
	"WHERE id = $1 AND version = $4",
	.args = {TEXTOID, INT4OID, TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID, INT4OID},
};

/* Record a failed attempt. */
static DasaStatement record_attempt = {
	.sql = "INSERT INTO dasa.attempts (task_id, attempt, sqlstate, message, detail, failed_at, owner) "
	"VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (task_id, attempt) DO UPDATE "
	"SET sqlstate = excluded.sqlstate, message = excluded.message, "
	"detail = excluded.detail, failed_at = excluded.failed_at",
	.args = {TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, OIDOID},
};

/*
 * End the tasks of the promises $1 (cancelled or timed out) with their
 * callbacks. A task an executor holds right now is skipped: that executor
 * finds the promise settled and ends it itself. The locked ids are handed
 * on as arrays, never joined: a join planned for a handful of rows would
 * compare every pair when a whole tree of 20,000 ends at once.
 */
static DasaStatement end_tasks = {
	.sql = "WITH locked AS ("
	"  SELECT id FROM dasa.tasks WHERE id = ANY($1) AND state IN ('pending', 'suspended', 'claimed')"
	"  FOR UPDATE SKIP LOCKED),"
	" ended AS ("
	"  UPDATE dasa.tasks SET state = 'completed', completed_at = $2"
	"  WHERE id = ANY(ARRAY(SELECT id FROM locked)) RETURNING id) "
	"DELETE FROM dasa.callbacks WHERE task_id = ANY(ARRAY(SELECT id FROM ended))",
	.args = {TEXTARRAYOID, TIMESTAMPTZOID},
};

/* Copy claimed row i into task (in the current memory context). */
static void
read_task(const DasaRows *rows, uint64 i, DasaTask *task)
{
	bool		isnull;
	Jsonb	   *args = dasa_get_jsonb_copy(rows, i, "args");

	memset(task, 0, sizeof(*task));
	task->id = dasa_get_text(rows, i, "id");
	task->function = dasa_get_text(rows, i, "function");
	task->attempt = dasa_get_int32(rows, i, "attempt");
	task->version = dasa_get_int64(rows, i, "version");
	task->crashes = dasa_get_int32(rows, i, "crashes");
	task->run_at = dasa_get_timestamp(rows, i, "run_at");
	task->promise_pending = dasa_get_bool(rows, i, "promise_pending");
	task->args = args ? args : DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	task->timeout_at = dasa_get_timestamp(rows, i, "timeout_at");
	task->root_id = dasa_get_text(rows, i, "root_id");
	task->promise_tid = *(ItemPointer) DatumGetPointer(dasa_get(rows, i, "promise_tid", &isnull));
	task->run_as = DatumGetObjectId(dasa_get(rows, i, "run_as", &isnull));
	task->registered = dasa_get_bool(rows, i, "registered");
	task->state = dasa_get_text(rows, i, "task_state");
	(void) dasa_get(rows, i, "queue", &isnull);
	task->queue = isnull ? NULL : dasa_get_text(rows, i, "queue");
	if (!task->registered)
		return;
	task->function_owner = DatumGetObjectId(dasa_get(rows, i, "function_owner", &isnull));
	(void) dasa_get(rows, i, "proc", &isnull);
	task->proc = isnull ? InvalidOid : dasa_procedure_resolve(dasa_get_text(rows, i, "proc"));
	task->max_attempts = dasa_get_int32(rows, i, "max_attempts");
	task->initial_backoff_ms = dasa_get_float8(rows, i, "initial_backoff_ms");
	task->max_backoff_ms = dasa_get_float8(rows, i, "max_backoff_ms");
	task->jitter = dasa_get_float8(rows, i, "jitter");
	task->timeout_ms = dasa_get_float8(rows, i, "timeout_ms");
	task->max_running = dasa_get_int32(rows, i, "max_running");
}

/* Read the claimed rows into tasks from n on; the new count. One left pending must be found again after commit. */
static int
keep_claimed(const DasaRows *claimed, DasaTask *tasks, int n)
{
	for (uint64 i = 0; i < claimed->n; i++)
	{
		if (dasa_get_bool(claimed, i, "promise_locked"))
			read_task(claimed, i, &tasks[n++]);
		else
			dasa_task_due_at_commit(dasa_get_timestamp(claimed, i, "run_at"));
	}
	return n;
}

/*
 * How many tasks of limited functions one claim takes at most: their
 * attempts take turns with everything else, a few per batch.
 */
#define LIMITED_PER_CLAIM 10

/* Claim up to limit due tasks of limited functions (see claim_limited_tasks); returns how many. */
static int
claim_limited(TimestampTz now, int limit, List *passed_by, DasaTask **tasks)
{
	Datum		args[4] = {TimestampTzGetDatum(now), Int32GetDatum(Min(limit, LIMITED_PER_CLAIM)),
		TimestampTzGetDatum(0), dasa_text_array_of_list(passed_by)};
	DasaRows	claimed = dasa_run(&claim_limited_tasks, args, NULL, 0);

	*tasks = palloc0(Max(claimed.n, 1) * sizeof(DasaTask));
	return keep_claimed(&claimed, *tasks, 0);
}

/*
 * Claim up to limit due tasks of the other functions, those with a priority
 * first, for executor claimer (its index); returns how many. The floor
 * rises to the first one taken: the caller lowers it again for any of them
 * it leaves pending (dasa_claim_floor_lower, after its commit).
 */
static int
claim_others(int claimer, TimestampTz now, int limit, List *passed_by, DasaTask **tasks)
{
	TimestampTz floor = dasa_claim_floor_read(claimer);
	Datum		args[4] = {TimestampTzGetDatum(now), Int32GetDatum(limit), TimestampTzGetDatum(floor),
	dasa_text_array_of_list(passed_by)};
	DasaRows	first = dasa_run(&claim_priority_tasks, args, NULL, 0);
	DasaRows	claimed = {0};
	int			n = 0;

	if ((int) first.n < limit)
	{
		args[1] = Int32GetDatum(limit - (int) first.n);
		claimed = dasa_run(&claim_tasks, args, NULL, 0);
	}
	*tasks = palloc0(Max(first.n + claimed.n, 1) * sizeof(DasaTask));
	n = keep_claimed(&first, *tasks, n);
	n = keep_claimed(&claimed, *tasks, n);
	/* (Tasks passed by stay below the floor: it may rise only past none.) */
	if (first.n < (uint64) limit && passed_by == NIL)
		dasa_claim_floor_raise(claimer, claimed.n > 0 ? dasa_get_timestamp(&claimed, 0, "run_at") : now);
	return n;
}

/*
 * Claim up to limit due tasks (locked until commit) for executor claimer;
 * returns how many. Functions in passed_by (at their limit of invocations
 * running at once) are passed by. Limited functions' tasks and the others
 * are claimed apart, limited_first saying which to try first: the other
 * kind is claimed only if there is none of the first.
 */
int
dasa_tasks_claim(int claimer, TimestampTz now, int limit, List *passed_by, bool limited_first,
				 DasaTask **tasks)
{
	int			n;

	if (limited_first && (n = claim_limited(now, limit, passed_by, tasks)) > 0)
		return n;
	if ((n = claim_others(claimer, now, limit, passed_by, tasks)) > 0 || limited_first)
		return n;
	return claim_limited(now, limit, passed_by, tasks);
}

/* The claim's plan with the buffers it reads, run now (its locks last until commit). */
List *
dasa_tasks_explain_claim(int limit)
{
	TimestampTz floor = dasa_claim_floor_peek();
	Datum		args[4] = {TimestampTzGetDatum(GetCurrentTimestamp()), Int32GetDatum(limit),
	TimestampTzGetDatum(floor), dasa_text_array_of_list(NIL)};
	DasaRows	plan = dasa_run(&explain_claim, args, NULL, 0);
	List	   *lines = NIL;

	for (uint64 i = 0; i < plan.n; i++)
		lines = lappend(lines, dasa_get_text(&plan, i, "QUERY PLAN"));
	return lines;
}

/* Task id, locked until the end of the transaction, into task; false if there is none. */
bool
dasa_task_load(const char *id, DasaTask *task)
{
	Datum		args[1] = {CStringGetTextDatum(id)};
	DasaRows	found = dasa_run(&task_by_id, args, NULL, 1);

	if (found.n == 0)
		return false;
	memset(task, 0, sizeof(*task));
	read_task(&found, 0, task);
	if (task->queue == NULL && strcmp(task->state, "pending") == 0)
		dasa_tasks_locked_here();
	return true;
}

/* When the next pending task falls due after now; 0 if none. */
TimestampTz
dasa_tasks_next_due(TimestampTz now)
{
	Datum		args[1] = {TimestampTzGetDatum(now)};
	DasaRows	rows = dasa_run(&next_due, args, NULL, 1);

	return dasa_get_timestamp(&rows, 0, "next");
}

/*
 * Complete n tasks after the given attempts, fenced by the versions their
 * claims saw; started: when each one's last attempt started (0: none ran
 * now); ended: when each ended (NULL: now).
 */
void
dasa_tasks_complete(int n, char **ids, int *attempts, int64 *versions, TimestampTz *started,
					TimestampTz *ended)
{
	TimestampTz *starts = palloc(Max(n, 1) * sizeof(TimestampTz));
	TimestampTz *ends = palloc(Max(n, 1) * sizeof(TimestampTz));
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[6];

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
	{
		starts[i] = started[i] != 0 ? started[i] : DT_NOBEGIN;
		ends[i] = ended != NULL ? ended[i] : now;
	}
	args[0] = dasa_text_array(ids, n);
	args[1] = dasa_int4_array(attempts, n);
	args[2] = dasa_int8_array(versions, n);
	args[3] = dasa_timestamptz_array(ends, n);
	args[4] = dasa_timestamptz_array(starts, n);
	args[5] = Int32GetDatum(MyProcPid);
	(void) dasa_run(&complete_tasks, args, NULL, 0);
}

/* Run retry_task for task: due at run_at after attempts attempts. */
static void
retry(DasaTask *task, int attempts, TimestampTz run_at)
{
	Datum		args[6] = {CStringGetTextDatum(task->id), Int32GetDatum(attempts),
		TimestampTzGetDatum(run_at), Int64GetDatum(task->version),
	TimestampTzGetDatum(task->started_at), Int32GetDatum(MyProcPid)};
	char		nulls[6] = {' ', ' ', ' ', ' ', task->started_at != 0 ? ' ' : 'n', ' '};

	(void) dasa_run(&retry_task, args, nulls, 0);
}

/* End the tasks of the promises in ids (settled by cancellation or timeout). */
void
dasa_tasks_end(List *ids)
{
	Datum		args[2] = {dasa_text_array_of_list(ids), TimestampTzGetDatum(GetCurrentTimestamp())};

	dasa_tasks_locked_here();
	(void) dasa_run(&end_tasks, args, NULL, 0);
}

/* An ErrorData for failures dasa detects itself. */
ErrorData *
dasa_make_error(int sqlerrcode, const char *message, const char *detail)
{
	ErrorData  *e = palloc0(sizeof(ErrorData));

	e->elevel = ERROR;
	e->sqlerrcode = sqlerrcode;
	e->message = pstrdup(message);
	e->detail = detail ? pstrdup(detail) : NULL;
	return e;
}

static void
insert_attempt(DasaTask *task, int attempt, ErrorData *error, TimestampTz now)
{
	Datum		args[7] = {CStringGetTextDatum(task->id), Int32GetDatum(attempt),
		CStringGetTextDatum(unpack_sql_state(error->sqlerrcode)),
		CStringGetTextDatum(error->message ? error->message : ""),
		error->detail ? CStringGetTextDatum(error->detail) : (Datum) 0,
	TimestampTzGetDatum(now), ObjectIdGetDatum(task->run_as)};
	char		nulls[7] = {' ', ' ', ' ', ' ', error->detail ? ' ' : 'n', ' ', ' '};

	(void) dasa_run(&record_attempt, args, nulls, 0);
}

/* Backoff before the next attempt: exponential, capped, with jitter. */
static double
backoff_ms(DasaTask *task, int attempts)
{
	double		ms = task->initial_backoff_ms * pow(2.0, Min(attempts - 1, 60));

	ms = Min(ms, task->max_backoff_ms);
	ms *= 1.0 + task->jitter * (2.0 * pg_prng_double(&pg_global_prng_state) - 1.0);
	return Max(ms, 0.0);
}

/*
 * An attempt of task failed: record it, then retry later, or reject the
 * promise with the error and complete the task (attempts exhausted, the
 * deadline would come first, or a failure no retry can mend). True if the
 * task ended.
 */
bool
dasa_task_fail(DasaTask *task, ErrorData *error, bool final)
{
	TimestampTz now = GetCurrentTimestamp();
	int			attempts = task->attempt + 1;
	TimestampTz next = now + (TimestampTz) (backoff_ms(task, attempts) * 1000.0);

	dasa_bound_error(error);
	insert_attempt(task, attempts, error, now);
	if (final || attempts >= task->max_attempts || next >= task->timeout_at)
	{
		Jsonb	   *values[1] = {dasa_rejection_value(error, attempts)};

		(void) dasa_settle(1, &task->id, "rejected", values, true);
		dasa_tasks_complete(1, &task->id, &attempts, &task->version, &task->started_at, NULL);
		return true;
	}
	retry(task, attempts, next);
	if (task->queue == NULL)
		dasa_task_due_at_commit(next);
	return false;
}

/* Make task due again at once, its claim ended without spending an attempt. */
void
dasa_task_release(DasaTask *task)
{
	TimestampTz now = GetCurrentTimestamp();

	retry(task, task->attempt, now);
	if (task->queue != NULL)
		dasa_wake_at_commit_external();
	else
		dasa_task_due_at_commit(now);
}

/*
 * The attempt of task id died with its server process (crashed, killed, or
 * ended by its executor because it outlived its timeout: overran):
 * count it as a failed attempt of that invocation alone, retried by its
 * policy or rejected when attempts run out. From then on it runs alone in a
 * batch of its own. Nothing happens if the task is no longer pending.
 */
void
dasa_task_crashed(const char *id, bool overran)
{
	Datum		args[1] = {CStringGetTextDatum(id)};
	DasaRows	found = dasa_run(&crashed_task, args, NULL, 1);
	DasaTask	task;

	if (found.n == 0)
		return;
	dasa_tasks_locked_here();
	memset(&task, 0, sizeof(task));
	read_task(&found, 0, &task);
	if (!task.promise_pending || !task.registered)
		return;
	(void) dasa_run(&count_crash, args, NULL, 0);
	(void) dasa_task_fail(&task, overran ?
						  dasa_make_error(ERRCODE_QUERY_CANCELED,
										  "the attempt outlived its timeout and its executor ended it",
										  psprintf("Attempt %d of \"%s\" went on past its timeout and the grace after it, ignoring the cancel.",
												   task.attempt + 1, task.id)) :
						  dasa_make_error(ERRCODE_DASA_ATTEMPT_CRASHED,
										  "the server process running this attempt crashed or was killed",
										  psprintf("Attempt %d of \"%s\" ended with its process; it will run alone from now on.",
												   task.attempt + 1, task.id)),
						  false);
}
