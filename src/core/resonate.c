/*
 * resonate.c: the kernel's side of the Resonate protocol's tasks.
 *
 * The protocol's tasks, callbacks and outbox live in the resonate schema
 * and their transitions are written there (resonate._settled and
 * resonate._fire_timers); the kernel calls in at two moments: when a
 * settlement may concern them (a task's own promise, or a promise a task
 * waits on: both are marked awaited, so other settlements cost nothing
 * here), when the database worker looks for task timers that are due, and
 * when a Resonate schedule fires (its firing is a promise, not an invocation).
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

/*
 * Hand the settled awaited promises $1 that a Resonate task owns or waits
 * on to the protocol's cascade; cheap probes first, so the settlements of
 * dasa's own workflows do not call into it.
 */
static DasaStatement resonate_settled = {
	.since = "0.11.0",
	.sql = "SELECT resonate._settled(ids) AS done FROM ("
	"  SELECT array_agg(i) AS ids FROM unnest($1::text[]) i"
	"  WHERE EXISTS (SELECT 1 FROM resonate.tasks t WHERE t.id = i AND t.state <> 'fulfilled')"
	"     OR EXISTS (SELECT 1 FROM resonate.callbacks c WHERE c.awaited = i)) x "
	"WHERE ids IS NOT NULL",
	.args = {TEXTARRAYOID},
	.columns = {"done"},
};

static DasaStatement fire_timers = {
	.since = "0.11.0",
	.sql = "SELECT resonate._fire_timers($1, $2) AS n",
	.args = {TIMESTAMPTZOID, INT4OID},
	.columns = {"n"},
};

/* The earliest task timer after $1, up to $2 (see sweep.c's next_deadline). */
static DasaStatement next_timer = {
	.since = "0.11.0",
	.sql = "SELECT min(timer_at) AS next FROM resonate.tasks WHERE timer_at > $1 AND timer_at <= $2",
	.args = {TIMESTAMPTZOID, TIMESTAMPTZOID},
	.columns = {"next"},
};

/* A firing of a Resonate schedule: its promise, created as the schedule's owner. */
static DasaStatement schedule_fired = {
	.since = "0.11.0",
	.sql = "SELECT resonate._schedule_fired($1, $2, $3, $4, $5) AS id",
	.args = {TEXTOID, TEXTOID, TIMESTAMPTZOID, JSONBOID, JSONBOID},
	.columns = {"id"},
};

/* Task $1 with its promise's state and deadline (the fence's one read). */
static DasaStatement fence_row = {
	.since = "0.11.0",
	.sql = "SELECT t.owner::oid AS owner, t.state, t.version, p.state::text AS promise_state, p.timeout_at "
	"FROM resonate.tasks t LEFT JOIN dasa.promises p ON p.id = t.id WHERE t.id = $1",
	.args = {TEXTOID},
	.columns = {"owner", "state", "version", "promise_state", "timeout_at"},
};

/* The awaited promises ids settled in this transaction: resume and fulfil Resonate tasks. */
void
dasa_resonate_settled(List *ids)
{
	Datum		args[1] = {dasa_text_array_of_list(ids)};

	if (!dasa_schema_has(resonate_settled.since))
		return;					/* an older schema, not upgraded yet: no Resonate tasks */
	(void) dasa_run(&resonate_settled, args, NULL, 0);
}

/* Apply up to batch due task timers (leases run out, pending tasks re-sent); how many. */
int
dasa_resonate_fire_timers(TimestampTz now, int batch)
{
	Datum		args[2] = {TimestampTzGetDatum(now), Int32GetDatum(batch)};
	DasaRows	rows = dasa_run(&fire_timers, args, NULL, 1);

	return rows.n == 1 ? dasa_get_int32(&rows, 0, "n") : 0;
}

/* The earliest task timer after now and up to until; 0 if there is none. */
TimestampTz
dasa_resonate_next_timer(TimestampTz now, TimestampTz until)
{
	Datum		args[2] = {TimestampTzGetDatum(now), TimestampTzGetDatum(until)};
	DasaRows	rows = dasa_run(&next_timer, args, NULL, 1);

	return dasa_get_timestamp(&rows, 0, "next");
}

/*
 * Schedule name fires at at: the promise id, with the schedule's param,
 * tags and timeout (args), created as owner, with its task if it has a
 * target; nothing if it exists already.
 */
void
dasa_resonate_schedule_fired(const char *name, const char *id, TimestampTz at, Jsonb *args, Jsonb *tags,
							 Oid owner)
{
	Datum		values[5] = {CStringGetTextDatum(name), CStringGetTextDatum(id), TimestampTzGetDatum(at),
	PointerGetDatum(args), PointerGetDatum(tags)};
	DasaUserSave save;

	dasa_switch_user(owner, &save);
	(void) dasa_run(&schedule_fired, values, NULL, 0);
	dasa_restore_user(&save);
}

/*
 * The fence of task id at version for role: 200 (acquired at that version,
 * its promise pending before its deadline), 409, or 404 (no task role may
 * see).
 */
int
dasa_resonate_fence_status(const char *id, int64 version, Oid role)
{
	Datum		args[1] = {CStringGetTextDatum(id)};
	DasaRows	rows = dasa_run(&fence_row, args, NULL, 1);
	bool		isnull;
	char	   *promise_state;

	if (rows.n == 0 || !dasa_may_access(role, DatumGetObjectId(dasa_get(&rows, 0, "owner", &isnull))))
		return 404;
	promise_state = dasa_get_text(&rows, 0, "promise_state");
	if (strcmp(dasa_get_text(&rows, 0, "state"), "acquired") != 0 ||
		dasa_get_int32(&rows, 0, "version") != version ||
		promise_state == NULL || strcmp(promise_state, "pending") != 0 ||
		dasa_get_timestamp(&rows, 0, "timeout_at") <= GetCurrentTimestamp())
		return 409;
	return 200;
}
