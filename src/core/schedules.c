/*
 * schedules.c: schedules, and their firing.
 *
 * A schedule invokes a registered function at the times of a cron
 * expression, as the role that made it. Each firing is an invocation with
 * an id made from the schedule's template and the firing time, written in
 * the same transaction that moves the schedule to its next firing: a firing
 * happens once, whoever fires it and however often it is tried. Firings
 * missed while nothing ran (the server down) collapse into the latest one.
 * A Resonate schedule (schedule.create) fires a promise instead (resonate.c).
 * The dasa worker calls dasa_schedules_fire; it never runs user code.
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#define SCHEDULE_COLUMNS \
	"name, cron, time_zone, function, args, timeout, promise_id, tags, owner, created_at, " \
	"next_run_at, last_run_at, last_invocation, last_error"

/* The owner of schedule $1, locked. */
static DasaStatement lock_owner = {
	.since = "0.8.0",
	.sql = "SELECT owner::oid AS owner FROM dasa.schedules WHERE name = $1 FOR UPDATE",
	.args = {TEXTOID},
	.columns = {"owner"},
};

static DasaStatement upsert = {
	.since = "0.8.0",
	.sql = "INSERT INTO dasa.schedules (name, cron, time_zone, function, args, timeout, promise_id, tags,"
	"  owner, created_at, next_run_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
	"ON CONFLICT (name) DO UPDATE SET cron = $2, time_zone = $3, function = $4, args = $5,"
	"  timeout = $6, promise_id = $7, tags = $8, owner = $9, next_run_at = $11, last_error = NULL "
	"RETURNING " SCHEDULE_COLUMNS,
	.args = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, INTERVALOID, TEXTOID, JSONBOID, OIDOID,
	TIMESTAMPTZOID, TIMESTAMPTZOID},
	.columns = {"name", "cron", "time_zone", "function", "args", "timeout", "promise_id", "tags",
	"owner", "created_at", "next_run_at", "last_run_at", "last_invocation", "last_error"},
};

static DasaStatement delete_schedule = {
	.since = "0.8.0",
	.sql = "DELETE FROM dasa.schedules WHERE name = $1",
	.args = {TEXTOID},
};

/* Up to $2 schedules due at $1, locked; one another process fires now is passed by. */
static DasaStatement due_schedules = {
	.since = "0.8.0",
	.sql = "SELECT name, cron, time_zone, function, args, timeout, promise_id, tags, owner::oid AS owner,"
	"  next_run_at FROM dasa.schedules WHERE next_run_at <= $1 ORDER BY next_run_at LIMIT $2 "
	"FOR UPDATE SKIP LOCKED",
	.args = {TIMESTAMPTZOID, INT4OID},
	.columns = {"name", "cron", "time_zone", "function", "args", "timeout", "promise_id", "tags",
	"owner", "next_run_at"},
};

static DasaStatement record_firing = {
	.since = "0.8.0",
	.sql = "UPDATE dasa.schedules SET next_run_at = $2, last_run_at = coalesce($3, last_run_at),"
	"  last_invocation = coalesce($4, last_invocation), last_error = $5 WHERE name = $1",
	.args = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID},
};

static DasaStatement next_firing = {
	.since = "0.8.0",
	.sql = "SELECT min(next_run_at) AS next FROM dasa.schedules",
	.columns = {"next"},
};

/* Only the role that made a schedule (or a superuser) may change or drop it. */
void
dasa_schedule_check_owner(const char *name, Oid caller)
{
	dasa_check_changer(&lock_owner, name, caller, "schedule \"%s\" belongs to role \"%s\"",
					   "Only that role or a superuser can change or drop it; use another name.");
}

