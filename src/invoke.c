/*
 * invoke.c: dasa.invoke (SQL-callable) and the invocation it creates.
 *
 * An invocation is a promise (its param holds the arguments) plus a pending
 * task with the same id, both written in the caller's transaction, so an
 * invocation exists exactly when the caller's work commits. The caller must
 * be allowed to execute the registered procedure; the rows are written as
 * the extension owner. An executor is woken at commit.
 */
#include "dasa.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/regproc.h"

PG_FUNCTION_INFO_V1(dasa_invoke);

static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr task_plan = NULL;

/* What invoking needs to know of a registered function. */
typedef struct RegisteredFunction
{
	Oid			proc;
	Interval	timeout;
} RegisteredFunction;

static void
prepare_plans(void)
{
	Oid			lookup_types[1] = {TEXTOID};
	Oid			task_types[3] = {TEXTOID, TEXTOID, TIMESTAMPTZOID};

	if (task_plan != NULL)
		return;
	lookup_plan = dasa_prepare_saved(
		"SELECT proc::oid, timeout FROM dasa.functions WHERE name = $1", 1, lookup_types);
	task_plan = dasa_prepare_saved(
		"INSERT INTO dasa.tasks (id, function, run_at) VALUES ($1, $2, $3)", 3, task_types);
}

static void
lookup_function(const char *name, RegisteredFunction *fn)
{
	Datum		args[1] = {CStringGetTextDatum(name)};
	bool		isnull;

	dasa_execute(lookup_plan, args, NULL, SPI_OK_SELECT, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function \"%s\" is not registered", name),
				 errhint("Register it with dasa.register first.")));
	fn->proc = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	fn->timeout = *DatumGetIntervalP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
}

/* A random (version 4) UUID as text: the id of an invocation given none. */
static char *
random_id(void)
{
	uint8		b[16];

	if (!pg_strong_random(b, sizeof(b)))
		elog(ERROR, "could not generate a random id");
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	return psprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
					b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
					b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/*
 * Create the invocation of name with args (id NULL: a fresh one; timeout
 * NULL: the function's). Returns its id. An existing id starts nothing new.
 */
char *
dasa_invoke_internal(const char *name, Jsonb *args, const char *id,
					 Interval *timeout, Oid caller)
{
	RegisteredFunction fn;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz timeout_at;
	Jsonb	   *no_tags = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	DasaUserSave save;

	if (id == NULL)
		id = random_id();
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	prepare_plans();
	lookup_function(name, &fn);
	if (pg_proc_aclcheck(fn.proc, caller, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to invoke \"%s\"", name),
				 errdetail("Invoking needs EXECUTE on %s.", format_procedure(fn.proc))));
	timeout_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														 TimestampTzGetDatum(now),
														 IntervalPGetDatum(timeout ? timeout : &fn.timeout)));
	if (dasa_insert_promise(id, args, no_tags, timeout_at, now))
	{
		Datum		task_args[3] = {CStringGetTextDatum(id), CStringGetTextDatum(name),
		TimestampTzGetDatum(now)};

		dasa_execute(task_plan, task_args, NULL, SPI_OK_INSERT, 0);
		dasa_wake_at_commit_task();
	}
	SPI_finish();
	dasa_restore_user(&save);
	return (char *) id;
}

/* dasa.invoke(name, args, id, timeout): the invocation's id, at once. */
Datum
dasa_invoke(PG_FUNCTION_ARGS)
{
	char	   *name = dasa_check_function_name(fcinfo, 0);
	char	   *id = PG_ARGISNULL(2) ? NULL : dasa_check_id(fcinfo, 2);
	Interval   *timeout = PG_ARGISNULL(3) ? NULL : dasa_check_interval(fcinfo, 3, "timeout");
	Jsonb	   *args = dasa_check_args(fcinfo, 1);
	PG_RETURN_TEXT_P(cstring_to_text(dasa_invoke_internal(name, args, id, timeout, GetUserId())));
}
