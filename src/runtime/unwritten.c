/*
 * unwritten.c: an attempt's children are in the tables before anything
 * reads the tables.
 *
 * An attempt keeps the invocations it names itself in memory and writes
 * them when it ends (core/invocations.c). Its own code may read dasa's
 * tables before that, directly or through a view or a dasa function: any
 * statement that touches one of them first writes what is pending, so the
 * attempt sees its children as if each dasa.invoke had written at once.
 * Only in executors, and only while an attempt has something unwritten.
 */
#include "runtime/runtime.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

static ExecutorStart_hook_type prev_executor_start = NULL;

/* Does the statement touch one of dasa's tables (other than the registry, read by each invoke)? */
static bool
touches_work_tables(PlannedStmt *stmt)
{
	Oid			dasa_schema = get_namespace_oid("dasa", true);
	ListCell   *lc;

	foreach(lc, stmt->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);
		char	   *name;

		if (rte->rtekind != RTE_RELATION || get_rel_namespace(rte->relid) != dasa_schema)
			continue;
		name = get_rel_name(rte->relid);
		if (name != NULL && strcmp(name, "functions") != 0)
			return true;
	}
	return false;
}

static void
start(QueryDesc *query, int eflags)
{
	if (prev_executor_start)
		prev_executor_start(query, eflags);
	else
		standard_ExecutorStart(query, eflags);
}

/*
 * The statement's snapshot was taken before the children were written: it
 * runs with a copy that sees this transaction's writes up to now,
 * registered in its place (the query's end unregisters it).
 */
static void
start_seeing_own_writes(QueryDesc *query, int eflags)
{
	Snapshot	taken = query->snapshot;

	CommandCounterIncrement();
	PushCopiedSnapshot(taken);
	UpdateActiveSnapshotCommandId();
	query->snapshot = RegisterSnapshot(GetActiveSnapshot());
	UnregisterSnapshot(taken);
	start(query, eflags);
	PopActiveSnapshot();
}

/* Has the running attempt, or a child run inside it, something unwritten? */
static bool
has_unwritten(DasaContext *c)
{
	for (; c != NULL; c = c->outer)
		if (c->unwritten > 0)
			return true;
	return false;
}

static void
write_then_start(QueryDesc *query, int eflags)
{
	DasaContext *running = dasa_suspending_context();
	int			nest;

	if (!has_unwritten(running) || !dasa_unwritten_must_write() || !touches_work_tables(query->plannedstmt))
	{
		start(query, eflags);
		return;
	}
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	for (DasaContext *c = running; c != NULL; c = c->outer)
		dasa_write_unwritten(c);
	AtEOXact_GUC(true, nest);
	if (query->snapshot != NULL)
		start_seeing_own_writes(query, eflags);
	else
		start(query, eflags);
}

void
dasa_unwritten_install(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = write_then_start;
}
