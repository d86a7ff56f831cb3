/*
 * settings.c: dasa's configuration parameters (all under "dasa.").
 *
 * Owns definitions and defaults only; the files that use a setting read the
 * variable directly.
 */
#include "dasa.h"

#include <limits.h>

#include "utils/guc.h"

int			dasa_launcher_naptime_ms = 5000;
int			dasa_sweep_interval_ms = 1000;
int			dasa_await_recheck_ms = 5000;
int			dasa_max_payload_kb = 10 * 1024;
int			dasa_max_databases = 16;
int			dasa_executors_per_database = 2;
int			dasa_executor_batch_size = 1000;
int			dasa_executor_poll_ms = 1000;
int			dasa_retention_s = 7 * 24 * 3600;
int			dasa_resonate_retry_ms = 30 * 1000;

/* Define every dasa.* setting; called once from _PG_init. */
void
dasa_define_settings(void)
{
	DefineCustomIntVariable("dasa.launcher_naptime",
							"How often the launcher looks for new databases.",
							"CREATE EXTENSION wakes the launcher at once; this is the safety net.",
							&dasa_launcher_naptime_ms, 5000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("dasa.sweep_interval",
							"Longest sleep of a database worker between timeout sweeps.",
							"Workers also wake at the next known deadline and when a promise with an earlier one commits.",
							&dasa_sweep_interval_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("dasa.await_recheck_interval",
							"Longest sleep of dasa.await between re-reads of a pending promise.",
							"Settling transactions wake awaiting sessions at commit; this is the safety net.",
							&dasa_await_recheck_ms, 5000, 10, 24 * 3600 * 1000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("dasa.max_payload_size",
							"Largest param, value or tags document a promise may hold.",
							NULL,
							&dasa_max_payload_kb, 10 * 1024, 1, 512 * 1024,
							PGC_SUSET, GUC_UNIT_KB, NULL, NULL, NULL);

	DefineCustomIntVariable("dasa.max_databases",
							"How many databases can have dasa installed at once.",
							NULL,
							&dasa_max_databases, 16, 1, 1024,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("dasa.executors_per_database",
							"Executors that run invocations in each database with dasa.",
							NULL,
							&dasa_executors_per_database, 2, 0, DASA_MAX_EXECUTORS,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("dasa.executor_batch_size",
							"Most invocations an executor runs in one transaction.",
							"Each keeps its own subtransaction and outcome; they share the commit. Executors claim fewer when tasks take longer, so that a batch takes about 100 ms.",
							&dasa_executor_batch_size, 1000, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("dasa.executor_poll_interval",
							"Longest sleep of an idle executor.",
							"Invoking transactions wake an executor at commit; this is the safety net.",
							&dasa_executor_poll_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("dasa.retention",
							"How long settled history is kept: a tree goes once its root has been settled this long.",
							"0 keeps everything. The dasa worker of each database removes it in short transactions; dasa.purge does it on demand.",
							&dasa_retention_s, 7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomIntVariable("dasa.resonate_retry_timeout",
							"How long a pending Resonate task waits before its execute message is sent again.",
							"Also the wait after a task is released or its lease runs out, and after it is resumed.",
							&dasa_resonate_retry_ms, 30 * 1000, 10, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	MarkGUCPrefixReserved("dasa");
}