/* Create or replace a schedule (its owner checked first); returns its row. */
DasaRows
dasa_schedule_upsert(const DasaSchedule *s, TimestampTz next_run_at)
{
	Datum		args[11] = {CStringGetTextDatum(s->name), CStringGetTextDatum(s->cron),
		CStringGetTextDatum(s->time_zone), CStringGetTextDatum(s->function),
		PointerGetDatum(s->args), s->timeout ? IntervalPGetDatum(s->timeout) : (Datum) 0,
		CStringGetTextDatum(s->promise_id), PointerGetDatum(s->tags), ObjectIdGetDatum(s->owner),
	TimestampTzGetDatum(GetCurrentTimestamp()), TimestampTzGetDatum(next_run_at)};
	char		nulls[11] = {' ', ' ', ' ', ' ', ' ', s->timeout ? ' ' : 'n', ' ', ' ', ' ', ' ', ' '};

	dasa_schedule_check_owner(s->name, s->owner);
	dasa_wake_at_commit_deadline(next_run_at);
	return dasa_run(&upsert, args, nulls, 0);
}

/* Drop schedule name (its owner checked first); false if there is none. */
bool
dasa_schedule_delete(const char *name, Oid caller)
{
	Datum		args[1] = {CStringGetTextDatum(name)};

	dasa_schedule_check_owner(name, caller);
	return dasa_run(&delete_schedule, args, NULL, 0).n > 0;
}

