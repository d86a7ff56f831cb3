/*
 * external.c: tasks carried out by workers outside the database.
 *
 * A worker claims due tasks of a queue (FOR UPDATE SKIP LOCKED; each claim
 * marks the task claimed and bumps its version, the fencing token), and
 * completes or fails each with the version it got: a worker whose claim was
 * lost (its lease ran out, its session ended) and re-made by another can
 * never overwrite the newer attempt. A claim lasts its lease from the later
 * of the claim and the worker's last heartbeat; a heartbeat rewrites the
 * worker's one narrow row, never the tasks. The dasa worker releases lost
 * claims (a failed attempt each) and tells each queue's listeners, after
 * the commit that made tasks due, which ids are there.
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "common/md5.h"
#include "access/transam.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/builtins.h"

/* Most ids one notification names (the payload stays far below its 8,000-byte limit). */
#define NOTIFY_IDS 50

/*
 * Claim up to $3 due tasks of queue $1 at $2 for worker $4, with lease $5.
 * The arguments are read by a probe per task: a generic plan, which must
 * guess how many tasks $3 allows, would otherwise merge-join the whole
 * promises table.
 */
static DasaStatement claim_external = {
	.since = "0.5.0",
	.sql = "WITH due AS ("
	"  SELECT t.id FROM dasa.tasks t"
	"  WHERE t.state = 'pending' AND t.queue = $1 AND t.run_at <= $2"
	"  ORDER BY t.run_at LIMIT $3 FOR UPDATE SKIP LOCKED),"
	" claimed AS ("
	"  UPDATE dasa.tasks t SET state = 'claimed', version = t.version + 1, worker = $4,"
	"    claimed_at = $2, lease = $5"
	"  WHERE t.id = ANY(ARRAY(SELECT id FROM due))"
	"  RETURNING t.id, t.function, t.attempt + 1 AS attempt, t.version) "
	"SELECT c.id, c.function,"
	"  coalesce((SELECT p.param FROM dasa.promises p WHERE p.id = c.id), '{}') AS args,"
	"  c.attempt, c.version "
	"FROM claimed c ORDER BY c.id",
	.args = {TEXTOID, TIMESTAMPTZOID, INT4OID, TEXTOID, INTERVALOID},
	.columns = {"id", "function", "args", "attempt", "version"},
};

/*
 * Worker $1 of role $2 was seen at $3 on session ($4, $5) (NULLs: not bound
 * to it; $6: keep an unbound worker unbound); returns its owner.
 */
static DasaStatement see_worker = {
	.since = "0.5.0",
	.sql = "INSERT INTO dasa.workers AS w (name, owner, heartbeat_at, backend_pid, backend_start) "
	"VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,"
	"  backend_pid = CASE WHEN $6 AND w.backend_pid IS NULL THEN NULL ELSE excluded.backend_pid END,"
	"  backend_start = CASE WHEN $6 AND w.backend_pid IS NULL THEN NULL ELSE excluded.backend_start END "
	"RETURNING w.owner::oid AS owner",
	.args = {TEXTOID, OIDOID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, BOOLOID},
	.columns = {"owner"},
};

static DasaStatement count_claims = {
	.since = "0.5.0",
	.sql = "SELECT count(*)::int AS claims FROM dasa.tasks WHERE worker = $1 AND state = 'claimed'",
	.args = {TEXTOID},
	.columns = {"claims"},
};

/*
 * Complete the tasks among ids $1 still claimed at versions $2 (at $3):
 * which, with their place in $1 and the role that owns their queue. Each
 * is found by a probe of its key (a generic plan cannot know how many ids
 * come), then updated by its row's address: a task changed meanwhile (its
 * claim lost) is left alone.
 */
