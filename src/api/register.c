/*
 * register.c: dasa.register, dasa.register_external and dasa.unregister
 * (SQL-callable).
 *
 * Checks what is registered (a function (jsonb) -> jsonb the caller may
 * execute, or a queue the caller may work; sane retry options) and who may
 * change a name, then writes the registration through the kernel as the
 * extension owner. It never runs the procedure.
 */
#include "api/api.h"

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
PG_FUNCTION_INFO_V1(dasa_register_external);

/* The longest queue name (its channel name is derived, so any length would do). */
#define MAX_QUEUE_BYTES 256

/* What keeps a procedure from being a dasa function, in words; NULL if nothing. */
static char *
signature_problem(Form_pg_proc form, Oid proc)
{
	if (form->prokind != PROKIND_FUNCTION)
		return psprintf("%s is a %s, not a function.", format_procedure(proc),
						form->prokind == PROKIND_PROCEDURE ? "procedure" : "aggregate or window function");
	if (form->pronargs != 1 || form->proargtypes.values[0] != JSONBOID)
		return psprintf("%s takes %s; a dasa function takes exactly one argument, of type jsonb.",
						format_procedure(proc),
						form->pronargs == 0 ? "no argument" :
						form->pronargs == 1 ? psprintf("one argument of type %s",
													   format_type_be(form->proargtypes.values[0])) :
						psprintf("%d arguments", form->pronargs));
	if (form->proretset || form->prorettype != JSONBOID)
		return psprintf("%s returns %s%s; a dasa function returns one jsonb value.",
						format_procedure(proc), form->proretset ? "a set of " : "",
						format_type_be(form->prorettype));
	return NULL;
}

/* The procedure must be a plain function taking jsonb and returning jsonb. */
static void
check_signature(Oid proc)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(proc));
	char	   *problem;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", proc)));
	problem = signature_problem((Form_pg_proc) GETSTRUCT(tup), proc);
	ReleaseSysCache(tup);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s cannot be registered", format_procedure(proc)),
				 errdetail_internal("%s", problem),
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

/* The retry and timeout policy, arguments 2 to 6 of both register functions. */
static void
read_policy(FunctionCallInfo fcinfo, DasaRegistration *r)
{
	require_not_null(fcinfo, 2, "max_attempts");
	require_not_null(fcinfo, 5, "jitter");
	r->max_attempts = PG_GETARG_INT32(2);
	r->initial_backoff = dasa_check_interval(fcinfo, 3, "initial_backoff");
	r->max_backoff = dasa_check_interval(fcinfo, 4, "max_backoff");
	r->jitter = PG_GETARG_FLOAT8(5);
	r->timeout = dasa_check_interval(fcinfo, 6, "timeout");
	check_retry_options(r->max_attempts, r->initial_backoff, r->max_backoff, r->jitter);
}

/* The most invocations of a function that may run at once: NULL (0: no limit), or 1 to 10,000. */
static int
check_max_running(FunctionCallInfo fcinfo, int argno)
{
	int32		n;

	if (PG_ARGISNULL(argno))
		return 0;
	n = PG_GETARG_INT32(argno);
	if (n < 1 || n > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_running must be between 1 and 10000"),
				 errdetail("The value given was %d.", n),
				 errhint("Pass NULL for no limit.")));
	return n;
}

/* One attempt's timeout: a positive interval. */
static Interval *
check_attempt_timeout(FunctionCallInfo fcinfo, int argno)
{
	Interval   *span = dasa_check_interval(fcinfo, argno, "attempt_timeout");

	if (span->time == 0 && span->day == 0 && span->month == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attempt_timeout must be longer than zero"),
				 errhint("Pass how long one attempt may run, such as '10 minutes'.")));
	return span;
}

/* Write r as the extension owner, once caller may change its name; returns the row. */
static Datum
write_registration(FunctionCallInfo fcinfo, DasaRegistration *r, Oid caller)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	DasaUserSave save;
	DasaRows	row;
	Datum		result;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	dasa_registry_check_owner(r->name, caller);
	if (r->queue != NULL)
		dasa_registry_check_queue(r->queue, r->name, caller);
	row = dasa_registry_upsert(r);
	result = dasa_row_as_result(fcinfo, &row, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	return result;
}

/*
 * dasa.register(name, fn, max_attempts, initial_backoff, max_backoff,
 * jitter, timeout): bind name to fn and its policy, owned by the calling role.
 */
Datum
dasa_register(PG_FUNCTION_ARGS)
{
	Oid			caller = GetUserId();
	DasaRegistration r = {.name = dasa_check_function_name(fcinfo, 0), .owner = caller};

	require_not_null(fcinfo, 1, "fn");
	r.proc = PG_GETARG_OID(1);
	read_policy(fcinfo, &r);
	r.attempt_timeout = PG_NARGS() > 7 ? check_attempt_timeout(fcinfo, 7) : r.timeout;
	r.max_running = PG_NARGS() > 8 ? check_max_running(fcinfo, 8) : 0;
	check_signature(r.proc);
	if (pg_proc_aclcheck(r.proc, caller, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(r.proc)),
				 errdetail("Registering a function needs EXECUTE on it.")));
	PG_RETURN_DATUM(write_registration(fcinfo, &r, caller));
}

/* The queue argument: not empty, not too long. */
static char *
check_queue(FunctionCallInfo fcinfo, int argno)
{
	char	   *queue;

	require_not_null(fcinfo, argno, "queue");
	queue = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (queue[0] == '\0' || strlen(queue) > MAX_QUEUE_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid queue name"),
				 errdetail("A queue name has 1 to %d bytes; this one has %zu.", MAX_QUEUE_BYTES, strlen(queue)),
				 errhint("Workers listen on dasa.queue_channel(queue), whatever its name.")));
	return queue;
}

/*
 * dasa.register_external(name, queue, max_attempts, initial_backoff,
 * max_backoff, jitter, timeout): name is carried out by workers that claim
 * from queue; owned by the calling role, as the queue is.
 */
Datum
dasa_register_external(PG_FUNCTION_ARGS)
{
	Oid			caller = GetUserId();
	DasaRegistration r = {.name = dasa_check_function_name(fcinfo, 0), .owner = caller};

	r.queue = check_queue(fcinfo, 1);
	read_policy(fcinfo, &r);
	r.attempt_timeout = r.timeout;	/* (a worker's attempt is bounded by its lease) */
	PG_RETURN_DATUM(write_registration(fcinfo, &r, caller));
}

/* dasa.unregister(name): true if it was registered. Pending invocations of it fail. */
Datum
dasa_unregister(PG_FUNCTION_ARGS)
{
	char	   *name = dasa_check_function_name(fcinfo, 0);
	Oid			caller = GetUserId();
	DasaUserSave save;
	bool		deleted;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	dasa_registry_check_owner(name, caller);
	deleted = dasa_registry_delete(name);
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_BOOL(deleted);
}
