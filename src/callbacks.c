/*
 * callbacks.c: suspended tasks and the promises that wake them.
 *
 * A suspending attempt marks each promise it waits on as awaited (an UPDATE,
 * so it also locks the row and reads its current state), adds a callback
 * (promise -> task) for each still pending, and parks its task with a count
 * of settlements it needs. Whoever settles an awaited promise fires its
 * callbacks in the same transaction: the count drops, and at zero the task
 * is due again and an executor is woken at commit. Because both sides take
 * the promise's row lock, a settlement racing a suspension is always seen
 * by one of them: no wake-up is lost.
 */
#include "dasa.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

static SPIPlanPtr mark_plan = NULL;
static SPIPlanPtr callback_plan = NULL;
static SPIPlanPtr park_plan = NULL;
static SPIPlanPtr fire_plan = NULL;
static SPIPlanPtr forget_plan = NULL;
static SPIPlanPtr end_plan = NULL;
static SPIPlanPtr children_plan = NULL;

/* Is the schema at 0.3.0 or later (callbacks exist)? Until ALTER EXTENSION
 * UPDATE it may be older than this library. */
bool
dasa_schema_has_callbacks(void)
{
	return OidIsValid(get_relname_relid("callbacks", get_namespace_oid("dasa", false)));
}

static void
prepare_plans(void)
{
	Oid			ids_now[2] = {TEXTARRAYOID, TIMESTAMPTZOID};
	Oid			callback_types[2] = {TEXTARRAYOID, TEXTOID};
	Oid			park_types[4] = {TEXTOID, INT4OID, TIMESTAMPTZOID, BOOLOID};
	Oid			ids[1] = {TEXTARRAYOID};
	Oid			id[1] = {TEXTOID};

	if (children_plan != NULL)
		return;
	mark_plan = dasa_prepare_saved(
		"UPDATE dasa.promises SET awaited = true WHERE id = ANY($1) "
		"RETURNING id, state = 'pending' AND timeout_at > $2",
		2, ids_now);
	callback_plan = dasa_prepare_saved(
		"INSERT INTO dasa.callbacks (promise_id, task_id) SELECT unnest($1::text[]), $2 "
		"ON CONFLICT DO NOTHING",
		2, callback_types);
	park_plan = dasa_prepare_saved(
		"UPDATE dasa.tasks SET state = CASE WHEN $4 THEN 'suspended' ELSE 'pending' END::dasa.task_state,"
		"  blocked = $2, run_at = $3, replays = replays + 1 WHERE id = $1",
		4, park_types);
	fire_plan = dasa_prepare_saved(
		"WITH fired AS (DELETE FROM dasa.callbacks WHERE promise_id = ANY($1) RETURNING task_id),"
		"  counts AS (SELECT task_id, count(*) AS n FROM fired GROUP BY task_id) "
		"UPDATE dasa.tasks t SET blocked = t.blocked - c.n,"
		"  state = CASE WHEN t.blocked - c.n <= 0 THEN 'pending' ELSE t.state END::dasa.task_state,"
		"  run_at = CASE WHEN t.blocked - c.n <= 0 THEN $2 ELSE t.run_at END "
		"FROM counts c WHERE t.id = c.task_id AND t.state = 'suspended' "
		"RETURNING t.id, t.state = 'pending'",
		2, ids_now);
	forget_plan = dasa_prepare_saved(
		"DELETE FROM dasa.callbacks WHERE task_id = ANY($1)", 1, ids);
	end_plan = dasa_prepare_saved(
		"WITH ended AS ("
		"  UPDATE dasa.tasks SET state = 'completed', completed_at = $2"
		"  WHERE id IN (SELECT id FROM dasa.tasks WHERE id = ANY($1)"
		"    AND state IN ('pending', 'suspended') FOR UPDATE SKIP LOCKED) RETURNING id) "
		"DELETE FROM dasa.callbacks WHERE task_id IN (SELECT id FROM ended)",
		2, ids_now);
	children_plan = dasa_prepare_saved(
		"SELECT id FROM dasa.promises WHERE parent_id = $1 AND state = 'pending'", 1, id);
}