static DasaStatement complete_claims = {
	.since = "0.5.0",
	.sql = "UPDATE dasa.tasks t SET state = 'completed', attempt = t.attempt + 1, completed_at = $3 "
	"FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS v(id, version, i) "
	"CROSS JOIN LATERAL (SELECT x.ctid AS row, x.version, x.state FROM dasa.tasks x"
	"  WHERE x.id = v.id OFFSET 0) found "
	"WHERE t.ctid = found.row AND found.version = v.version AND found.state = 'claimed' "
	"RETURNING t.id, v.i AS i,"
	"  coalesce((SELECT f.owner FROM dasa.functions f WHERE f.name = t.function),"
	"           (SELECT p.owner FROM dasa.promises p WHERE p.id = t.id))::oid AS owner",
	.args = {TEXTARRAYOID, INT8ARRAYOID, TIMESTAMPTZOID},
	.columns = {"id", "i", "owner"},
};

/* Claims lost at $1: the lease ran out, or the worker's session has ended. */
static DasaStatement lost_claims = {
	.since = "0.5.0",
	.sql = "SELECT t.id, greatest(t.claimed_at, w.heartbeat_at) + t.lease <= $1 AS expired "
	"FROM dasa.tasks t LEFT JOIN dasa.workers w ON w.name = t.worker "
	"WHERE t.state = 'claimed' AND (greatest(t.claimed_at, w.heartbeat_at) + t.lease <= $1"
	"  OR (w.backend_pid IS NOT NULL AND NOT EXISTS ("
	"    SELECT FROM pg_catalog.pg_stat_get_activity(w.backend_pid) a"
	"    WHERE a.backend_start = w.backend_start))) "
	"LIMIT 1000",
	.args = {TIMESTAMPTZOID},
	.columns = {"id", "expired"},
};

/* Due external tasks by queue, some ids each. */
static DasaStatement due_by_queue = {
	.since = "0.5.0",
	.sql = "SELECT queue, string_agg(id, ' ' ORDER BY id) AS ids FROM ("
	"  SELECT queue, id, row_number() OVER (PARTITION BY queue ORDER BY run_at) AS n"
	"  FROM dasa.tasks WHERE state = 'pending' AND queue IS NOT NULL AND run_at <= $1 AND run_at > $2) d "
	"WHERE n <= " CppAsString2(NOTIFY_IDS) " GROUP BY queue",
	.args = {TIMESTAMPTZOID, TIMESTAMPTZOID},
	.columns = {"queue", "ids"},
};

/* The channel workers of queue LISTEN on: "dasa_q_" and the MD5 of its name (39 bytes). */
char *
dasa_queue_channel(const char *queue)
{
	char		hex[33];
	const char *errstr = NULL;

	if (!pg_md5_hash(queue, strlen(queue), hex, &errstr))
		elog(ERROR, "could not compute MD5: %s", errstr);
	return psprintf("dasa_q_%s", hex);
}

/*
 * The worker this session last recorded for a claim, and the transaction
 * that did: while that committed, claims under the same name, role and
 * binding have nothing to write. (A worker name is one worker's: another
 * session claiming under it would be bound in its place.)
 */
static struct
{
	char	   *worker;
	Oid			role;
	bool		bind;
	TransactionId xid;
}			last_seen;

static bool
seen_already(const char *worker, Oid role, bool bind)
{
	TransactionId xid = last_seen.xid;

	return last_seen.worker != NULL && strcmp(last_seen.worker, worker) == 0 &&
		last_seen.role == role && last_seen.bind == bind && TransactionIdIsValid(xid) &&
		(TransactionIdIsCurrentTransactionId(xid) || TransactionIdDidCommit(xid));
}

static void
remember_seen(const char *worker, Oid role, bool bind)
{
	if (last_seen.worker != NULL)
		pfree(last_seen.worker);
	last_seen.worker = MemoryContextStrdup(TopMemoryContext, worker);
	last_seen.role = role;
	last_seen.bind = bind;
	last_seen.xid = GetTopTransactionIdIfAny();
}

/*
 * Record worker as seen now on this session (bind: its claims end with this
 * session; else only the lease counts, and a heartbeat keeps it so); error
 * if another role's worker has that name.
 */
