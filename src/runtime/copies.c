/*
 * copies.c: the worker's watch over copied, restored and upgraded state.
 *
 * Called in every worker cycle (core/origin.c reads dasa.origin). State
 * found from elsewhere is taken over only once every client session that
 * was connected (and busy) when the worker first saw it has ended: a
 * restore loads dasa's tables before the application's own tables, indexes
 * and constraints, and nothing may run against half a database. Then a copy
 * of a database that still runs here, with unfinished invocations, stays
 * paused, with a log line, until dasa.resume_after_copy(); anything else
 * (a restore, pg_upgrade, a copy with nothing unfinished) runs. Executors
 * check dasa.origin themselves before running what they claimed, so none
 * runs in between.
 */
#include "runtime/runtime.h"

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

static DasaOriginState last_state = DASA_ORIGIN_HOME;
static TimestampTz foreign_seen_at = 0;

static void
report_waiting(const char *from)
{
	ereport(LOG,
			(errmsg("dasa: database \"%s\" holds dasa state from database \"%s\" (a copy, a restore or an upgrade)",
					get_database_name(MyDatabaseId), from ? from : "?"),
			 errdetail("Nothing runs until the sessions connected now (a restore, say) have ended.")));
}

static void
report_taken_over(DasaOriginState state, const char *from, int64 unfinished)
{
	const char *here = get_database_name(MyDatabaseId);

	if (state == DASA_ORIGIN_PAUSED)
		ereport(LOG,
				(errmsg("dasa: database \"%s\" is a copy of database \"%s\"; its unfinished invocations (%lld) are paused",
						here, from ? from : "?", (long long) unfinished),
				 errhint("Run SELECT dasa.resume_after_copy() in database \"%s\" to let them run here.", here)));
	else
		ereport(LOG,
				(errmsg("dasa: database \"%s\" took over dasa state from database \"%s\" and runs its invocations now (%lld unfinished)",
						here, from ? from : "?", (long long) unfinished)));
}

/* Found state waits for the sessions that were there when it was seen; then it is ours. */
static DasaOriginState
take_over_when_alone(const char *from)
{
	char	   *source = NULL;
	int64		unfinished = 0;
	DasaOriginState state;

	if (foreign_seen_at == 0)
	{
		foreign_seen_at = GetCurrentTimestamp();
		if (dasa_sessions_started_before(foreign_seen_at) > 0)
			report_waiting(from);
	}
	if (dasa_sessions_started_before(foreign_seen_at) > 0)
		return DASA_ORIGIN_FOREIGN;
	foreign_seen_at = 0;
	state = dasa_origin_take_over(&source, &unfinished);
	report_taken_over(state, source, unfinished);
	if (state == DASA_ORIGIN_HOME)
		dasa_wake_at_commit_task(0);	/* its tasks may be due since long ago */
	return state;
}

/* May this database's invocations and timeouts run now? (In the worker's transaction.) */
bool
dasa_worker_may_work(void)
{
	char	   *from = NULL;
	DasaOriginState state = dasa_origin_state(&from);

	if (state == DASA_ORIGIN_FOREIGN)
	{
		state = take_over_when_alone(from);
		if (state != DASA_ORIGIN_FOREIGN)
			last_state = state;
		return state == DASA_ORIGIN_HOME;
	}
	foreign_seen_at = 0;
	if (state == DASA_ORIGIN_PAUSED && last_state == DASA_ORIGIN_HOME)
		ereport(LOG,
				(errmsg("dasa: database \"%s\" is paused: it is a copy of database \"%s\"",
						get_database_name(MyDatabaseId), from ? from : "?"),
				 errhint("Run SELECT dasa.resume_after_copy() in it to let its invocations run.")));
	else if (state == DASA_ORIGIN_HOME && last_state == DASA_ORIGIN_PAUSED)
		ereport(LOG, (errmsg("dasa: database \"%s\" runs its invocations now",
							 get_database_name(MyDatabaseId))));
	last_state = state;
	return state == DASA_ORIGIN_HOME;
}
