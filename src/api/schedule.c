/*
 * schedule.c: dasa.schedule, dasa.unschedule and dasa.cron_next
 * (SQL-callable).
 *
 * Checks a schedule (its cron text and time zone read, it fires at all, its
 * id template names each firing apart, the caller may invoke the function)
 * and writes it through the kernel as the extension owner, owned by the
 * caller. The dasa worker fires it (core/schedules.c).
 */
#include "api/api.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(dasa_schedule);
PG_FUNCTION_INFO_V1(dasa_unschedule);
PG_FUNCTION_INFO_V1(dasa_cron_next_sql);

#define MAX_SCHEDULE_NAME 200

static char *
required_text(FunctionCallInfo fcinfo, int argno, const char *what, const char *hint)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what),
				 errhint("%s", hint)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static char *
schedule_name(FunctionCallInfo fcinfo, int argno)
{
	char	   *name = required_text(fcinfo, argno, "schedule name", "Pass a name for the schedule.");

	if (name[0] == '\0' || strlen(name) > MAX_SCHEDULE_NAME)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schedule name must have 1 to %d bytes", MAX_SCHEDULE_NAME),
				 errdetail("The name given has %zu bytes.", strlen(name))));
	return name;
}

/* The id template must name each firing apart, and give ids of a valid length. */
static void
check_promise_id(const DasaSchedule *s, TimestampTz sample)
{
	bool		timed;
	char	   *id = dasa_schedule_promise_id(s->promise_id, s->name, sample, &timed);

	if (!timed)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("promise_id \"%s\" gives every firing the same id", s->promise_id),
				 errdetail("A firing whose id exists already starts nothing, so only the first would run."),
				 errhint("Put {{.time}} (UTC, ISO 8601) or {{.timestamp}} (milliseconds since 1970) in it, as in the default '{{.id}}:{{.time}}'.")));
	dasa_check_id_length(strlen(id));
}

/* When s first fires after now; a never-firing expression is refused. */
static TimestampTz
first_firing(const DasaSchedule *s, TimestampTz now)
{
	DasaCron	cron;
	TimestampTz next;

	dasa_cron_parse(s->cron, &cron);
	next = dasa_cron_next(&cron, now, dasa_time_zone(s->time_zone));
	if (next == DT_NOEND)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cron expression \"%s\" never fires", s->cron),
				 errdetail("No time in the next 10 years matches it (in time zone %s).", s->time_zone),
				 errhint("Check the day of month against the month, such as 30 or 31 in February.")));
	return next;
}

/*
 * dasa.schedule(name, cron, function, args, timeout, time_zone, promise_id,
 * tags): create or replace a schedule owned by the calling role.
 */
Datum
dasa_schedule(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	DasaSchedule s = {.owner = GetUserId()};
	TimestampTz next;
	DasaUserSave save;
	DasaRows	row;
	DasaLookup	fn;
	Datum		result;

	s.name = schedule_name(fcinfo, 0);
	s.cron = required_text(fcinfo, 1, "cron", "Pass a cron expression such as '*/5 * * * *', '@daily' or '30 seconds'.");
	s.function = dasa_check_function_name(fcinfo, 2);
	s.args = dasa_check_args(fcinfo, 3);
	s.timeout = PG_ARGISNULL(4) ? NULL : dasa_check_interval(fcinfo, 4, "timeout");
	s.time_zone = required_text(fcinfo, 5, "time_zone", "Pass 'UTC' or a name from pg_timezone_names.");
	s.promise_id = required_text(fcinfo, 6, "promise_id", "Pass a template such as '{{.id}}:{{.time}}'.");
	s.tags = dasa_check_tags(fcinfo, 7);
	next = first_firing(&s, GetCurrentTimestamp());
	check_promise_id(&s, next);

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	dasa_check_may_invoke(s.function, s.owner, &fn);
	row = dasa_schedule_upsert(&s, next);
	result = dasa_row_as_result(fcinfo, &row, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_DATUM(result);
}

/* dasa.unschedule(name): drop the calling role's schedule; false if there is none. */
Datum
dasa_unschedule(PG_FUNCTION_ARGS)
{
	char	   *name = schedule_name(fcinfo, 0);
	Oid			caller = GetUserId();
	DasaUserSave save;
	bool		dropped;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	dropped = dasa_schedule_delete(name, caller);
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_BOOL(dropped);
}

/* dasa.cron_next(cron, after, time_zone): the first firing after after; NULL if none. */
Datum
dasa_cron_next_sql(PG_FUNCTION_ARGS)
{
	DasaCron	cron;
	TimestampTz next;

	dasa_cron_parse(text_to_cstring(PG_GETARG_TEXT_PP(0)), &cron);
	next = dasa_cron_next(&cron, PG_GETARG_TIMESTAMPTZ(1),
						  dasa_time_zone(text_to_cstring(PG_GETARG_TEXT_PP(2))));
	if (next == DT_NOEND)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(next);
}