/* Append the firing time at to buf as the placeholder key asks. */
static void
append_time(StringInfo buf, const char *key, TimestampTz at)
{
	if (strcmp(key, "timestamp") == 0)
		appendStringInfo(buf, INT64_FORMAT,
						 (at + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / 1000);
	else
	{
		struct pg_tm tm;
		fsec_t		fsec;

		if (timestamp2tm(at, NULL, &tm, &fsec, NULL, NULL) != 0)
			ereport(ERROR, (errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE), errmsg("timestamp out of range")));
		appendStringInfo(buf, "%04d-%02d-%02dT%02d:%02d:%02dZ",
						 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	}
}

/*
 * The id of the firing at time at of schedule name: template with {{.id}}
 * (the name), {{.time}} (UTC, ISO 8601) and {{.timestamp}} (milliseconds
 * since 1970, as Resonate's schedules have it) filled in. *timed: whether a
 * time placeholder occurs (without one, every firing would have one id).
 */
char *
dasa_schedule_promise_id(const char *template, const char *name, TimestampTz at, bool *timed)
{
	StringInfoData buf;
	static const char *const keys[] = {"id", "time", "timestamp"};

	initStringInfo(&buf);
	*timed = false;
	for (const char *p = template; *p != '\0';)
	{
		bool		matched = false;

		for (int k = 0; k < lengthof(keys) && strncmp(p, "{{.", 3) == 0; k++)
		{
			size_t		len = strlen(keys[k]);

			if (strncmp(p + 3, keys[k], len) != 0 || strncmp(p + 3 + len, "}}", 2) != 0)
				continue;
			if (k == 0)
				appendStringInfoString(&buf, name);
			else
			{
				append_time(&buf, keys[k], at);
				*timed = true;
			}
			p += 3 + len + 2;
			matched = true;
			break;
		}
		if (!matched)
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

/* The latest firing at or before now, from the first one due (next). */
static TimestampTz
latest_due(const DasaCron *cron, pg_tz *tz, TimestampTz next, TimestampTz now)
{
	TimestampTz later;

	if (cron->every_seconds > 0)
	{
		TimestampTz last = dasa_cron_next(cron, now, tz) - (int64) cron->every_seconds * USECS_PER_SEC;

		return Max(next, last);
	}
	while ((later = dasa_cron_next(cron, next, tz)) <= now)
	{
		CHECK_FOR_INTERRUPTS();
		next = later;
	}
	return next;
}

/* What one firing needs, worked out (planned) and then done (invoked). */
typedef struct Firing
{
	const DasaSchedule *schedule;
	TimestampTz due;			/* the first firing due */
	TimestampTz now;
	TimestampTz at;				/* the firing time fired */
	TimestampTz next;			/* the one after it */
	char	   *id;
} Firing;

static void
plan_firing(void *arg)
{
	Firing	   *f = arg;
	DasaCron	cron;
	pg_tz	   *tz = dasa_time_zone(f->schedule->time_zone);
	bool		timed;

	dasa_cron_parse(f->schedule->cron, &cron);
	f->at = latest_due(&cron, tz, f->due, f->now);
	f->next = dasa_cron_next(&cron, f->at, tz);
	f->id = dasa_schedule_promise_id(f->schedule->promise_id, f->schedule->name, f->at, &timed);
}

static void
invoke_firing(void *arg)
{
	Firing	   *f = arg;
	const DasaSchedule *s = f->schedule;

	if (strcmp(s->function, DASA_RESONATE_SCHEDULE) == 0)
		dasa_resonate_schedule_fired(s->name, f->id, f->at, s->args, s->tags, s->owner);
	else
		(void) dasa_invoke_tagged(s->function, s->args, f->id, s->timeout, s->tags, s->owner);
}

/* Run step(f) in a subtransaction; NULL if it went through, else its error message. */
static char *
guarded(void (*step) (void *), Firing *f)
{
	ErrorData  *failure = dasa_try(step, f);

	return failure ? failure->message : NULL;
}

static void
read_schedule(const DasaRows *rows, uint64 i, DasaSchedule *s)
{
	bool		isnull;
	Datum		timeout = dasa_get(rows, i, "timeout", &isnull);

	s->name = dasa_get_text(rows, i, "name");
	s->cron = dasa_get_text(rows, i, "cron");
	s->time_zone = dasa_get_text(rows, i, "time_zone");
	s->function = dasa_get_text(rows, i, "function");
	s->args = dasa_get_jsonb_copy(rows, i, "args");
	s->timeout = isnull ? NULL : DatumGetIntervalP(timeout);
	s->promise_id = dasa_get_text(rows, i, "promise_id");
	s->tags = dasa_get_jsonb_copy(rows, i, "tags");
	s->owner = DatumGetObjectId(dasa_get(rows, i, "owner", &isnull));
}

/*
 * Fire one due schedule: its latest due firing, then on to the next. One
 * whose cron text or time zone no longer reads stops (next_run_at infinity).
 */
static void
fire(const DasaSchedule *s, TimestampTz due, TimestampTz now)
{
	Firing		f = {.schedule = s, .due = due, .now = now, .next = DT_NOEND};
	char	   *failure = guarded(plan_firing, &f);
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	if (failure == NULL)
		failure = guarded(invoke_firing, &f);
	if (failure != NULL)
		ereport(LOG,
				(errmsg("dasa: schedule \"%s\" could not invoke \"%s\"%s%s: %s", s->name, s->function,
						f.id ? " as " : "", f.id ? f.id : "", failure)));
	args[0] = CStringGetTextDatum(s->name);
	args[1] = TimestampTzGetDatum(f.next);
	args[2] = TimestampTzGetDatum(f.at);
	args[3] = f.id ? CStringGetTextDatum(f.id) : (Datum) 0;
	args[4] = failure ? CStringGetTextDatum(failure) : (Datum) 0;
	nulls[2] = nulls[3] = f.id ? ' ' : 'n';
	nulls[4] = failure ? ' ' : 'n';
	(void) dasa_run(&record_firing, args, nulls, 0);
}

/*
 * Fire up to batch schedules due at now, each once (its latest due time);
 * returns how many were due. A schedule that cannot fire (its function
 * unregistered, its owner without the privilege, its cron text broken)
 * records why in last_error and waits for its next firing.
 */
int
dasa_schedules_fire(TimestampTz now, int batch)
{
	Datum		args[2] = {TimestampTzGetDatum(now), Int32GetDatum(batch)};
	DasaRows	due = dasa_run(&due_schedules, args, NULL, 0);

	for (uint64 i = 0; i < due.n; i++)
	{
		DasaSchedule s;

		read_schedule(&due, i, &s);
		fire(&s, dasa_get_timestamp(&due, i, "next_run_at"), now);
	}
	return (int) due.n;
}

/* When the next schedule fires; 0 if there is none. */
TimestampTz
dasa_schedules_next(void)
{
	DasaRows	rows = dasa_run(&next_firing, NULL, NULL, 1);

	return dasa_get_timestamp(&rows, 0, "next");
}