/* ids as a list without repeats (they are C strings, not nodes). */
static List *
append_unique(List *ids, char *id)
{
	ListCell   *lc;

	foreach(lc, ids)
		if (strcmp((char *) lfirst(lc), id) == 0)
			return ids;
	return lappend(ids, id);
}

static Datum
text_array(List *items)
{
	int			n = list_length(items);
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, items)
		elems[i++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Promises in ids were settled in this transaction and were awaited: make
 * the tasks waiting on them due once they have what they need.
 */
void
dasa_fire_callbacks(List *ids)
{
	Datum		args[2] = {text_array(ids), TimestampTzGetDatum(GetCurrentTimestamp())};
	List	   *resumed = NIL;

	prepare_plans();
	dasa_execute(fire_plan, args, NULL, SPI_OK_UPDATE_RETURNING, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull)))
			resumed = lappend(resumed, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	}
	if (resumed == NIL)
		return;
	/* A task resumed by await_any still has callbacks on the others. */
	args[0] = text_array(resumed);
	dasa_execute(forget_plan, args, NULL, SPI_OK_DELETE, 0);
	dasa_wake_at_commit_task();
}

/* What an attempt suspended on: the awaited promises, plus (unless it awaits any)
 * the pending invocations it started, so a fan-out resumes once, not per child. */
static List *
blocking_set(DasaContext *c)
{
	List	   *ids = NIL;
	ListCell   *lc;

	foreach(lc, c->awaited)
		ids = append_unique(ids, (char *) lfirst(lc));
	if (c->await_any)
		return ids;
	foreach(lc, c->created)
	{
		DasaCreated *made = lfirst(lc);

		if (made->function != NULL)
			ids = append_unique(ids, made->id);
	}
	return ids;
}

/*
 * Park the task of a suspended attempt: keep what it created, register its
 * callbacks, and make it wait for the settlements it needs (or make it due
 * at once if they happened already).
 */
void
dasa_record_suspension(DasaTask *task, DasaContext *c)
{
	TimestampTz now = GetCurrentTimestamp();
	List	   *blocking;
	List	   *pending = NIL;
	Datum		args[4];
	int			needed;

	dasa_persist_created(c);
	prepare_plans();
	blocking = blocking_set(c);
	args[0] = text_array(blocking);
	args[1] = TimestampTzGetDatum(now);
	dasa_execute(mark_plan, args, NULL, SPI_OK_UPDATE_RETURNING, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull)))
			pending = append_unique(pending,
									SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	}
	/* await_any needs one settlement, unless one happened already */
	if (c->await_any)
		needed = list_length(pending) == list_length(blocking) ? 1 : 0;
	else
		needed = list_length(pending);
	if (needed > 0)
	{
		Datum		cb_args[2] = {text_array(pending), CStringGetTextDatum(task->id)};

		dasa_execute(callback_plan, cb_args, NULL, SPI_OK_INSERT, 0);
	}
	args[0] = CStringGetTextDatum(task->id);
	args[1] = Int32GetDatum(needed);
	args[2] = TimestampTzGetDatum(now);
	args[3] = BoolGetDatum(needed > 0);
	dasa_execute(park_plan, args, NULL, SPI_OK_UPDATE, 0);
	if (needed == 0)
		dasa_wake_at_commit_task();
}

/*
 * The promises in ids settled by cancellation or timeout: their tasks, if
 * any, end with their callbacks. A task an executor holds right now is
 * skipped: that executor finds the promise settled and ends it itself.
 */
void
dasa_end_tasks(List *ids)
{
	Datum		args[2] = {text_array(ids), TimestampTzGetDatum(GetCurrentTimestamp())};

	prepare_plans();
	dasa_execute(end_plan, args, NULL, SPI_OK_DELETE, 0);
}

/* Cancel every still-pending child of id, and theirs, recursively. */
void
dasa_cancel_children(const char *id)
{
	Datum		args[1] = {CStringGetTextDatum(id)};
	List	   *children = NIL;
	ListCell   *lc;

	prepare_plans();
	dasa_execute(children_plan, args, NULL, SPI_OK_SELECT, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
		children = lappend(children, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	foreach(lc, children)
		dasa_settle_internal((char *) lfirst(lc), "rejected_canceled", NULL);
}
