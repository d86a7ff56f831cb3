/*
 * suspension.c: suspended tasks and the promises that resume them.
 *
 * A suspending attempt marks each promise it waits on as awaited (an UPDATE,
 * so it also locks the row and reads its current state), adds a callback
 * (promise -> task) for each still pending that is not its own child, and
 * parks its task with a count of settlements it needs. Whoever settles an
 * awaited promise fires its callbacks, and counts it against its parent's
 * task, in the same transaction: the count drops, and at zero the task is
 * due again and an executor is woken at commit. A fan-out of n children so
 * writes no callback rows at all. Because both sides take the promise's row
 * lock, a settlement racing a suspension is always seen by one of them: no
 * wake-up is lost. A parent whose child was awaited by somebody else may be
 * woken early by it; its replay then suspends again on what is pending.
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"

/* Mark the promises $1 awaited (locking their rows); which are pending before their deadline. */
static DasaStatement mark_awaited = {
	.sql = "UPDATE dasa.promises SET awaited = true WHERE id = ANY($1) "
	"RETURNING id, state = 'pending' AND timeout_at > $2 AS pending",
	.args = {TEXTARRAYOID, TIMESTAMPTZOID},
	.columns = {"id", "pending"},
};

/* Mark $1 awaited if it is pending (waiting for a settlement under way). */
static DasaStatement mark_one_awaited = {
	.sql = "UPDATE dasa.promises SET awaited = true WHERE id = $1 AND state = 'pending' RETURNING id",
	.args = {TEXTOID},
	.columns = {"id"},
};

static DasaStatement add_callbacks = {
	.sql = "INSERT INTO dasa.callbacks (promise_id, task_id) SELECT unnest($1::text[]), $2 "
	"ON CONFLICT DO NOTHING",
	.args = {TEXTARRAYOID, TEXTOID},
};

/* Park task $1 until $2 settlements (suspended), or make it due at once ($4 false). */
static DasaStatement park_task = {
	.sql = "UPDATE dasa.tasks SET state = CASE WHEN $4 THEN 'suspended' ELSE 'pending' END::dasa.task_state,"
	"  blocked = $2, run_at = $3, replays = replays + 1 WHERE id = $1",
	.args = {TEXTOID, INT4OID, TIMESTAMPTZOID, BOOLOID},
};

/*
 * Fire the callbacks of the settled promises $1, and count them against
 * their parents' tasks $3 (NULL for a root): which tasks they leave due.
 */
static DasaStatement fire_callbacks = {
	.sql = "WITH fired AS (DELETE FROM dasa.callbacks WHERE promise_id = ANY($1) RETURNING task_id),"
	"  waits AS (SELECT task_id FROM fired UNION ALL SELECT p FROM unnest($3::text[]) p WHERE p IS NOT NULL),"
	"  counts AS (SELECT task_id, count(*) AS n FROM waits GROUP BY task_id) "
	"UPDATE dasa.tasks t SET blocked = t.blocked - c.n,"
	"  state = CASE WHEN t.blocked - c.n <= 0 THEN 'pending' ELSE t.state END::dasa.task_state,"
	"  run_at = CASE WHEN t.blocked - c.n <= 0 THEN $2 ELSE t.run_at END "
	"FROM counts c WHERE t.id = ANY(ARRAY(SELECT task_id FROM counts)) AND t.id = c.task_id"
	"  AND t.state = 'suspended' "
	"RETURNING t.id, t.state = 'pending' AS resumed",
	.args = {TEXTARRAYOID, TIMESTAMPTZOID, TEXTARRAYOID},
	.columns = {"id", "resumed"},
};

/* Drop the remaining callbacks of the resumed tasks $1 (await_any). */
static DasaStatement forget_callbacks = {
	.sql = "DELETE FROM dasa.callbacks WHERE task_id = ANY($1)",
	.args = {TEXTARRAYOID},
};

/*
 * Promises in ids were settled in this transaction and were awaited (parents:
 * their parents' ids, NULL for a root): make the tasks waiting on them due
 * once they have what they need.
 */
