/*
 * copies.c: the worker's watch over copied, restored and upgraded state.
 *
 * Called in every worker cycle (core/origin.c reads dasa.origin). A copy of
 * a database that still runs here stays paused, with one log line, until
 * dasa.resume_after_copy(). State restored from a dump or moved by
 * pg_upgrade carries on, but only once every client session that was
 * connected when the worker first saw it has ended: a restore loads dasa's
 * tables before the application's own tables, indexes and constraints, and
 * nothing may run against half a database. Executors check dasa.origin
 * themselves before running what they claimed, so none runs in between.
 */
#include "runtime/runtime.h"

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

static DasaOriginState last_state = DASA_ORIGIN_HOME;
static TimestampTz moved_seen_at = 0;

static void
report_state(DasaOriginState state, const char *from, int64 unfinished)
{
	const char *here = get_database_name(MyDatabaseId);

	if (state == last_state)
		return;
	if (state == DASA_ORIGIN_PAUSED)
		ereport(LOG,
				(errmsg("dasa: database \"%s\" is a copy of database \"%s\"; its unfinished invocations (%lld) are paused",
						here, from ? from : "?", (long long) unfinished),
				 errhint("Run SELECT dasa.resume_after_copy() in database \"%s\" to let them run here.", here)));
	else if (state == DASA_ORIGIN_COPY_TAKEN_OVER)
		ereport(LOG,
				(errmsg("dasa: database \"%s\" is a copy of database \"%s\" with no unfinished invocation; it runs its own from now on",
						here, from ? from : "?")));
	else if (state == DASA_ORIGIN_MOVED)
		ereport(LOG,
				(errmsg("dasa: database \"%s\" holds dasa state restored or moved from database \"%s\" of another cluster or database",
						here, from ? from : "?"),
				 errdetail("Its invocations start once the sessions connected now (the restore) have ended.")));
	else if (last_state == DASA_ORIGIN_MOVED || last_state == DASA_ORIGIN_PAUSED)
		ereport(LOG, (errmsg("dasa: database \"%s\" runs its invocations now", here)));
	last_state = state;
}

/* Restored state waits for the sessions that were there when it was seen; then it is ours. */
static DasaOriginState
after_restore(void)
{
	char	   *from;
	int64		unfinished;

	if (moved_seen_at == 0)
		moved_seen_at = GetCurrentTimestamp();
	if (dasa_sessions_started_before(moved_seen_at) > 0)
		return DASA_ORIGIN_MOVED;
	dasa_origin_take_over();
	moved_seen_at = 0;
	dasa_wake_at_commit_task();
	return dasa_origin_check(&from, &unfinished);
}

/* May this database's invocations and timeouts run now? (In the worker's transaction.) */
bool
dasa_worker_may_work(void)
{
	char	   *from = NULL;
	int64		unfinished = 0;
	DasaOriginState state = dasa_origin_check(&from, &unfinished);

	if (state == DASA_ORIGIN_MOVED)
	{
		report_state(state, from, unfinished);
		state = after_restore();
	}
	else
		moved_seen_at = 0;
	if (state == DASA_ORIGIN_COPY_TAKEN_OVER)
	{
		report_state(state, from, unfinished);
		state = DASA_ORIGIN_HOME;
	}
	report_state(state, from, unfinished);
	return state == DASA_ORIGIN_HOME;
}
