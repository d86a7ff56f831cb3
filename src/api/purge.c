/*
 * purge.c: dasa.purge (SQL-callable).
 *
 * Removes, now and in the caller's transaction, the settled trees whose
 * root settled more than older_than ago, as the dasa worker does after
 * dasa.retention (core/retention.c). A role purges the trees it may see
 * (its own and those of roles it has the privileges of); members of
 * dasa_admin and superusers purge every tree.
 */
#include "api/api.h"

#include "miscadmin.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(dasa_purge);

/* Roots looked at per step; no bound on a tree's rows (one transaction anyway). */
#define PURGE_ROOTS_PER_STEP 1000

/* dasa.purge(older_than): how many promises (with their tasks) were removed. */
Datum
dasa_purge(PG_FUNCTION_ARGS)
{
	Interval   *older_than = dasa_check_interval(fcinfo, 0, "older_than");
	Oid			caller = GetUserId();
	TimestampTz cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
																 TimestampTzGetDatum(GetCurrentTimestamp()),
																 IntervalPGetDatum(older_than)));
	DasaRetention r;
	DasaUserSave save;

	dasa_retention_start(&r, cutoff, dasa_may_access(caller, InvalidOid) ? InvalidOid : caller, 0);
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	while (!r.done)
	{
		CHECK_FOR_INTERRUPTS();
		dasa_retention_step(&r, PURGE_ROOTS_PER_STEP);
	}
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_INT64(r.removed);
}
