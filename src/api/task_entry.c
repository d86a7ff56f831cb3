/*
 * task_entry.c: an external worker's session working on one claimed task
 * (SQL-callable): dasa.enter_task, dasa.leave_task and dasa.release.
 *
 * After dasa.enter_task(id, version), what the session invokes or creates
 * are children of that task, named "<task>.<n>" unless given an id, with
 * deadlines capped at the task's: a handler that runs again after a lost
 * claim finds the children it started before, and cancelling the task's
 * tree reaches them. Completing, failing or releasing the task leaves it.
 */
#include "api/api.h"

#include "miscadmin.h"

PG_FUNCTION_INFO_V1(dasa_enter_task);
PG_FUNCTION_INFO_V1(dasa_leave_task);
PG_FUNCTION_INFO_V1(dasa_release);

/* dasa.enter_task(id, version): this session works on the claimed task id from now on. */
Datum
dasa_enter_task(PG_FUNCTION_ARGS)
{
	char	   *id = dasa_check_id(fcinfo, 0);
	int64		version = dasa_required_version(fcinfo, 1);
	Oid			caller = GetUserId();
	DasaUserSave save;

	if (dasa_suspending_context() != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dasa.enter_task cannot run inside a dasa function"),
				 errdetail("A running function already works on its own invocation."),
				 errhint("Call it from the session of the external worker that claimed the task.")));
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	dasa_external_enter(id, version, caller);
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_VOID();
}

/* dasa.leave_task(): stop working on the entered task; false if the session was in none. */
Datum
dasa_leave_task(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(dasa_context_leave(NULL));
}

/* dasa.release(id, version): give a claimed task back, due at once, without spending an attempt. */
Datum
dasa_release(PG_FUNCTION_ARGS)
{
	char	   *id = dasa_check_id(fcinfo, 0);
	int64		version = dasa_required_version(fcinfo, 1);
	Oid			caller = GetUserId();
	DasaUserSave save;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	dasa_external_release(id, version, caller);
	SPI_finish();
	dasa_restore_user(&save);
	(void) dasa_context_leave(id);
	PG_RETURN_VOID();
}
