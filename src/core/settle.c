/*
 * settle.c: the one writer of promise states.
 *
 * dasa_settle settles a set of pending promises in one statement and, in
 * the same transaction, does everything a settlement sets off: a promise
 * cancelled or timed out takes every pending promise under it along (one
 * recursive statement, whatever the depth of the tree), their tasks end,
 * tasks suspended on any settled promise are resumed, and the wake-ups of
 * awaiting sessions and executors are queued for commit. Every settling
 * path (resolve/reject/cancel, an executor's batch, a rejection after
 * retries, the timeout sweep) comes through here.
 *
 * Racing settlements of one promise rely on the row lock: the first UPDATE
 * wins; the others re-check the row after it commits, find it settled and
 * change nothing.
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/*
 * Settle pending promises to state $2. One whose deadline is at or before
 * $4 times out instead (a timer resolves), settled at its deadline; the
 * others are settled at $5 with their value. With $2 NULL, only those past
 * their deadline are settled; with $6, only those $6 owns. Two forms of the
 * one statement: for a set ($1 ids, $3 values, joined by unnest) and for a
 * single promise ($1 id, $3 value), whose plan is a primary-key lookup
 * however small the table was when it was made.
 */
#define SETTLE_SET_CLAUSE \
	"UPDATE dasa.promises p SET" \
	"  state = CASE WHEN p.timeout_at <= $4 THEN %s ELSE $2::dasa.promise_state END," \
	"  value = CASE WHEN p.timeout_at <= $4 THEN NULL ELSE %s END," \
	"  settled_at = CASE WHEN p.timeout_at <= $4 THEN p.timeout_at ELSE $5 END "
#define SETTLE_CONDITIONS \
	" AND p.state = 'pending' AND ($2 IS NOT NULL OR p.timeout_at <= $4) AND ($6 IS NULL OR p.owner = $6) " \
	"RETURNING p.id, p.state, p.param, p.value, p.tags, p.timeout_at, p.created_at," \
	"  p.settled_at, p.parent_id, p.root_id, p.awaited, p.owner"

static DasaStatement settle_set = {
	.sql = SETTLE_SET_CLAUSE "FROM unnest($1::text[], $3::jsonb[]) AS v(id, value) WHERE p.id = v.id"
	SETTLE_CONDITIONS,
	.args = {TEXTARRAYOID, TEXTOID, JSONBARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID, OIDOID},
	.columns = {DASA_PROMISE_COLUMN_NAMES},
};

static DasaStatement settle_one = {
	.sql = SETTLE_SET_CLAUSE "WHERE p.id = $1" SETTLE_CONDITIONS,
	.args = {TEXTOID, TEXTOID, JSONBOID, TIMESTAMPTZOID, TIMESTAMPTZOID, OIDOID},
	.columns = {DASA_PROMISE_COLUMN_NAMES},
};

/*
 * Resolve $1 with $2 at $4 and complete its task (still at version $3): a
 * child its parent's attempt ran inside itself (runtime/inline.c), which
 * nobody else can see yet, so nothing else can follow from it.
 */
static DasaStatement settle_inline_child = {
	.sql = "WITH p AS (UPDATE dasa.promises SET state = 'resolved', value = $2, settled_at = $4"
	"  WHERE id = $1 AND state = 'pending' RETURNING id) "
	"UPDATE dasa.tasks SET state = 'completed', attempt = 1, completed_at = $4"
	"  WHERE id = $1 AND version = $3 AND EXISTS (SELECT 1 FROM p) RETURNING id",
	.args = {TEXTOID, JSONBOID, INT8OID, TIMESTAMPTZOID},
	.columns = {"id"},
};

/*
 * Every pending promise under the promises $1, at any depth: what an
 * invocation started ends with it. UNION, not UNION ALL, so that even a
 * corrupted tree with a cycle ends. The children of each level are found
 * through a LATERAL subquery that cannot be flattened, so that a plan made
 * while the table was small still probes the parent index once per row
 * instead of walking it.
 */
