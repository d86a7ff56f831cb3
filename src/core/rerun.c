/*
 * rerun.c: running failed work again (dasa.rerun).
 *
 * A rejected, canceled or timed-out invocation is run again by hand as a
 * new invocation of the same function, with the same arguments and tags,
 * owned by and run as the caller, that repeats it (tasks.rerun_of). The
 * failed promise stays as it is: a settled promise never changes. The new
 * run finds the children that resolved in the run it repeats under its own
 * child names and reuses their values, so their effects are not repeated;
 * a child that failed there is repeated in turn, its own resolved children
 * reused (core/recorded.c).
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

/* The invocation $1 as it reads now (a pending one past its deadline has timed out). */
static DasaStatement rerun_source = {
	.since = "0.9.0",
	.sql = "SELECT CASE WHEN p.state = 'pending' AND p.timeout_at <= $2 THEN 'rejected_timedout'"
	"  ELSE p.state::text END AS state, p.param, p.tags, p.owner::oid AS owner, t.function "
	"FROM dasa.promises p JOIN dasa.tasks t ON t.id = p.id WHERE p.id = $1",
	.args = {TEXTOID, TIMESTAMPTZOID},
	.columns = {"state", "param", "tags", "owner", "function"},
};

/* What holds id $1 now: its owner, its state, and the invocation its task repeats. */
static DasaStatement id_holder = {
	.since = "0.9.0",
	.sql = "SELECT p.owner::oid AS owner, p.state::text AS state, t.rerun_of "
	"FROM dasa.promises p LEFT JOIN dasa.tasks t ON t.id = p.id WHERE p.id = $1",
	.args = {TEXTOID},
	.columns = {"owner", "state", "rerun_of"},
};

static void
refuse(const char *id, const char *state)
{
	bool		pending = strcmp(state, "pending") == 0;

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("invocation \"%s\" %s", id, pending ? "is still pending" : "was resolved"),
			 errdetail("Only a rejected, canceled or timed-out invocation can be run again."),
			 errhint(pending ? "Await it, or cancel it with dasa.cancel first." :
					 "To run its function once more, invoke it under a new id.")));
}

/*
 * Is new_id free for a re-run of id by caller? 1: free; 0: a re-run of id by
 * caller has it already (nothing new starts); -1: taken by something else.
 * *state: the state of what has it.
 */
static int
id_free_for(const char *new_id, const char *id, Oid caller, char **state)
{
	Datum		args[1] = {CStringGetTextDatum(new_id)};
	DasaRows	rows = dasa_run(&id_holder, args, NULL, 1);
	bool		isnull;
	char	   *repeats;

	if (rows.n == 0)
		return 1;
	*state = dasa_get_text(&rows, 0, "state");
	repeats = dasa_get_text(&rows, 0, "rerun_of");
	if (repeats != NULL && strcmp(repeats, id) == 0 &&
		DatumGetObjectId(dasa_get(&rows, 0, "owner", &isnull)) == caller)
		return 0;
	return -1;
}

/*
 * The default id of a re-run of id: "<id>:rerun-<n>", the first n whose id
 * is free. Refused while an earlier re-run of it is pending.
 */
static char *
next_rerun_id(const char *id, Oid caller)
{
	for (int n = 1;; n++)
	{
		char	   *candidate = psprintf("%s:rerun-%d", id, n);
		char	   *state = NULL;
		int			free = id_free_for(candidate, id, caller, &state);

		if (strlen(candidate) > DASA_MAX_ID_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("the id of a re-run of \"%.64s...\" would be longer than %d bytes", id,
							DASA_MAX_ID_BYTES),
					 errhint("Pass new_id.")));
		if (free == 1)
			return candidate;
		if (free == 0 && strcmp(state, "pending") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("a re-run of invocation \"%s\" is still pending: \"%s\"", id, candidate),
					 errhint("Await it, or cancel it with dasa.cancel before running it again.")));
	}
}

/* The id of the re-run: new_id (NULL: the next free default); *exists if it is there already. */
static char *
rerun_id(const char *id, const char *new_id, Oid caller, bool *exists)
{
	char	   *state = NULL;

	*exists = false;
	if (new_id == NULL)
		return next_rerun_id(id, caller);
	switch (id_free_for(new_id, id, caller, &state))
	{
		case 1:
			return (char *) new_id;
		case 0:
			*exists = true;
			return (char *) new_id;
		default:
			dasa_raise_id_conflict(new_id, "A promise with this id exists and is not a re-run of this invocation by this role.");
	}
	pg_unreachable();
}

/*
 * Run invocation id again (see above) under new_id (NULL: "<id>:rerun-<n>"),
 * with timeout (NULL: the function's); the new invocation's id. A new_id
 * that is already the caller's re-run of id starts nothing new.
 */
char *
dasa_rerun_internal(const char *id, const char *new_id, Interval *timeout, Oid caller)
{
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[2] = {CStringGetTextDatum(id), TimestampTzGetDatum(now)};
	MemoryContext caller_memory = CurrentMemoryContext;
	DasaUserSave save;
	DasaRows	source;
	DasaLookup	fn;
	bool		isnull;
	bool		exists;
	char	   *function;
	char	   *state;
	char	   *rerun;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	source = dasa_run(&rerun_source, args, NULL, 1);
	if (source.n == 0 || !dasa_may_access(caller, DatumGetObjectId(dasa_get(&source, 0, "owner", &isnull))))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("invocation \"%s\" does not exist", id),
				 errhint("dasa.rerun takes the id of an invocation (see dasa.invocations).")));
	state = dasa_get_text(&source, 0, "state");
	if (strcmp(state, "pending") == 0 || strcmp(state, "resolved") == 0)
		refuse(id, state);
	function = dasa_get_text(&source, 0, "function");
	rerun = rerun_id(id, new_id, caller, &exists);
	if (!exists)
	{
		TimestampTz timeout_at;

		dasa_check_may_invoke(function, caller, &fn);
		timeout_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(now),
															 IntervalPGetDatum(timeout ? timeout : &fn.timeout)));
		if (!dasa_create_invocation(rerun, function, fn.queue, dasa_get_jsonb_copy(&source, 0, "param"),
									dasa_get_jsonb_copy(&source, 0, "tags"), timeout_at, now, now, id,
									0, NULL, caller))
			dasa_raise_id_conflict(rerun, "A promise with this id was created meanwhile.");
	}
	rerun = MemoryContextStrdup(caller_memory, rerun);
	SPI_finish();
	dasa_restore_user(&save);
	return rerun;
}
