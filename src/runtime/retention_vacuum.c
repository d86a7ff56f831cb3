/*
 * retention_vacuum.c: the retention process vacuums what it empties.
 *
 * Removing a large backlog of history leaves millions of dead rows, and
 * autovacuum, at normal CPU priority, then competes with the executors the
 * way the removal itself would. So the retention process vacuums dasa's
 * history tables itself, at its own idle priority and with autovacuum's cost
 * limits: every 20 seconds while it removes, and with ANALYZE when it is
 * done. Not more often: each vacuum or analyze of a table makes every
 * session plan its statements on it again. Empty pages are not truncated:
 * that would take an exclusive lock on tables every invocation uses.
 */
#include "runtime/runtime.h"

#include "access/xact.h"
#include "commands/vacuum.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "pgstat.h"
#include "postmaster/autovacuum.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#define VACUUM_INTERVAL_MS 20000
#define MIN_ROWS_AT_END 1000		/* leaving, vacuum and analyze if it removed this many */

static int64 since_vacuum = 0;
static int64 since_analyze = 0;
static TimestampTz vacuumed_at = 0;

/* Vacuum like autovacuum would: its cost delay and limit (the process's own settings). */
void
dasa_history_vacuum_init(void)
{
	char		value[32];

	if (autovacuum_vac_cost_delay >= 0)
	{
		snprintf(value, sizeof(value), "%g", autovacuum_vac_cost_delay);
		SetConfigOption("vacuum_cost_delay", value, PGC_SUSET, PGC_S_OVERRIDE);
	}
	if (autovacuum_vac_cost_limit > 0)
	{
		snprintf(value, sizeof(value), "%d", autovacuum_vac_cost_limit);
		SetConfigOption("vacuum_cost_limit", value, PGC_SUSET, PGC_S_OVERRIDE);
	}
	vacuumed_at = GetCurrentTimestamp();
}

static VacuumStmt *
vacuum_statement(bool analyze)
{
	static const char *const tables[] = {"promises", "tasks", "attempts", "callbacks"};
	VacuumStmt *stmt = makeNode(VacuumStmt);

	stmt->is_vacuumcmd = true;
	stmt->options = list_make1(makeDefElem("truncate", (Node *) makeBoolean(false), -1));
	if (analyze)
		stmt->options = lappend(stmt->options, makeDefElem("analyze", (Node *) makeBoolean(true), -1));
	for (int i = 0; i < lengthof(tables); i++)
		stmt->rels = lappend(stmt->rels,
							 makeVacuumRelation(makeRangeVar("dasa", (char *) tables[i], -1), InvalidOid, NIL));
	return stmt;
}

/* VACUUM (and ANALYZE) the history tables, outside a transaction; errors propagate. */
static void
vacuum_history(bool analyze)
{
	MemoryContext portal = AllocSetContextCreate(TopMemoryContext, "dasa retention vacuum",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(portal);
	VacuumStmt *stmt = vacuum_statement(analyze);

	MemoryContextSwitchTo(old);
	pgstat_report_activity(STATE_RUNNING, analyze ? "vacuuming and analyzing removed history"
						   : "vacuuming removed history");
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PortalContext = portal;		/* vacuum keeps what it needs across its transactions there */
	ExecVacuum(make_parsestate(NULL), stmt, true);
	CommitTransactionCommand();
	PortalContext = NULL;
	MemoryContextDelete(portal);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * The retention process removed n more promises: vacuum if it has removed
 * some for the interval, and with ANALYZE when ending (a walk that removed
 * nothing) if it removed enough since the last.
 */
void
dasa_history_vacuum_after(int64 removed, bool ending)
{
	bool		analyze = ending && since_analyze + removed >= MIN_ROWS_AT_END;

	since_vacuum += removed;
	since_analyze += removed;
	if (!analyze && (ending || since_vacuum == 0 ||
					 !TimestampDifferenceExceeds(vacuumed_at, GetCurrentTimestamp(), VACUUM_INTERVAL_MS)))
		return;
	vacuum_history(analyze);
	vacuumed_at = GetCurrentTimestamp();
	since_vacuum = 0;
	if (analyze)
		since_analyze = 0;
}
