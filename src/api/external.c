/*
 * external.c: the external worker protocol (SQL-callable): dasa.claim,
 * dasa.heartbeat, dasa.complete, dasa.fail and dasa.queue_channel.
 *
 * Checks the arguments and runs the kernel's operations (core/external.c)
 * as the extension owner, on behalf of the calling role: a worker must be
 * the queue's owner or a member of it. complete and fail write in the
 * caller's transaction, so a worker that keeps its data in this database
 * commits its effects and the result together, or neither.
 */
#include "api/api.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(dasa_queue_channel_sql);
PG_FUNCTION_INFO_V1(dasa_claim);
PG_FUNCTION_INFO_V1(dasa_heartbeat);
PG_FUNCTION_INFO_V1(dasa_complete);
PG_FUNCTION_INFO_V1(dasa_fail);
PG_FUNCTION_INFO_V1(dasa_complete_all);

/* Most tasks one claim may take, or one complete_all complete. */
#define MAX_CLAIM 1000

static char *
required_text(FunctionCallInfo fcinfo, int argno, const char *what)
{
	char	   *value;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what)));
	value = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	return value;
}

int64
dasa_required_version(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("version must not be NULL"),
				 errhint("Pass the version dasa.claim returned with the task.")));
	return PG_GETARG_INT64(argno);
}

