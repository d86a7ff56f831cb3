/*
 * timeouts.c: the background half of promise timeouts.
 *
 * Settles pending promises whose deadline has passed (timers resolve, the
 * rest time out) and finds the next deadline to sleep until. Both read only
 * the partial index of pending deadlines, so their cost follows what is due,
 * not the size of the table. Runs inside the caller's transaction and SPI
 * connection; never commits.
 */
#include "dasa.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

static SPIPlanPtr sweep_plan = NULL;
static SPIPlanPtr next_plan = NULL;
static bool plans_for_callbacks = false;

/*
 * The sweep returns whether each promise was awaited; before 0.3.0 (the
 * library may be newer than the schema until ALTER EXTENSION UPDATE) there
 * is no such column, and nothing can be awaited.
 */
static void
prepare_plans(void)
{
	Oid			sweep_types[2] = {TIMESTAMPTZOID, INT4OID};
	Oid			next_types[1] = {TIMESTAMPTZOID};
	bool		with_callbacks = dasa_schema_has_callbacks();

	if (next_plan != NULL && with_callbacks == plans_for_callbacks)
		return;
	if (sweep_plan != NULL)
		SPI_freeplan(sweep_plan);
	if (next_plan != NULL)
		SPI_freeplan(next_plan);
	plans_for_callbacks = with_callbacks;
	sweep_plan = dasa_prepare_saved(psprintf(
		"WITH due AS ("
		"  SELECT id FROM dasa.promises"
		"  WHERE settled_at IS NULL AND timeout_at <= $1"
		"  ORDER BY timeout_at LIMIT $2"
		"  FOR UPDATE SKIP LOCKED) "
		"UPDATE dasa.promises p SET state = %s, settled_at = p.timeout_at "
		"FROM due WHERE p.id = due.id AND p.state = 'pending' "
		"RETURNING p.id, %s", dasa_timeout_state_sql, with_callbacks ? "p.awaited" : "false"),
		2, sweep_types);
	next_plan = dasa_prepare_saved(
		"SELECT min(timeout_at) FROM dasa.promises "
		"WHERE settled_at IS NULL AND timeout_at > $1",
		1, next_types);
}

/*
 * Settle up to batch expired promises; returns how many. Awaiting sessions
 * wake at commit; tasks suspended on them become due; the tasks of timed-out
 * invocations end.
 */
int
dasa_sweep_expired(TimestampTz now, int batch)
{
	Datum		args[2] = {TimestampTzGetDatum(now), Int32GetDatum(batch)};
	List	   *swept = NIL;
	List	   *awaited = NIL;
	int			n;

	prepare_plans();
	dasa_execute(sweep_plan, args, NULL, SPI_OK_UPDATE_RETURNING, 0);
	n = (int) SPI_processed;
	for (int i = 0; i < n; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		bool		isnull;

		dasa_wake_at_commit_settled(id);
		swept = lappend(swept, id);
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull)))
			awaited = lappend(awaited, id);
	}
	if (awaited != NIL)
		dasa_fire_callbacks(awaited);
	if (swept != NIL && plans_for_callbacks)
		dasa_end_tasks(swept);
	return n;
}

/* The earliest deadline of a pending promise after now; 0 if there is none. */
TimestampTz
dasa_next_deadline(TimestampTz now)
{
	Datum		args[1] = {TimestampTzGetDatum(now)};
	bool		isnull;
	Datum		next;

	prepare_plans();
	dasa_execute(next_plan, args, NULL, SPI_OK_SELECT, 1);
	next = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(next);
}
