/*
 * install.c: dasa._notify_launcher(), run by the install script.
 *
 * Refuses at once when the launcher has no room for another database;
 * otherwise the launcher hears of the new installation when the
 * transaction commits.
 */
#include "api/api.h"

#include "miscadmin.h"

PG_FUNCTION_INFO_V1(dasa_notify_launcher);

/*
 * dasa._notify_launcher(): run by the install script. Fails now if the
 * launcher has no room for this database; otherwise the launcher hears of
 * it when the transaction commits.
 */
Datum
dasa_notify_launcher(PG_FUNCTION_ARGS)
{
	bool		room;

	LWLockAcquire(dasa_databases_lock(), LW_SHARED);
	room = dasa_database_find(MyDatabaseId) != NULL ||
		dasa_database_find(InvalidOid) != NULL;
	LWLockRelease(dasa_databases_lock());
	if (!room)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("dasa is installed in as many databases as it can manage"),
				 errdetail("dasa.max_databases is %d.", dasa_max_databases),
				 errhint("Raise dasa.max_databases and restart the server.")));
	dasa_wake_at_commit_installed();
	PG_RETURN_VOID();
}