static DasaStatement pending_descendants = {
	.sql = "WITH RECURSIVE tree(id) AS ("
	"  SELECT c.id FROM dasa.promises c WHERE c.parent_id = ANY($1) AND c.state = 'pending'"
	"  UNION"
	"  SELECT c.id FROM tree CROSS JOIN LATERAL (SELECT id FROM dasa.promises c"
	"    WHERE c.parent_id = tree.id AND c.state = 'pending' OFFSET 0) c) "
	"SELECT id FROM tree",
	.args = {TEXTARRAYOID},
	.columns = {"id"},
};

/* The settle statements embed the timeout rule's SQL and their value's source; filled in once. */
static void
complete_sql(void)
{
	if (strstr(settle_set.sql, "%s") == NULL)
		return;
	settle_set.sql = MemoryContextStrdup(TopMemoryContext,
										 psprintf(settle_set.sql, dasa_timeout_state_sql, "v.value"));
	settle_one.sql = MemoryContextStrdup(TopMemoryContext,
										 psprintf(settle_one.sql, dasa_timeout_state_sql, "$3"));
}

/* What a set of settlements sets off, gathered while reading them. */
typedef struct Aftermath
{
	List	   *awaited;		/* settled promises that tasks wait on */
	List	   *parents;		/* of each of those: its parent's id, or NULL */
	List	   *ended;			/* settled by cancellation or timeout */
} Aftermath;

static void
note_settled(Aftermath *after, char *id, const char *state, bool awaited, char *parent)
{
	dasa_wake_at_commit_settled(id);
	if (awaited)
	{
		after->awaited = lappend(after->awaited, id);
		after->parents = lappend(after->parents, parent);
	}
	if (strcmp(state, "rejected_canceled") == 0 || strcmp(state, "rejected_timedout") == 0)
		after->ended = lappend(after->ended, id);
}

/* Run the settle statement (only on promises of owner, if valid); the rows it settled. */
static DasaRows
settle_rows(int n, char **ids, const char *state, Jsonb **values, bool deadline_applies,
			TimestampTz now, Oid owner)
{
	Jsonb	  **no_values = values ? NULL : palloc0(Max(n, 1) * sizeof(Jsonb *));
	Datum		args[6] = {(Datum) 0, state ? CStringGetTextDatum(state) : (Datum) 0, (Datum) 0,
		TimestampTzGetDatum(deadline_applies ? now : DT_NOBEGIN),
	TimestampTzGetDatum(now), ObjectIdGetDatum(owner)};
	char		nulls[6] = {' ', state ? ' ' : 'n', ' ', ' ', ' ', OidIsValid(owner) ? ' ' : 'n'};

	complete_sql();
	if (n == 1)
	{
		args[0] = CStringGetTextDatum(ids[0]);
		args[2] = PointerGetDatum(values ? values[0] : NULL);
		nulls[2] = (values && values[0]) ? ' ' : 'n';
		return dasa_run(&settle_one, args, nulls, 0);
	}
	args[0] = dasa_text_array(ids, n);
	args[2] = dasa_jsonb_array(values ? values : no_values, n);
	return dasa_run(&settle_set, args, nulls, 0);
}

static void
note_rows(Aftermath *after, const DasaRows *rows)
{
	for (uint64 i = 0; i < rows->n; i++)
	{
		DasaPromiseRead read;

		dasa_promise_read_row(rows, i, &read);
		note_settled(after, dasa_get_text(rows, i, "id"), read.state,
					 dasa_get_bool(rows, i, "awaited"), dasa_get_text(rows, i, "parent_id"));
	}
}

/* Cancel every pending promise under the ended ones (one past its deadline times out). */
static void
cancel_descendants(Aftermath *after, TimestampTz now)
{
	Datum		args[1] = {dasa_text_array_of_list(after->ended)};
	DasaRows	found = dasa_run(&pending_descendants, args, NULL, 0);
	char	  **ids = palloc(Max(found.n, 1) * sizeof(char *));
	DasaRows	cancelled;

	if (found.n == 0)
		return;
	for (uint64 i = 0; i < found.n; i++)
		ids[i] = dasa_get_text(&found, i, "id");
	cancelled = settle_rows((int) found.n, ids, "rejected_canceled", NULL, true, now, InvalidOid);
	note_rows(after, &cancelled);
}