static void
see(const char *worker, Oid role, TimestampTz now, bool bind, bool keep_binding)
{
	Datum		args[6] = {CStringGetTextDatum(worker), ObjectIdGetDatum(role),
		TimestampTzGetDatum(now), Int32GetDatum(MyProcPid),
	TimestampTzGetDatum(MyStartTimestamp), BoolGetDatum(keep_binding)};
	char		nulls[6] = {' ', ' ', ' ', bind ? ' ' : 'n', bind ? ' ' : 'n', ' '};
	DasaRows	rows = dasa_run(&see_worker, args, nulls, 1);
	bool		isnull;
	Oid			owner = DatumGetObjectId(dasa_get(&rows, 0, "owner", &isnull));

	if (!dasa_may_access(role, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("worker name \"%s\" is used by role \"%s\"", worker,
						GetUserNameFromId(owner, true) ? GetUserNameFromId(owner, true) : "(dropped)"),
				 errhint("Give each worker a name of its own.")));
}

/* Claim up to max due tasks of queue for worker (run as role); rows: id, function, args, attempt, version. */
DasaRows
dasa_external_claim(const char *queue, const char *worker, int max, Interval *lease,
					bool bind_session, Oid role)
{
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[5] = {CStringGetTextDatum(queue), TimestampTzGetDatum(now),
		Int32GetDatum(max), CStringGetTextDatum(worker), IntervalPGetDatum(lease)};

	dasa_registry_check_queue(queue, "", role);
	if (!seen_already(worker, role, bind_session))
	{
		see(worker, role, now, bind_session, false);
		remember_seen(worker, role, bind_session);
	}
	return dasa_run(&claim_external, args, NULL, 0);
}

/* Extend worker's leases; returns how many tasks it holds. */
int
dasa_external_heartbeat(const char *worker, Oid role)
{
	Datum		args[1] = {CStringGetTextDatum(worker)};
	DasaRows	rows;

	see(worker, role, GetCurrentTimestamp(), true, true);
	rows = dasa_run(&count_claims, args, NULL, 1);
	return dasa_get_int32(&rows, 0, "claims");
}

/*
 * The external task id, locked, as claimed with version; errors unless role
 * may work its queue and the claim is still that one.
 */
static void
load_claimed(const char *id, int64 version, Oid role, DasaTask *task)
{
	if (!dasa_task_load(id, task) || task->queue == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no external task \"%s\"", id),
				 errhint("Complete or fail the tasks dasa.claim returned, with their version.")));
	if (!dasa_may_access(role, task->registered ? task->function_owner : task->run_as))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for the task \"%s\" of queue \"%s\"", id, task->queue),
				 errhint("Working a queue needs the role that registered its functions, or membership in it.")));
	if (task->version != version || strcmp(task->state, "claimed") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DASA_STALE_CLAIM),
				 errmsg("the claim on task \"%s\" with version " INT64_FORMAT " is no longer held", id, version),
				 strcmp(task->state, "completed") == 0 ?
				 errdetail("The task has ended (version " INT64_FORMAT "): its promise was settled, by this claim's completion, a later claim's, a cancellation or its deadline.",
						   task->version) :
				 errdetail("The task is %s at version " INT64_FORMAT ": its lease ran out or its worker's session ended, and it was released%s.",
						   task->state, task->version,
						   strcmp(task->state, "claimed") == 0 ? " and claimed again" : ""),
				 errhint("Drop this attempt's work (roll back): the task runs, or ran, again elsewhere.")));
}

/* Complete the claimed task id (version) with value; returns its promise row. */
DasaRows
dasa_external_complete(const char *id, int64 version, Jsonb *value, Oid role)
{
	DasaTask	task;
	int			attempts;
	DasaRows	promise;

	load_claimed(id, version, role, &task);
	attempts = task.attempt + 1;
	promise = dasa_settle_or_read(id, "resolved", value, task.run_as);
	dasa_tasks_complete(1, &task.id, &attempts, &task.version, &task.started_at, NULL);
	return promise;
}

/*
 * Complete the claimed tasks ids[i] (versions[i]) with values[i] (values
 * NULL: SQL NULL); those no longer held at that version are left alone.
 * Error unless role may work every one's queue (raised after the writes:
 * the error takes them back). Returns how many completed.
 */
