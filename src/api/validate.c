/*
 * validate.c: checks on user input to dasa's SQL functions.
 *
 * Every check raises a clear error (SQLSTATE, detail, hint) before anything
 * is written, so bad input never leaves a partial change behind.
 */
#include "api/api.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

/* A promise id of len bytes: not empty, not over the limit (the same errors everywhere). */
void
dasa_check_id_length(int len)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("promise id must not be empty"),
				 errhint("Pass a text id that names the promise.")));
	if (len > DASA_MAX_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("promise id is too long"),
				 errdetail("The id has %d bytes; the limit is %d.", len, DASA_MAX_ID_BYTES),
				 errhint("Use a shorter id, for example a hash of a long key.")));
}

/* The promise id in argument argno: not NULL, not empty, not over the limit. */
char *
dasa_check_id(FunctionCallInfo fcinfo, int argno)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("promise id must not be NULL"),
				 errhint("Pass a text id that names the promise.")));
	t = PG_GETARG_TEXT_PP(argno);
	dasa_check_id_length(VARSIZE_ANY_EXHDR(t));
	return text_to_cstring(t);
}

/*
 * The interval in argument argno: required, not negative, at most 1000 years.
 * "what" names the argument in messages.
 */
Interval *
dasa_check_interval(FunctionCallInfo fcinfo, int argno, const char *what)
{
	Interval   *span;
	Interval	zero = {0};
	Interval	longest = {.month = DASA_MAX_TIMEOUT_YEARS * MONTHS_PER_YEAR};

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what),
				 errhint("Pass an interval such as '1 hour'.")));
	span = PG_GETARG_INTERVAL_P(argno);

	/*
	 * Every part must be non-negative: a month is not a fixed number of
	 * days, so '-1 month 30 days 1 second' is positive or negative
	 * depending on the date, and a deadline written so could be born past.
	 */
	if (span->month < 0 || span->day < 0 || span->time < 0 ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(span),
										  IntervalPGetDatum(&zero))) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", what),
				 errdetail("The interval given was %s; none of its months, days and time may be negative.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(span)))),
				 errhint("Pass a zero or positive interval, such as '23 hours' rather than '1 day -1 hour'.")));
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(span),
										  IntervalPGetDatum(&longest))) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s is too long", what),
				 errdetail("The longest is %d years.", DASA_MAX_TIMEOUT_YEARS)));
	return span;
}

/* now plus the checked interval in argument argno. */
TimestampTz
dasa_check_timeout(FunctionCallInfo fcinfo, int argno, const char *what, TimestampTz now)
{
	Interval   *span;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what),
				 errdetail("Every promise has a timeout."),
				 errhint("Pass an interval such as '1 hour'.")));
	span = dasa_check_interval(fcinfo, argno, what);
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(now),
												   IntervalPGetDatum(span)));
}

/* A name for a registered function: not NULL, not empty, not over the limit. */
char *
dasa_check_function_name(FunctionCallInfo fcinfo, int argno)
{
	text	   *t;
	int			len;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("function name must not be NULL"),
				 errhint("Pass the name the function was registered under.")));
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0 || len > DASA_MAX_FUNCTION_NAME)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("function name must have 1 to %d bytes", DASA_MAX_FUNCTION_NAME),
				 errdetail("The name given has %d bytes.", len)));
	return text_to_cstring(t);
}

/* Tags: a JSON object of string values; NULL means no tags. */
Jsonb *
dasa_check_tags(FunctionCallInfo fcinfo, int argno)
{
	Jsonb	   *tags;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (PG_ARGISNULL(argno))
		return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	tags = PG_GETARG_JSONB_P(argno);
	dasa_check_payload(tags, "tags");
	if (!JB_ROOT_IS_OBJECT(tags))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tags must be a JSON object"),
				 errdetail("The tags given were %s.", JsonbToCString(NULL, &tags->root, VARSIZE(tags))),
				 errhint("Pass an object of string values, such as '{\"%s\": \"true\"}'.", DASA_TIMER_TAG)));

	it = JsonbIteratorInit(&tags->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_VALUE && v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("tag values must be JSON strings"),
					 errdetail("The tags given were %s.", JsonbToCString(NULL, &tags->root, VARSIZE(tags))),
					 errhint("Quote the value, as in '{\"%s\": \"true\"}'.", DASA_TIMER_TAG)));
	}
	return tags;
}

/* An optional document (param, value): NULL stays NULL; otherwise within the payload limit. */
Jsonb *
dasa_check_optional_payload(FunctionCallInfo fcinfo, int argno, const char *what)
{
	Jsonb	   *value;

	if (PG_ARGISNULL(argno))
		return NULL;
	value = PG_GETARG_JSONB_P(argno);
	dasa_check_payload(value, what);
	return value;
}

/* Invocation arguments: any JSON document within the payload limit, not SQL NULL. */
Jsonb *
dasa_check_args(FunctionCallInfo fcinfo, int argno)
{
	Jsonb	   *args;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("args must not be NULL"),
				 errhint("Pass '{}' for no arguments.")));
	args = PG_GETARG_JSONB_P_COPY(argno);
	dasa_check_payload(args, "args");
	return args;
}

/* The arguments of dasa.invoke and dasa.call: (name, args, id, timeout). */
void
dasa_check_invoke_args(FunctionCallInfo fcinfo, DasaInvokeArgs *out)
{
	out->name = dasa_check_function_name(fcinfo, 0);
	out->id = PG_ARGISNULL(2) ? NULL : dasa_check_id(fcinfo, 2);
	out->timeout = PG_ARGISNULL(3) ? NULL : dasa_check_interval(fcinfo, 3, "timeout");
	out->args = dasa_check_args(fcinfo, 1);
}

/* When an invocation may start: 0 (NULL, -infinity, or a time past: at once), or a finite time. */
TimestampTz
dasa_check_start_at(FunctionCallInfo fcinfo, int argno)
{
	TimestampTz start_at;

	if (PG_ARGISNULL(argno))
		return 0;
	start_at = PG_GETARG_TIMESTAMPTZ(argno);
	if (TIMESTAMP_IS_NOEND(start_at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_at must be a finite time"),
				 errdetail("It is infinity: the invocation would never start."),
				 errhint("Pass a time such as now() + interval '1 hour', or NULL to start at once.")));
	return TIMESTAMP_IS_NOBEGIN(start_at) ? 0 : start_at;
}

/* A priority: 0 (NULL: the default) to 32767, higher first. */
int
dasa_check_priority(FunctionCallInfo fcinfo, int argno)
{
	int32		priority;

	if (PG_ARGISNULL(argno))
		return 0;
	priority = PG_GETARG_INT32(argno);
	if (priority < 0 || priority > PG_INT16_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("priority must be between 0 and %d", PG_INT16_MAX),
				 errdetail("The value given was %d.", priority),
				 errhint("0, the default, is the lowest: invocations with a higher one run first.")));
	return priority;
}
