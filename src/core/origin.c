/*
 * origin.c: dasa.origin, where this database's dasa state was recorded.
 *
 * The state moves with the database's data: CREATE DATABASE ... TEMPLATE
 * copies it, pg_dump and pg_restore carry it to another database or
 * cluster, pg_upgrade to a new cluster. A row naming another place tells
 * the worker so. A copy next to a database that still runs must not run
 * the same invocations again: it waits, paused, for dasa.resume_after_copy().
 * Restored or upgraded state carries on (the worker first lets the
 * restoring sessions finish).
 */
#include "core/core.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#define HERE "(o.system_identifier = $1 AND o.database_oid = $2)"

static DasaStatement read_origin = {
	.since = "0.5.0",
	.sql = "SELECT o.database_name::text AS database_name, o.paused, o.copied_from::text AS copied_from, "
	HERE " AS here, "
	"  o.system_identifier = $1 AND o.database_oid <> $2 AND EXISTS ("
	"    SELECT FROM pg_catalog.pg_database d WHERE d.oid = o.database_oid) AS live_elsewhere "
	"FROM dasa.origin o",
	.args = {INT8OID, OIDOID},
	.columns = {"database_name", "paused", "copied_from", "here", "live_elsewhere"},
};

static DasaStatement runnable_here = {
	.since = "0.5.0",
	.sql = "SELECT coalesce(bool_and(" HERE " AND NOT o.paused), false) AS runnable FROM dasa.origin o",
	.args = {INT8OID, OIDOID},
	.columns = {"runnable"},
};

static DasaStatement lock_origin = {
	.since = "0.5.0",
	.sql = "LOCK TABLE dasa.origin IN SHARE ROW EXCLUSIVE MODE",
};

static DasaStatement record_origin = {
	.since = "0.5.0",
	.sql = "WITH gone AS (DELETE FROM dasa.origin) "
	"INSERT INTO dasa.origin (system_identifier, database_oid, database_name, paused, copied_from) "
	"VALUES ($1, $2, pg_catalog.current_database(), $3, $4)",
	.args = {INT8OID, OIDOID, BOOLOID, NAMEOID},
};

static DasaStatement count_unfinished = {
	.since = "0.5.0",
	.sql = "SELECT count(*) AS unfinished FROM dasa.tasks WHERE state <> 'completed'",
	.columns = {"unfinished"},
};

static DasaStatement sessions_from_before = {
	.since = "0.5.0",
	.sql = "SELECT count(*) AS sessions FROM pg_catalog.pg_stat_activity "
	"WHERE datid = $1 AND backend_type = 'client backend' AND backend_start <= $2"
	"  AND pid <> pg_catalog.pg_backend_pid()"
	"  AND NOT (state = 'idle' AND state_change < pg_catalog.clock_timestamp() - interval '10 seconds')",
	.args = {OIDOID, TIMESTAMPTZOID},
	.columns = {"sessions"},
};

/* What dasa.origin says, read into a summary. */
typedef struct OriginRows
{
	bool		here;			/* a row names this database */
	bool		paused;			/* a row is paused */
	int			elsewhere;		/* rows naming another place */
	char	   *copy_of;		/* a live database of this cluster that a row names */
	char	   *from;			/* a name from a row naming another place */
	char	   *copied_from;	/* of a paused row */
} OriginRows;

static DasaRows
run_here(DasaStatement *s, long limit)
{
	Datum		args[2] = {Int64GetDatum((int64) GetSystemIdentifier()),
	ObjectIdGetDatum(MyDatabaseId)};

	return dasa_run(s, args, NULL, limit);
}

static OriginRows
read_rows(void)
{
	DasaRows	rows = run_here(&read_origin, 0);
	OriginRows	o = {0};

	for (uint64 i = 0; i < rows.n; i++)
	{
		bool		isnull;

		if (dasa_get_bool(&rows, i, "paused"))
		{
			o.paused = true;
			(void) dasa_get(&rows, i, "copied_from", &isnull);
			o.copied_from = isnull ? NULL : dasa_get_text(&rows, i, "copied_from");
		}
		if (dasa_get_bool(&rows, i, "here"))
		{
			o.here = true;
			continue;
		}
		o.elsewhere++;
		o.from = dasa_get_text(&rows, i, "database_name");
		if (dasa_get_bool(&rows, i, "live_elsewhere"))
			o.copy_of = o.from;
	}
	return o;
}

