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

/*
 * dasa's processes set what they rely on, whatever the database's or the
 * role's defaults say (ALTER DATABASE ... SET reaches background workers):
 * a read-only default would make every write fail, serializable would turn
 * batches into serialization failures, and timeouts meant for clients
 * would cut claims and user functions (whose own timeout dasa manages).
 * User code may still change them for itself; the attempt's settings are
 * undone after it.
 */
static void
pin_settings(void)
{
	static const char *const pinned[][2] = {
		{"search_path", "pg_catalog, pg_temp"},
		{"default_transaction_read_only", "off"},
		{"default_transaction_isolation", "read committed"},
		{"default_transaction_deferrable", "off"},
		{"statement_timeout", "0"},
		{"lock_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
	};

	for (int i = 0; i < lengthof(pinned); i++)
		SetConfigOption(pinned[i][0], pinned[i][1], PGC_SUSET, PGC_S_OVERRIDE);
}

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
	pin_settings();
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