/* dasa.queue_channel(queue): the channel a queue's workers LISTEN on. */
Datum
dasa_queue_channel_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(dasa_queue_channel(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

/*
 * dasa.claim(queue, worker, max, lease, bind_session): up to max due tasks
 * of queue, claimed for worker, released if this session ends first
 * (unless !bind_session) or the lease runs out without a heartbeat.
 */
Datum
dasa_claim(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *queue = required_text(fcinfo, 0, "queue");
	char	   *worker = required_text(fcinfo, 1, "worker");
	int			max = PG_ARGISNULL(2) ? -1 : PG_GETARG_INT32(2);
	Interval   *lease = dasa_check_interval(fcinfo, 3, "lease");
	bool		bind_session = PG_ARGISNULL(4) ? true : PG_GETARG_BOOL(4);
	Oid			caller = GetUserId();
	DasaUserSave save;
	DasaRows	rows;

	if (max < 1 || max > MAX_CLAIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max must be between 1 and %d", MAX_CLAIM)));
	if (lease->month == 0 && lease->day == 0 && lease->time < USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be at least 1 second"),
				 errhint("Claim with a lease longer than a task takes, and call dasa.heartbeat for longer ones.")));
	InitMaterializedSRF(fcinfo, 0);
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	rows = dasa_external_claim(queue, worker, max, lease, bind_session, caller);
	for (uint64 i = 0; i < rows.n; i++)
	{
		Datum		values[5];
		bool		nulls[5];

		heap_deform_tuple(rows.table->vals[i], rows.table->tupdesc, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	dasa_restore_user(&save);
	return (Datum) 0;
}

/* dasa.heartbeat(worker): extend worker's leases; returns how many tasks it holds. */
Datum
dasa_heartbeat(PG_FUNCTION_ARGS)
{
	char	   *worker = required_text(fcinfo, 0, "worker");
	Oid			caller = GetUserId();
	DasaUserSave save;
	int			held;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	held = dasa_external_heartbeat(worker, caller);
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_INT32(held);
}

/* Elements of array argument argno (n of them), of type elemtype; NULL elements are an error unless allowed. */
static Datum *
array_elements(FunctionCallInfo fcinfo, int argno, Oid elemtype, const char *what,
			   bool nulls_allowed, bool **nulls, int *n)
{
	Datum	   *elems;
	int16		typlen;
	bool		byval;
	char		align;

	get_typlenbyvalalign(elemtype, &typlen, &byval, &align);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(argno), elemtype, typlen, byval, align, &elems, nulls, n);
	if (*n > MAX_CLAIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s holds %d elements; at most %d", what, *n, MAX_CLAIM)));
	for (int i = 0; !nulls_allowed && i < *n; i++)
		if ((*nulls)[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain NULL", what)));
	return elems;
}

/*
 * dasa.complete_all(ids, versions, values): complete a batch of claimed
 * tasks (ids[i] at versions[i], resolved with values[i]; values NULL: all
 * NULL) in the caller's transaction. Tasks no longer held at that version
 * are left alone. Returns how many were completed (NULL ids: none).
 */
Datum
dasa_complete_all(PG_FUNCTION_ARGS)
{
	bool	   *nulls;
	int			n,
				nversions,
				nvalues = 0;
	Datum	   *id_elems,
			   *version_elems,
			   *value_elems = NULL;
	char	  **ids;
	int64	   *versions;
	Jsonb	  **values = NULL;
	Oid			caller = GetUserId();
	DasaUserSave save;
	int			completed;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_INT32(0);		/* array_agg over no claimed task */
	id_elems = array_elements(fcinfo, 0, TEXTOID, "ids", false, &nulls, &n);
	version_elems = array_elements(fcinfo, 1, INT8OID, "versions", false, &nulls, &nversions);
	if (!PG_ARGISNULL(2))
		value_elems = array_elements(fcinfo, 2, JSONBOID, "values", true, &nulls, &nvalues);
	if (nversions != n || (value_elems != NULL && nvalues != n))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ids, versions and values must be as long as each other"),
				 errdetail("They hold %d, %d and %d elements.", n, nversions, value_elems ? nvalues : n)));
	ids = palloc(sizeof(char *) * Max(n, 1));
	versions = palloc(sizeof(int64) * Max(n, 1));
	if (value_elems != NULL)
		values = palloc0(sizeof(Jsonb *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		ids[i] = TextDatumGetCString(id_elems[i]);
		dasa_check_id_length(strlen(ids[i]));
		versions[i] = DatumGetInt64(version_elems[i]);
		if (value_elems != NULL && !nulls[i])
		{
			values[i] = DatumGetJsonbP(value_elems[i]);
			dasa_check_payload(values[i], "value");
		}
	}
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	completed = dasa_external_complete_all(n, ids, versions, values, caller);
	SPI_finish();
	dasa_restore_user(&save);
	for (int i = 0; i < n; i++)
		(void) dasa_context_leave(ids[i]);
	PG_RETURN_INT32(completed);
}

/* dasa.complete(id, version, value): resolve a claimed task's promise; returns it. */
Datum
dasa_complete(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	int64		version = dasa_required_version(fcinfo, 1);
	Jsonb	   *value = dasa_check_optional_payload(fcinfo, 2, "value");
	Oid			caller = GetUserId();
	DasaUserSave save;
	DasaRows	promise;
	Datum		result;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	promise = dasa_external_complete(id, version, value, caller);
	result = dasa_row_as_promise(fcinfo, &promise, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	(void) dasa_context_leave(id);
	PG_RETURN_DATUM(result);
}

/* A string member of a JSON object, or NULL. */
static char *
member_text(Jsonb *object, const char *key)
{
	JsonbValue *v;

	if (object == NULL || !JB_ROOT_IS_OBJECT(object))
		return NULL;
	v = getKeyJsonValueFromContainer(&object->root, key, strlen(key), NULL);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * The worker's error as an attempt's error: its "message" (or the whole
 * value) and its "sqlstate" when it is one (else DA011); the whole value
 * is kept as the detail.
 */
static ErrorData *
worker_error(Jsonb *error)
{
	char	   *message = member_text(error, "message");
	char	   *sqlstate = member_text(error, "sqlstate");
	char	   *whole = error ? JsonbToCString(NULL, &error->root, VARSIZE(error)) : NULL;
	int			code = ERRCODE_DASA_EXTERNAL_FAILURE;

	if (sqlstate != NULL && strlen(sqlstate) == 5 &&
		strspn(sqlstate, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5)
		code = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3], sqlstate[4]);
	if (message == NULL && error != NULL && JB_ROOT_IS_SCALAR(error))
		message = whole;
	return dasa_make_error(code, message ? message : "the external worker reported a failure", whole);
}

/* dasa.fail(id, version, error, retry): a claimed task's attempt failed; returns its promise. */
Datum
dasa_fail(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	int64		version = dasa_required_version(fcinfo, 1);
	Jsonb	   *error = dasa_check_optional_payload(fcinfo, 2, "error");
	bool		retry = PG_ARGISNULL(3) ? true : PG_GETARG_BOOL(3);
	Oid			caller = GetUserId();
	DasaUserSave save;
	DasaRows	promise;
	Datum		result;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	promise = dasa_external_fail(id, version, worker_error(error), retry, caller);
	result = dasa_row_as_promise(fcinfo, &promise, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	(void) dasa_context_leave(id);
	PG_RETURN_DATUM(result);
}
