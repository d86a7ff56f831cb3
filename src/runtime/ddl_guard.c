/*
 * ddl_guard.c: keep dasa workers out of the way of database-level DDL.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE
 * DATABASE ... TEMPLATE need the database free of other sessions; ALTER
 * EXTENSION dasa and DROP EXTENSION dasa need dasa's tables free of its own
 * processes (else they deadlock with executors in mid-batch). While such a
 * statement's transaction runs, the database's worker, executors and retention process are
 * asked to leave (an executor still in an attempt after a second is ended:
 * the attempt is rolled back and runs again later, not counted as failed)
 * and the launcher does not restart them; at its end the launcher takes over again (a dropped
 * database simply disappears from its list, a dropped extension makes the
 * new worker leave).
 */
#include "runtime/runtime.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "tcop/utility.h"
#include "utils/memutils.h"

/* How long an attempt may go on before the DDL that waits for it ends it. */
#define ATTEMPT_GRACE_MS 1000

/* How long DDL on dasa itself waits for dasa's processes to leave its database. */
#define LEAVE_WAIT_MS 10000

static ProcessUtility_hook_type prev_process_utility = NULL;

/* Databases this transaction paused (resumed at its end). */
static List *paused_here = NIL;

static Oid
option_database(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, name) == 0 && opt->arg != NULL)
			return get_database_oid(defGetString(opt), true);
	}
	return InvalidOid;
}

/* Is stmt ALTER EXTENSION dasa ... or DROP EXTENSION ... dasa ...? */
static bool
is_ddl_on_dasa(Node *stmt)
{
	ListCell   *lc;

	if (IsA(stmt, AlterExtensionStmt))
		return strcmp(((AlterExtensionStmt *) stmt)->extname, "dasa") == 0;
	if (IsA(stmt, AlterExtensionContentsStmt))
		return strcmp(((AlterExtensionContentsStmt *) stmt)->extname, "dasa") == 0;
	if (!IsA(stmt, DropStmt) || ((DropStmt *) stmt)->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, ((DropStmt *) stmt)->objects)
		if (strcmp(strVal(lfirst(lc)), "dasa") == 0)
			return true;
	return false;
}

/* The database a statement needs free of dasa's processes, or InvalidOid. */
static Oid
database_needing_idle(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			return get_database_oid(((DropdbStmt *) stmt)->dbname, true);
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				return get_database_oid(((RenameStmt *) stmt)->subname, true);
			return InvalidOid;
		case T_CreatedbStmt:
			return option_database(((CreatedbStmt *) stmt)->options, "template");
		case T_AlterDatabaseStmt:
			if (OidIsValid(option_database(((AlterDatabaseStmt *) stmt)->options, "tablespace")))
				return get_database_oid(((AlterDatabaseStmt *) stmt)->dbname, true);
			return InvalidOid;
		default:
			return is_ddl_on_dasa(stmt) ? MyDatabaseId : InvalidOid;
	}
}

/* Ask the database's worker and executors to leave; false if dasa does not manage the database. */
static bool
pause_database(Oid dboid)
{
	DasaDatabase *db;

	LWLockAcquire(dasa_databases_lock(), LW_EXCLUSIVE);
	db = dasa_database_find(dboid);
	if (db != NULL)
	{
		db->paused_by = MyProcPid;
		dasa_wake_procno(db->worker.procno);
		for (int e = 0; e < DASA_MAX_EXECUTORS; e++)
			dasa_wake_procno(db->executors[e].slot.procno);
		if (db->retention.pid != 0)
			(void) kill(db->retention.pid, SIGINT); /* its step or vacuum is cancelled; it leaves */
	}
	LWLockRelease(dasa_databases_lock());
	return db != NULL;
}

/* End the executors still in an attempt (rolled back; it runs again later, not counted). */
static void
end_attempts(Oid dboid)
{
	DasaDatabase *db;

	LWLockAcquire(dasa_databases_lock(), LW_SHARED);
	db = dasa_database_find(dboid);
	for (int e = 0; db != NULL && e < DASA_MAX_EXECUTORS; e++)
	{
		DasaExecutor *x = &db->executors[e];

		if (x->slot.pid != 0 && x->started_at != 0)
			(void) kill(x->slot.pid, SIGTERM);
	}
	LWLockRelease(dasa_databases_lock());
}

static bool
anyone_left(Oid dboid)
{
	DasaDatabase *db;
	bool		left = false;

	LWLockAcquire(dasa_databases_lock(), LW_SHARED);
	db = dasa_database_find(dboid);
	if (db != NULL)
	{
		left = db->worker.pid != 0;
		for (int e = 0; e < DASA_MAX_EXECUTORS; e++)
			left |= db->executors[e].slot.pid != 0;
		left |= db->retention.pid != 0;
	}
	LWLockRelease(dasa_databases_lock());
	return left;
}

/* Wait (at most ms, cancellable) until dasa's processes have left the database. */
static void
wait_until_left(Oid dboid, int ms)
{
	for (int waited = 0; waited < ms && anyone_left(dboid); waited += 10)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* At the end of the transaction that paused them, dasa's processes may come back. */
static void
resume_at_end(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (paused_here == NIL ||
		(event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		 event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT))
		return;
	LWLockAcquire(dasa_databases_lock(), LW_EXCLUSIVE);
	foreach(lc, paused_here)
	{
		DasaDatabase *db = dasa_database_find(lfirst_oid(lc));

		if (db != NULL && db->paused_by == MyProcPid)
			db->paused_by = 0;
	}
	LWLockRelease(dasa_databases_lock());
	list_free(paused_here);
	paused_here = NIL;
	dasa_wake_launcher();
}

static void
call_next(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
		  ProcessUtilityContext context, ParamListInfo params,
		  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

static void
dasa_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Oid			dboid = database_needing_idle(pstmt->utilityStmt);

	if (OidIsValid(dboid) && pause_database(dboid))
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		paused_here = lappend_oid(paused_here, dboid);
		MemoryContextSwitchTo(old);
		wait_until_left(dboid, ATTEMPT_GRACE_MS);
		end_attempts(dboid);
		if (dboid == MyDatabaseId)
			wait_until_left(dboid, LEAVE_WAIT_MS);
	}
	call_next(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

void
dasa_install_ddl_guard(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = dasa_process_utility;
	RegisterXactCallback(resume_at_end, NULL);
}
