/*
 * resume.c: dasa.resume_after_copy(), to let a copied database run its work.
 *
 * A database created as a copy of another that still runs here (CREATE
 * DATABASE ... TEMPLATE) does not run the invocations it copied until this
 * is called in it (see core/origin.c). Granted to dasa_admin; the
 * function runs as the extension's owner.
 */
#include "api/api.h"

PG_FUNCTION_INFO_V1(dasa_resume_after_copy);

/* dasa.resume_after_copy(): true if the database was paused and now runs. */
Datum
dasa_resume_after_copy(PG_FUNCTION_ARGS)
{
	bool		resumed;

	SPI_connect();
	resumed = dasa_origin_resume();
	SPI_finish();
	if (resumed)
		dasa_wake_at_commit_task(0);	/* its tasks may be due since long ago */
	PG_RETURN_BOOL(resumed);
}