static void
record(bool paused, const char *copied_from)
{
	Datum		args[4] = {Int64GetDatum((int64) GetSystemIdentifier()),
		ObjectIdGetDatum(MyDatabaseId), BoolGetDatum(paused),
	copied_from ? CStringGetDatum(copied_from) : (Datum) 0};
	char		nulls[4] = {' ', ' ', ' ', copied_from ? ' ' : 'n'};
	NameData	name;

	if (copied_from)
	{
		namestrcpy(&name, copied_from);
		args[3] = NameGetDatum(&name);
	}
	dasa_run(&record_origin, args, nulls, 0);
}

/* Invocations not finished (pending, or suspended on others). */
static int64
unfinished_tasks(void)
{
	DasaRows	rows = dasa_run(&count_unfinished, NULL, NULL, 1);

	return dasa_get_int64(&rows, 0, "unfinished");
}

/*
 * Where the state stands: recorded here (running or paused), or found from
 * elsewhere (DASA_ORIGIN_FOREIGN, *from names the database it came from)
 * and not yet taken over. An empty table gets this database's row.
 */
DasaOriginState
dasa_origin_state(char **from)
{
	OriginRows	o = read_rows();

	*from = o.paused ? o.copied_from : o.from;
	if (o.elsewhere > 0)
		return DASA_ORIGIN_FOREIGN;
	if (!o.here)
	{
		dasa_run(&lock_origin, NULL, NULL, 0);
		o = read_rows();
		if (o.elsewhere > 0)
			return DASA_ORIGIN_FOREIGN;
		if (!o.here)
			record(false, NULL);
	}
	return o.paused ? DASA_ORIGIN_PAUSED : DASA_ORIGIN_HOME;
}

/*
 * Make state found from elsewhere this database's. A copy of a database that
 * still exists here, with unfinished invocations, is paused (they would run
 * twice); a copy with none, and state restored or moved from a database
 * that is gone, runs (paused only if it was a paused copy already).
 * Returns DASA_ORIGIN_PAUSED or DASA_ORIGIN_HOME; *from and *unfinished say
 * what was found.
 */
DasaOriginState
dasa_origin_take_over(char **from, int64 *unfinished)
{
	OriginRows	o;
	bool		paused;

	dasa_run(&lock_origin, NULL, NULL, 0);
	o = read_rows();
	*from = o.copy_of ? o.copy_of : (o.paused ? o.copied_from : o.from);
	*unfinished = unfinished_tasks();
	paused = o.paused || (o.copy_of != NULL && *unfinished > 0);
	record(paused, paused ? *from : NULL);
	return paused ? DASA_ORIGIN_PAUSED : DASA_ORIGIN_HOME;
}

/* May executors run invocations here? (Only state recorded here and not paused.) */
bool
dasa_origin_runnable(void)
{
	DasaRows	rows = run_here(&runnable_here, 1);

	return dasa_get_bool(&rows, 0, "runnable");
}

/* Let a paused copy (or state waiting after a restore) run; false if it already could. */
bool
dasa_origin_resume(void)
{
	OriginRows	o;

	dasa_run(&lock_origin, NULL, NULL, 0);
	o = read_rows();
	if (o.here && o.elsewhere == 0 && !o.paused)
		return false;
	record(false, NULL);
	return true;
}

/*
 * Client sessions of this database that started at or before since and
 * have been busy in the last ten seconds (a restore never idles that long
 * between its statements; a session that just sits there is not restoring).
 */
int64
dasa_sessions_started_before(TimestampTz since)
{
	Datum		args[2] = {ObjectIdGetDatum(MyDatabaseId), TimestampTzGetDatum(since)};
	DasaRows	rows = dasa_run(&sessions_from_before, args, NULL, 1);

	return dasa_get_int64(&rows, 0, "sessions");
}