void
dasa_callbacks_fire(List *ids, List *parents)
{
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[3] = {dasa_text_array_of_list(ids), TimestampTzGetDatum(now),
	dasa_nullable_text_array_of_list(parents)};
	DasaRows	fired = dasa_run(&fire_callbacks, args, NULL, 0);
	List	   *resumed = NIL;

	for (uint64 i = 0; i < fired.n; i++)
		if (dasa_get_bool(&fired, i, "resumed"))
			resumed = lappend(resumed, dasa_get_text(&fired, i, "id"));
	if (resumed == NIL)
		return;
	/* A task resumed by await_any still has callbacks on the others. */
	args[0] = dasa_text_array_of_list(resumed);
	(void) dasa_run(&forget_callbacks, args, NULL, 0);
	dasa_wake_at_commit_task(now);
}

/*
 * What an attempt suspended on, without repeats: the awaited promises,
 * plus (unless it awaits any) the pending invocations it started, so a
 * fan-out resumes once, not per child. Children an earlier attempt
 * recorded as settled need no waiting. *set gets the ids as a set.
 */
static List *
blocking_set(DasaContext *c, HTAB **set)
{
	List	   *ids = NIL;
	ListCell   *lc;

	*set = dasa_id_table("dasa blocking set", list_length(c->awaited) + list_length(c->created),
						 sizeof(char *));
	foreach(lc, c->awaited)
		if (dasa_idset_add(*set, (char *) lfirst(lc)))
			ids = lappend(ids, lfirst(lc));
	if (c->await_any)
		return ids;
	foreach(lc, c->created)
	{
		DasaCreated *made = lfirst(lc);

		if (made->function != NULL && !(made->recorded && made->settled) &&
			dasa_idset_add(*set, made->id))
			ids = lappend(ids, made->id);
	}
	return ids;
}

/*
 * Suspend the task of an attempt that awaited pending promises: keep what
 * it created, register its callbacks, and make it wait for the settlements
 * it needs (or make it due at once if they happened already). Children
 * written now are pending and written awaited (nobody can settle them
 * before this commits); the others are marked, which locks them and reads
 * their state.
 */
void
dasa_task_suspend(DasaTask *task, DasaContext *c)
{
	TimestampTz now = GetCurrentTimestamp();
	HTAB	   *waited_on;
	List	   *blocking = blocking_set(c, &waited_on);
	HTAB	   *written = dasa_persist_created(c, waited_on);
	List	   *to_mark = NIL;
	List	   *pending = NIL;
	List	   *others = NIL;	/* pending, and not its children: called back */
	DasaRows	marked;
	Datum		args[4];
	int			needed;
	ListCell   *lc;

	foreach(lc, blocking)
	{
		if (dasa_idset_contains(written, (char *) lfirst(lc)))
			pending = lappend(pending, lfirst(lc));
		else
			to_mark = lappend(to_mark, lfirst(lc));
	}
	args[0] = dasa_text_array_of_list(to_mark);
	args[1] = TimestampTzGetDatum(now);
	marked = to_mark != NIL ? dasa_run(&mark_awaited, args, NULL, 0) : (DasaRows) {0};
	for (uint64 i = 0; i < marked.n; i++)
	{
		char	   *id = dasa_get_text(&marked, i, "id");

		if (!dasa_get_bool(&marked, i, "pending"))
			continue;
		pending = lappend(pending, id);
		/* An earlier attempt's child counts against this task when it settles. */
		if (dasa_recorded_child(c, id) == NULL)
			others = lappend(others, id);
	}
	/* await_any needs one settlement, unless one happened already */
	if (c->await_any)
		needed = list_length(pending) == list_length(blocking) ? 1 : 0;
	else
		needed = list_length(pending);
	if (needed > 0 && others != NIL)
	{
		Datum		cb_args[2] = {dasa_text_array_of_list(others), CStringGetTextDatum(task->id)};

		(void) dasa_run(&add_callbacks, cb_args, NULL, 0);
	}
	args[0] = CStringGetTextDatum(task->id);
	args[1] = Int32GetDatum(needed);
	args[2] = TimestampTzGetDatum(now);
	args[3] = BoolGetDatum(needed > 0);
	(void) dasa_run(&park_task, args, NULL, 0);
	if (needed == 0)
		dasa_wake_at_commit_task(now);
}

/* Mark promise id awaited (by a listener); false if it is not pending. */
bool
dasa_promise_mark_awaited(const char *id)
{
	Datum		args[1] = {CStringGetTextDatum(id)};

	return dasa_run(&mark_one_awaited, args, NULL, 1).n == 1;
}