int
dasa_external_complete_all(int n, char **ids, int64 *versions, Jsonb **values, Oid role)
{
	Datum		args[3] = {dasa_text_array(ids, n), dasa_int8_array(versions, n),
		TimestampTzGetDatum(GetCurrentTimestamp())};
	DasaRows	done = dasa_run(&complete_claims, args, NULL, 0);
	int			k = (int) done.n;
	char	  **done_ids = palloc(sizeof(char *) * Max(k, 1));
	Jsonb	  **done_values = palloc0(sizeof(Jsonb *) * Max(k, 1));
	Oid			allowed = InvalidOid;

	for (int j = 0; j < k; j++)
	{
		bool		isnull;
		Oid			owner = DatumGetObjectId(dasa_get(&done, j, "owner", &isnull));

		if (owner != allowed && !dasa_may_access(role, owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for the task \"%s\"", dasa_get_text(&done, j, "id")),
					 errhint("Working a queue needs the role that registered its functions, or membership in it.")));
		allowed = owner;
		done_ids[j] = dasa_get_text(&done, j, "id");
		if (values != NULL)
			done_values[j] = values[dasa_get_int64(&done, j, "i") - 1];
	}
	if (k > 0)
		(void) dasa_settle(k, done_ids, "resolved", done_values, true);
	return k;
}

/* Fail the claimed task id (version): retried by its policy unless !retry; returns its promise row. */
DasaRows
dasa_external_fail(const char *id, int64 version, ErrorData *error, bool retry, Oid role)
{
	DasaTask	task;

	load_claimed(id, version, role, &task);
	(void) dasa_task_fail(&task, error, !retry);
	return dasa_promise_select_visible(id, task.run_as);
}

/* Give the claimed task id (version) back, due at once, without spending an attempt. */
void
dasa_external_release(const char *id, int64 version, Oid role)
{
	DasaTask	task;

	load_claimed(id, version, role, &task);
	dasa_task_release(&task);
}

/* Work on the claimed task id (version) in this session: see dasa_context_enter. */
void
dasa_external_enter(const char *id, int64 version, Oid role)
{
	DasaTask	task;

	load_claimed(id, version, role, &task);
	dasa_context_enter(&task);
}

/* Release lost claims as failed attempts; returns how many. */
int
dasa_external_release_lost(TimestampTz now)
{
	Datum		args[1] = {TimestampTzGetDatum(now)};
	DasaRows	lost = dasa_run(&lost_claims, args, NULL, 0);
	int			n = (int) lost.n;
	char	  **ids = palloc(sizeof(char *) * Max(n, 1));
	bool	   *expired = palloc(sizeof(bool) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		ids[i] = dasa_get_text(&lost, i, "id");
		expired[i] = dasa_get_bool(&lost, i, "expired");
	}
	for (int i = 0; i < n; i++)
	{
		DasaTask	task;

		if (!dasa_task_load(ids[i], &task) || strcmp(task.state, "claimed") != 0)
			continue;
		(void) dasa_task_fail(&task, dasa_make_error(ERRCODE_DASA_CLAIM_LOST,
													 expired[i] ? "the worker's lease ran out" :
													 "the worker's session ended",
													 psprintf("Attempt %d of \"%s\" was released: its worker may not complete it.",
															  task.attempt + 1, task.id)),
							  false);
	}
	return n;
}

/*
 * NOTIFY the listeners of each queue with tasks due in (after, now]: the
 * channel is dasa_queue_channel(queue), the payload the ids (space
 * separated), sent when the caller's transaction commits.
 */
void
dasa_external_notify_due(TimestampTz after, TimestampTz now)
{
	Datum		args[2] = {TimestampTzGetDatum(now), TimestampTzGetDatum(after)};
	DasaRows	due = dasa_run(&due_by_queue, args, NULL, 0);

	for (uint64 i = 0; i < due.n; i++)
		Async_Notify(dasa_queue_channel(dasa_get_text(&due, i, "queue")),
					 dasa_get_text(&due, i, "ids"));
}
