/*
 * ddl_guard.c: keep dasa workers out of the way of database-level DDL.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE
 * DATABASE ... TEMPLATE need the database free of other sessions. While such
 * a statement runs, the database's worker is asked to leave and the launcher
 * does not restart it; afterwards the launcher takes over again (a dropped
 * database simply disappears from its list).
 */
#include "runtime/runtime.h"

#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lwlock.h"
#include "tcop/utility.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

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

/* The database a statement needs free of sessions, or InvalidOid. */
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
			return InvalidOid;
	}
}

/* Ask the database's worker to leave; false if it has no slot. */
static bool
pause_worker(Oid dboid)
{
	DasaDatabase *db;

	LWLockAcquire(dasa_databases_lock(), LW_EXCLUSIVE);
	db = dasa_database_find(dboid);
	if (db != NULL)
	{
		db->paused_by = MyProcPid;
		dasa_wake_procno(db->worker.procno);
	}
	LWLockRelease(dasa_databases_lock());
	return db != NULL;
}

static void
resume_worker(Oid dboid)
{
	DasaDatabase *db;

	LWLockAcquire(dasa_databases_lock(), LW_EXCLUSIVE);
	db = dasa_database_find(dboid);
	if (db != NULL && db->paused_by == MyProcPid)
		db->paused_by = 0;
	LWLockRelease(dasa_databases_lock());
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

	if (!OidIsValid(dboid) || !pause_worker(dboid))
	{
		call_next(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		return;
	}
	PG_TRY();
	{
		call_next(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		resume_worker(dboid);
	}
	PG_END_TRY();
}

void
dasa_install_ddl_guard(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = dasa_process_utility;
}
