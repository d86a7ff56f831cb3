/*
 * registry.c: dasa.register and dasa.unregister (SQL-callable).
 *
 * Binds a name to a procedure (jsonb) -> jsonb and to the role registering
 * it, which is the role the executors will run it as. Only that role (or a
 * superuser) may re-register or unregister the name. The rows are written as
 * the extension owner; this file never runs the procedure.
 */
#include "dasa.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(dasa_register);
PG_FUNCTION_INFO_V1(dasa_unregister);

static SPIPlanPtr upsert_plan = NULL;
static SPIPlanPtr owner_plan = NULL;
static SPIPlanPtr delete_plan = NULL;

static void
prepare_plans(void)
{
	Oid			upsert_types[8] = {TEXTOID, REGPROCEDUREOID, REGROLEOID, INT4OID,
	INTERVALOID, INTERVALOID, FLOAT8OID, INTERVALOID};
	Oid			name_types[1] = {TEXTOID};

	if (delete_plan != NULL)
		return;
	upsert_plan = dasa_prepare_saved(
		"INSERT INTO dasa.functions AS f (name, proc, run_as, max_attempts, initial_backoff,"
		"  max_backoff, jitter, timeout, registered_at) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp()) "
		"ON CONFLICT (name) DO UPDATE SET proc = excluded.proc, run_as = excluded.run_as,"
		"  max_attempts = excluded.max_attempts, initial_backoff = excluded.initial_backoff,"
		"  max_backoff = excluded.max_backoff, jitter = excluded.jitter,"
		"  timeout = excluded.timeout, registered_at = excluded.registered_at "
		"RETURNING *",
		8, upsert_types);
	owner_plan = dasa_prepare_saved(
		"SELECT run_as::oid FROM dasa.functions WHERE name = $1 FOR UPDATE", 1, name_types);
	delete_plan = dasa_prepare_saved(
		"DELETE FROM dasa.functions WHERE name = $1", 1, name_types);
}

/* The procedure must be a plain function taking jsonb and returning jsonb. */
static void
check_signature(Oid proc)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(proc));
	Form_pg_proc form;
	bool		fits;
	bool		retset;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", proc)));
	form = (Form_pg_proc) GETSTRUCT(tup);
	fits = form->prokind == PROKIND_FUNCTION && !form->proretset &&
		form->pronargs == 1 && form->proargtypes.values[0] == JSONBOID &&
		form->prorettype == JSONBOID;
	retset = form->proretset;
	ReleaseSysCache(tup);
	if (!fits)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s cannot be registered", format_procedure(proc)),
				 errdetail("A dasa function is a function (not a procedure) that takes one jsonb argument and returns one jsonb value; %s returns %s%s.",
						   format_procedure(proc), retset ? "a set of " : "",
						   format_type_be(get_func_rettype(proc))),
				 errhint("Wrap it in a function (args jsonb) RETURNS jsonb.")));
}

static void
check_retry_options(int max_attempts, Interval *initial, Interval *longest, double jitter)
{
	if (max_attempts < 1 || max_attempts > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_attempts must be between 1 and 1000"),
				 errdetail("The value given was %d.", max_attempts)));
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(longest),
										  IntervalPGetDatum(initial))) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_backoff must not be shorter than initial_backoff")));
	if (isnan(jitter) || jitter < 0 || jitter > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("jitter must be between 0 and 1"),
				 errdetail("It is the fraction of each backoff that is randomized.")));
}

static void
require_not_null(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what)));
}

/* Lock the registration of name; error unless the caller may change it. */
static void
check_may_change(const char *name, Oid caller)
{
	Datum		args[1] = {CStringGetTextDatum(name)};
	bool		isnull;
	Oid			owner;

	dasa_execute(owner_plan, args, NULL, SPI_OK_SELECT, 1);
	if (SPI_processed == 0)
		return;
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (owner != caller && !superuser_arg(caller))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("function \"%s\" was registered by role \"%s\"", name,
						GetUserNameFromId(owner, true) ? GetUserNameFromId(owner, true) : "(dropped)"),
				 errhint("Only that role or a superuser can change it; register under another name.")));
}

/*
 * dasa.register(name, fn, max_attempts, initial_backoff, max_backoff,
 * jitter, timeout): bind name to fn, run as the calling role.
 */
Datum
dasa_register(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *name = dasa_check_function_name(fcinfo, 0);
	Oid			caller = GetUserId();
	Oid			proc;
	Interval   *initial, *longest, *timeout;
	Datum		args[8];
	DasaUserSave save;
	Datum		result;

	require_not_null(fcinfo, 1, "fn");
	require_not_null(fcinfo, 2, "max_attempts");
	require_not_null(fcinfo, 5, "jitter");
	proc = PG_GETARG_OID(1);
	initial = dasa_check_interval(fcinfo, 3, "initial_backoff");
	longest = dasa_check_interval(fcinfo, 4, "max_backoff");
	timeout = dasa_check_interval(fcinfo, 6, "timeout");
	check_retry_options(PG_GETARG_INT32(2), initial, longest, PG_GETARG_FLOAT8(5));
	check_signature(proc);
	if (pg_proc_aclcheck(proc, caller, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(proc)),
				 errdetail("Registering a function needs EXECUTE on it: it will run as the registering role.")));

	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(proc);
	args[2] = ObjectIdGetDatum(caller);
	args[3] = PG_GETARG_DATUM(2);
	args[4] = IntervalPGetDatum(initial);
	args[5] = IntervalPGetDatum(longest);
	args[6] = PG_GETARG_DATUM(5);
	args[7] = IntervalPGetDatum(timeout);

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	prepare_plans();
	check_may_change(name, caller);
	dasa_execute(upsert_plan, args, NULL, SPI_OK_INSERT_RETURNING, 1);
	result = dasa_spi_row_as_result(fcinfo, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_DATUM(result);
}

/* dasa.unregister(name): true if it was registered. Pending invocations of it fail. */
Datum
dasa_unregister(PG_FUNCTION_ARGS)
{
	char	   *name = dasa_check_function_name(fcinfo, 0);
	Oid			caller = GetUserId();
	Datum		args[1] = {CStringGetTextDatum(name)};
	DasaUserSave save;
	bool		deleted;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	prepare_plans();
	check_may_change(name, caller);
	dasa_execute(delete_plan, args, NULL, SPI_OK_DELETE, 0);
	deleted = SPI_processed > 0;
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_BOOL(deleted);
}
