/*
 * bgworker.c: what dasa's background processes share.
 *
 * The start (signal handlers, connection, name, a pinned search_path) and
 * the top of every loop iteration (interrupts, configuration reload). Each
 * process's own work lives in launcher.c, worker.c and executor.c.
 */
#include "runtime/runtime.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"

/* Set up signals and connect to dboid (InvalidOid: no database) under appname. */
void
dasa_bgworker_start(Oid dboid, const char *appname)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	if (OidIsValid(dboid))
		BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	else
		BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname(appname);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
}

/* The top of a loop iteration: die if asked to, reread the configuration if changed. */
void
dasa_bgworker_tick(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}