/* Settle, then everything that sets off; the rows settled (not the descendants cancelled). */
static DasaRows
settle_owned(int n, char **ids, const char *state, Jsonb **values, bool deadline_applies,
			 Oid owner)
{
	TimestampTz now = GetCurrentTimestamp();
	Aftermath	after = {NIL, NIL, NIL};
	DasaRows	settled = settle_rows(n, ids, state, values, deadline_applies, now, owner);

	if (dasa_suspending_context() != NULL)
		for (uint64 i = 0; i < settled.n; i++)
			dasa_recorded_settled(dasa_suspending_context(), dasa_get_text(&settled, i, "id"));
	note_rows(&after, &settled);
	if (after.ended != NIL)
	{
		cancel_descendants(&after, now);
		dasa_tasks_end(after.ended);
	}
	if (after.awaited != NIL)
	{
		dasa_callbacks_fire(after.awaited, after.parents);
		dasa_listeners_fire(after.awaited);
		dasa_resonate_settled(after.awaited);
	}
	return settled;
}

/*
 * Settle each pending promise ids[i] to state with values[i] (values NULL:
 * all SQL NULL). With deadline_applies, one whose deadline has passed
 * times out instead; an executor keeping an attempt's effects has held the
 * promise pending and passes false. State NULL settles only the expired
 * ones. Returns the rows this call settled (not the descendants it
 * cancelled).
 */
DasaRows
dasa_settle(int n, char **ids, const char *state, Jsonb **values, bool deadline_applies)
{
	return settle_owned(n, ids, state, values, deadline_applies, InvalidOid);
}

/*
 * Settle one promise, as role, to state unless it is settled already (or
 * expired, which settles it by timeout). Returns its stored row either way;
 * an unknown id, or one role may not see, is an error. The first try
 * settles only role's own promise: the common case costs one statement.
 */
DasaRows
dasa_settle_or_read(const char *id, const char *state, Jsonb *value, Oid role)
{
	char	   *ids[1] = {(char *) id};
	Jsonb	   *values[1] = {value};
	Oid			owner = role;

	for (;;)
	{
		DasaRows	rows = settle_owned(1, ids, state, values, true, owner);
		DasaPromiseRead read;

		if (rows.n == 1)
			return rows;
		rows = dasa_promise_select_visible(id, role);
		if (rows.n == 0)
			dasa_raise_not_found(id);
		dasa_promise_read_row(&rows, 0, &read);
		if (strcmp(read.state, "pending") != 0)
			return rows;
		/*
		 * Still pending: another role's promise that role may settle, or one
		 * committed between our statements. Try again, whoever owns it.
		 */
		owner = InvalidOid;
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Apply the timeout rule to a promise from dasa's own code: write its
 * timeout if it has expired. True if the promise is settled now (or gone).
 */
bool
dasa_settle_if_expired(const char *id)
{
	char	   *ids[1] = {(char *) id};
	DasaRows	rows;
	DasaPromiseRead read;

	if (dasa_settle(1, ids, NULL, NULL, true).n == 1)
		return true;
	rows = dasa_promise_select(id);
	if (rows.n == 0)
		return true;
	dasa_promise_read_row(&rows, 0, &read);
	return strcmp(read.state, "pending") != 0;
}

/*
 * The running attempt ran its own child id inside itself and got value:
 * resolve it and complete its task in one statement. False if it was no
 * longer pending.
 */
bool
dasa_settle_inline_child(const char *id, Jsonb *value, int64 version)
{
	Datum		args[4] = {CStringGetTextDatum(id), PointerGetDatum(value), Int64GetDatum(version),
	TimestampTzGetDatum(GetCurrentTimestamp())};
	char		nulls[4] = {' ', value ? ' ' : 'n', ' ', ' '};

	if (dasa_run(&settle_inline_child, args, nulls, 0).n == 0)
		return false;
	dasa_recorded_settled(dasa_suspending_context(), id);
	dasa_wake_at_commit_settled(id);
	return true;
}

