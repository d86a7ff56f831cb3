/*
 * observe.c: dasa.executors(), what every executor runs right now.
 *
 * Reads shared memory only (the view dasa.invocations joins it with the
 * tables); a task that just finished may still show for an instant. Shows
 * the executors of the current database; what one runs is shown only to
 * roles that may see that invocation.
 */
#include "api/api.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(dasa_executors);

static void
emit_executor(ReturnSetInfo *rsinfo, Oid dboid, DasaExecutor *e)
{
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	bool		running = e->started_at != 0 && dasa_may_access(GetUserId(), e->task_owner);

	values[0] = Int32GetDatum(e->slot.pid);
	values[1] = ObjectIdGetDatum(dboid);
	values[2] = running ? CStringGetTextDatum(e->task_id) : (Datum) 0;
	values[3] = running ? CStringGetTextDatum(e->function) : (Datum) 0;
	values[4] = TimestampTzGetDatum(e->started_at);
	nulls[2] = nulls[3] = nulls[4] = !running;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

Datum
dasa_executors(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (dasa_schema() == DASA_SCHEMA_OTHER)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dasa's executors in this database are idle: the extension is at version %s, the library at %s",
						dasa_installed_version(), DASA_SCHEMA_VERSION),
				 errhint("Run ALTER EXTENSION dasa UPDATE.")));
	LWLockAcquire(dasa_databases_lock(), LW_SHARED);
	for (int i = 0; i < dasa_max_databases; i++)
	{
		DasaDatabase *db = &dasa_databases()[i];

		if (db->dboid != MyDatabaseId)
			continue;
		for (int e = 0; e < DASA_MAX_EXECUTORS; e++)
			if (db->executors[e].slot.pid != 0)
				emit_executor(rsinfo, db->dboid, &db->executors[e]);
	}
	LWLockRelease(dasa_databases_lock());
	return (Datum) 0;
}
