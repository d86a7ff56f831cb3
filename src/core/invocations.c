/*
 * invocations.c: creating invocations, and what a replay checks of them.
 *
 * An invocation is a promise (its param holds the arguments) plus a pending
 * task with the same id, both written in the caller's transaction, so an
 * invocation exists exactly when the caller's work commits. The caller must
 * be allowed to execute the registered procedure; the rows are written as
 * the extension owner. An executor is woken at commit.
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "port.h"
#include "utils/acl.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

/* The function a task was created for. */
static DasaStatement task_function = {
	.sql = "SELECT function FROM dasa.tasks WHERE id = $1",
	.args = {TEXTOID},
	.columns = {"function"},
};

/* What an existing id is: its owner, and the function if it is an invocation. */
static DasaStatement existing_id = {
	.sql = "SELECT p.owner::oid AS owner, t.function FROM dasa.promises p "
	"LEFT JOIN dasa.tasks t ON t.id = p.id WHERE p.id = $1",
	.args = {TEXTOID},
	.columns = {"owner", "function"},
};

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

/* The empty tag set of every invocation, parsed once per backend. */
Jsonb *
dasa_no_tags(void)
{
	static Jsonb *empty = NULL;

	if (empty == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		empty = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
		MemoryContextSwitchTo(old);
	}
	return empty;
}

/* Is a task of function f (on queue q) one of a limited function (queued apart: core/tasks.c)? */
#define LIMITED(f, q) \
	"(" q " IS NULL AND " f " IN (SELECT name FROM dasa.functions WHERE max_running IS NOT NULL))"

/*
 * An invocation's promise ($1..$8) and its task ($9 function, $10 queue, due
 * at $11, repeating $12, priority $13), unless the id exists.
 */
static DasaStatement insert_invocation = {
	.since = "0.10.0",
	.sql = "WITH p AS (INSERT INTO dasa.promises (id, param, tags, timeout_at, created_at, parent_id, root_id, owner) "
	"  VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING id) "
	"INSERT INTO dasa.tasks (id, function, run_at, queue, rerun_of, priority, limited)"
	"  SELECT id, $9, $11, $10, $12, $13, " LIMITED("$9", "$10") " FROM p RETURNING id",
	.args = {TEXTOID, JSONBOID, JSONBOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, OIDOID,
	TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, INT2OID},
	.columns = {"id"},
};

/* Write the invocation's promise and task unless the id exists (one statement); true if written. Connected to SPI. */
bool
dasa_create_invocation(const char *id, const char *name, const char *queue, Jsonb *args, Jsonb *tags,
				  TimestampTz timeout_at, TimestampTz now, TimestampTz run_at, const char *repeats,
				  int priority, DasaContext *parent, Oid owner)
{
	Datum		values[13] = {CStringGetTextDatum(id), PointerGetDatum(args),
		PointerGetDatum(tags), TimestampTzGetDatum(timeout_at), TimestampTzGetDatum(now),
		parent ? CStringGetTextDatum(parent->id) : (Datum) 0,
		parent ? CStringGetTextDatum(parent->root_id) : (Datum) 0,
		ObjectIdGetDatum(owner), CStringGetTextDatum(name),
		queue ? CStringGetTextDatum(queue) : (Datum) 0, TimestampTzGetDatum(run_at),
		repeats ? CStringGetTextDatum(repeats) : (Datum) 0,
	Int16GetDatum((int16) priority)};
	char		nulls[13] = {' ', args ? ' ' : 'n', ' ', ' ', ' ', parent ? ' ' : 'n',
	parent ? ' ' : 'n', ' ', ' ', queue ? ' ' : 'n', ' ', repeats ? ' ' : 'n', ' '};

	if (dasa_run(&insert_invocation, values, nulls, 0).n == 0)
		return false;
	dasa_wake_at_commit_deadline(timeout_at);
	if (queue)
		dasa_wake_at_commit_external();
	else
		dasa_wake_at_commit_task(run_at);
	return true;
}

/*
 * An external function is carried out by its owner's workers, with the
 * arguments the invoker gives: invoking one needs its owner's privileges
 * (the owner, or membership in it), as working its queue does.
 */
static void
check_may_invoke_external(const DasaLookup *fn, Oid role, const char *name)
{
	if (!dasa_may_access(role, fn->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to invoke \"%s\"", name),
				 errdetail("It is an external function of role \"%s\" (queue \"%s\").",
						   GetUserNameFromId(fn->owner, true) ? GetUserNameFromId(fn->owner, true) : "(dropped)",
						   fn->queue),
				 errhint("Invoking an external function needs its owner's role or membership in it.")));
}

/* Is name registered, and may caller invoke it? *fn: its registration. Connected to SPI. */
void
dasa_check_may_invoke(const char *name, Oid caller, DasaLookup *fn)
{
	if (!dasa_registry_lookup(name, fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function \"%s\" is not registered", name),
				 errhint("Register it with dasa.register first.")));
	if (fn->queue != NULL)
		check_may_invoke_external(fn, caller, name);
	else
		dasa_check_may_call(fn->proc, caller, name);
}

static const char *
child_kind(const char *function)
{
	return function ? psprintf("an invocation of \"%s\"", function) : "a timer";
}

/*
 * A replay finds the child it named before: it must be what this run makes
 * there (an invocation of the same function, or a timer for function NULL),
 * or the function does not replay deterministically and no recorded result
 * can be trusted. Connected to SPI.
 */
void
dasa_check_replay(DasaContext *c, const char *id, const char *function)
{
	Datum		args[1] = {CStringGetTextDatum(id)};
	DasaRows	rows = dasa_run(&task_function, args, NULL, 1);

	dasa_check_replay_of(c, id, rows.n == 1 ? dasa_get_text(&rows, 0, "function") : NULL, function);
}

/* As dasa_check_replay, knowing what was recorded there (NULL: a plain promise or timer). */
void
dasa_check_replay_of(DasaContext *c, const char *id, const char *recorded, const char *function)
{
	if (recorded == NULL ? function == NULL : (function != NULL && strcmp(recorded, function) == 0))
		return;
	c->final = true;
	ereport(ERROR,
			(errcode(ERRCODE_DASA_NONDETERMINISTIC),
			 errmsg("non-deterministic replay of invocation \"%s\"", c->id),
			 errdetail("Child \"%s\" was recorded as %s, but this run makes %s there.", id,
					   child_kind(recorded), child_kind(function)),
			 errhint("A function must make the same calls in the same order each time it runs; pass explicit ids to calls that vary.")));
}

/*
 * An invocation runs as its caller, so invoking needs what calling the
 * procedure directly needs: USAGE on its schema and EXECUTE on it.
 */
void
dasa_check_may_call(Oid proc, Oid role, const char *name)
{
	Oid			schema = get_func_namespace(proc);

	if (pg_namespace_aclcheck(schema, role, ACL_USAGE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to invoke \"%s\"", name),
				 errdetail("Invoking needs USAGE on schema %s, which holds %s.",
						   get_namespace_name(schema), format_procedure(proc)),
				 errhint("An invocation runs as the role that invokes it, with the privileges a direct call would need.")));
	if (pg_proc_aclcheck(proc, role, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to invoke \"%s\"", name),
				 errdetail("Invoking needs EXECUTE on %s.", format_procedure(proc)),
				 errhint("An invocation runs as the role that invokes it, with the privileges a direct call would need.")));
}

/*
 * The id exists: it may only be the caller's own invocation of the same
 * function (nothing new starts). A replay finding the child it named before
 * checks it is the same kind of child (dasa_check_replay).
 */
static void
check_existing(const char *id, const char *name, Oid caller, DasaContext *parent,
			   bool named_here)
{
	Datum		args[1] = {CStringGetTextDatum(id)};
	DasaRows	found = dasa_run(&existing_id, args, NULL, 1);
	bool		isnull;
	char	   *function;

	if (found.n == 0)
		return;					/* gone again (an aborted insert): nothing to compare */
	if (DatumGetObjectId(dasa_get(&found, 0, "owner", &isnull)) != caller)
		dasa_raise_id_conflict(id, "A promise with this id exists and belongs to another role.");
	function = dasa_get_text(&found, 0, "function");
	if (parent != NULL && named_here)
		dasa_check_replay(parent, id, name);
	else if (function == NULL)
		dasa_raise_id_conflict(id, "A plain promise (not an invocation) has this id.");
	else if (strcmp(function, name) != 0)
		dasa_raise_id_conflict(id, psprintf("An invocation of \"%s\" has this id.", function));
}

/*
 * A replay naming the child id that an earlier attempt recorded: its id, after
 * checking it is the same kind of child (and the caller's); NULL if none.
 * In a re-run (dasa.rerun), a child of the same function that resolved in
 * the run it repeats is found the same way: its id (not id) is the result,
 * its value is reused, and the re-run holds it (retention keeps it).
 */
static const char *
find_recorded(DasaContext *parent, const char *id, const char *name, Oid caller)
{
	const DasaRecorded *recorded = dasa_recorded_child(parent, id);

	if (recorded == NULL)
		return NULL;
	if (recorded->earlier_run)
	{
		if (recorded->function == NULL || strcmp(recorded->function, name) != 0 ||
			!dasa_may_access(caller, recorded->owner))
			return NULL;
		dasa_context_found(parent, recorded->id, name, recorded);
		dasa_context_note_read(parent, recorded->id);
		return recorded->id;
	}
	if (recorded->owner != caller)
		dasa_raise_id_conflict(id, "A promise with this id exists and belongs to another role.");
	dasa_check_replay_of(parent, id, recorded->function, name);
	dasa_context_found(parent, id, name, recorded);
	return id;
}

/* > 0 while dasa reads around the children not written yet (they must stay so). */
static int	reading_around = 0;

/* At the start of an attempt (an error may have left the count up). */
void
dasa_unwritten_reset(void)
{
	reading_around = 0;
}

/* Should a statement that reads dasa's tables now write the children not written yet first? */
bool
dasa_unwritten_must_write(void)
{
	return reading_around == 0;
}

/*
 * A child the running attempt names itself is only remembered: nobody else
 * can see it before the attempt's batch commits, and a suspending attempt
 * is rolled back and writes its children again anyway, so they are all
 * written once, in one statement, when the attempt ends (or earlier, when
 * something reads the tables: see dasa_write_unwritten). A fan-out then
 * costs one insert per child, not two.
 */
static DasaCreated *
defer_child(DasaContext *parent, const char *id, const char *name, const char *queue, Jsonb *args,
			Jsonb *tags, TimestampTz timeout_at, Oid caller)
{
	DasaCreated *made = dasa_context_created(parent, id, name, queue, args, tags, timeout_at, caller);

	made->unwritten = true;
	parent->unwritten++;
	return made;
}

/*
 * Create the invocation of name with args (id NULL: a fresh one; timeout
 * NULL: the function's), owned by caller and run as caller. Returns its id.
 * The caller's own invocation of name with that id starts nothing new; any
 * other use of the id is a conflict. Inside a running function, the
 * invocation is its child: named "<parent>.<n>" unless id is given, its
 * deadline capped at the parent's.
 */
char *
dasa_invoke_tagged(const char *name, Jsonb *args, const char *id, Interval *timeout,
				   Jsonb *tags, Oid caller)
{
	return dasa_invoke_at(name, args, id, timeout, tags, caller, 0, 0);
}

/*
 * As dasa_invoke_tagged, the task due from start_at on (0, or a time past:
 * at once); its timeout counts from then.
 */
char *
dasa_invoke_at(const char *name, Jsonb *args, const char *id, Interval *timeout,
			   Jsonb *tags, Oid caller, TimestampTz start_at, int priority)
{
	DasaLookup	fn;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz run_at = Max(now, start_at);
	TimestampTz timeout_at;
	DasaCreated *made = NULL;
	DasaContext *parent = dasa_context();
	bool		named_here = (id == NULL);
	DasaUserSave save;

	const char *found;
	char	   *repeats = NULL;

	if (id == NULL)
		id = parent ? dasa_context_child_id(parent) : random_id();
	/* A replay finding a child it started before: nothing to look up or write. */
	if (parent != NULL && named_here && (found = find_recorded(parent, id, name, caller)) != NULL)
		return (char *) found;
	if (parent != NULL && named_here)
		repeats = dasa_recorded_rerun_of(parent, id);
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	dasa_check_may_invoke(name, caller, &fn);
	timeout_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														 TimestampTzGetDatum(run_at),
														 IntervalPGetDatum(timeout ? timeout : &fn.timeout)));
	if (parent != NULL)
		timeout_at = timeout ? dasa_context_cap_asked(parent, id, timeout_at) : dasa_context_cap(parent, timeout_at);
	if (parent != NULL && named_here && parent == dasa_suspending_context())
		made = defer_child(parent, id, name, fn.queue, args, tags, timeout_at, caller);
	else
	{
		if (!dasa_create_invocation(id, name, fn.queue, args, tags, timeout_at, now, run_at, repeats,
									priority, parent, caller))
			check_existing(id, name, caller, parent, named_here);
		if (parent != NULL)
			made = dasa_context_created(parent, id, name, fn.queue, args, tags, timeout_at, caller);
	}
	if (made != NULL && start_at > now)
		made->run_at = run_at;
	if (made != NULL)
	{
		made->rerun_of = repeats;
		made->priority = priority;
	}
	SPI_finish();
	dasa_restore_user(&save);
	return (char *) id;
}

/* Invoke name (see dasa_invoke_tagged), with no tags. */
char *
dasa_invoke_internal(const char *name, Jsonb *args, const char *id,
					 Interval *timeout, Oid caller)
{
	return dasa_invoke_tagged(name, args, id, timeout, dasa_no_tags(), caller);
}

/*
 * Children, column by column, as write_children passes them to the
 * statements below: promises $1 id, $2 param, $3 tags, $4 deadline, $5
 * owner, $6 awaited, $7 function, children of $10 under root $11, created
 * at $9; tasks (of those with a function) $8 queue, due at $12, repeating
 * $13, priority $14. Those $16 ran inside the attempt are written resolved
 * with value $15 at $9, their tasks completed in one attempt.
 */
#define CHILD_COLUMNS 16
#define CHILD_ARGS {TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, TIMESTAMPTZARRAYOID, OIDARRAYOID, \
	BOOLARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TIMESTAMPTZARRAYOID, \
	TEXTARRAYOID, INT4ARRAYOID, JSONBARRAYOID, BOOLARRAYOID}
#define CHILD_PROMISE_COLUMNS \
	"INSERT INTO dasa.promises (id, param, tags, timeout_at, created_at, parent_id, root_id, owner, awaited," \
	"    state, value, settled_at)" \
	"  SELECT id, param, tags, timeout_at, $9, $10, $11, owner::regrole, awaited," \
	"    CASE WHEN ran THEN 'resolved' ELSE 'pending' END::dasa.promise_state, value," \
	"    CASE WHEN ran THEN $9 END"
#define CHILD_TASK_COLUMNS \
	"INSERT INTO dasa.tasks (id, function, queue, run_at, rerun_of, priority, state, attempt, completed_at," \
	"    limited)" \
	"  SELECT v.id, v.function, v.queue, v.run_at, v.rerun_of, v.priority," \
	"    CASE WHEN v.ran THEN 'completed' ELSE 'pending' END::dasa.task_state," \
	"    CASE WHEN v.ran THEN 1 ELSE 0 END, CASE WHEN v.ran THEN $9 END, " LIMITED("v.function", "v.queue")

/* Write the promises unless their ids exist, and the tasks of those written: which ids were written. */
static DasaStatement insert_children = {
	.since = "0.10.0",
	.sql = "WITH v AS (SELECT * FROM unnest($1::text[], $2::jsonb[], $3::jsonb[], $4::timestamptz[],"
	"    $5::oid[], $6::boolean[], $7::text[], $8::text[], $12::timestamptz[], $13::text[], $14::int4[],"
	"    $15::jsonb[], $16::boolean[])"
	"    AS v(id, param, tags, timeout_at, owner, awaited, function, queue, run_at, rerun_of, priority,"
	"      value, ran)),"
	" p AS (" CHILD_PROMISE_COLUMNS " FROM v ON CONFLICT (id) DO NOTHING RETURNING id),"
	" t AS (" CHILD_TASK_COLUMNS " FROM v JOIN p ON p.id = v.id WHERE v.function IS NOT NULL) "
	"SELECT id FROM p",
	.args = CHILD_ARGS,
	.columns = {"id"},
};

/*
 * The same writes for children whose ids are all free (the usual case), in
 * two plain inserts: the conflict checks and the join cost a fan-out a third
 * of its writing time. A taken id fails them with a unique violation.
 */
static DasaStatement insert_free_child_promises = {
	.since = "0.9.0",
	.sql = CHILD_PROMISE_COLUMNS
	"  FROM unnest($1::text[], $2::jsonb[], $3::jsonb[], $4::timestamptz[], $5::oid[], $6::boolean[],"
	"    $15::jsonb[], $16::boolean[]) AS v(id, param, tags, timeout_at, owner, awaited, value, ran)",
	.args = CHILD_ARGS,
};

static DasaStatement insert_free_child_tasks = {
	.since = "0.10.0",
	.sql = CHILD_TASK_COLUMNS
	"  FROM unnest($1::text[], $7::text[], $8::text[], $12::timestamptz[], $13::text[], $14::int4[],"
	"    $16::boolean[]) AS v(id, function, queue, run_at, rerun_of, priority, ran)"
	"  WHERE v.function IS NOT NULL",
	.args = CHILD_ARGS,
};

/* Wake-ups at commit for the children made: timers for their deadlines, executors and workers for their tasks. */
static void
wake_for(DasaContext *c, HTAB *written, bool as_ran, TimestampTz created_at)
{
	TimestampTz first_deadline = DT_NOEND;
	TimestampTz first_due = DT_NOEND;
	bool		in_database = false,
				external = false;
	ListCell   *lc;

	foreach(lc, c->created)
	{
		DasaCreated *made = lfirst(lc);

		if (made->recorded || (as_ran && made->ran) || !dasa_idset_contains(written, made->id))
			continue;
		first_deadline = Min(first_deadline, made->timeout_at);
		if (made->function != NULL && made->queue == NULL)
			first_due = Min(first_due, made->run_at != 0 ? made->run_at : created_at);
		in_database |= (made->function != NULL && made->queue == NULL);
		external |= (made->queue != NULL);
	}
	if (first_deadline != DT_NOEND)
		dasa_wake_at_commit_deadline(first_deadline);
	if (in_database)
		dasa_wake_at_commit_task(first_due);
	if (external)
		dasa_wake_at_commit_external();
}

static void
insert_free_children(void *args)
{
	(void) dasa_run(&insert_free_child_promises, (Datum *) args, NULL, 0);
	(void) dasa_run(&insert_free_child_tasks, (Datum *) args, NULL, 0);
}

/*
 * Write children (args as CHILD_ARGS) if all their ids are free: false,
 * with nothing written, if one is taken. In a subtransaction, so that the
 * unique violation undoes only this.
 */
static bool
write_free_children(Datum *args)
{
	ErrorData  *failure = dasa_try(insert_free_children, args);

	if (failure != NULL && failure->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
		ReThrowError(failure);
	return failure == NULL;
}

/* The children an attempt writes, column by column (see CHILD_ARGS). */
typedef struct ChildColumns
{
	int			n;
	char	  **ids;
	Jsonb	  **params;
	Jsonb	  **tags;
	TimestampTz *deadlines;
	TimestampTz *due;
	Oid		   *owners;
	bool	   *awaited;
	char	  **functions;
	char	  **queues;
	char	  **repeats;
	int		   *priorities;
	Jsonb	  **values;
	bool	   *ran;
} ChildColumns;

static void
columns_init(ChildColumns *cols, int max)
{
	max = Max(max, 1);
	cols->n = 0;
	cols->ids = palloc(sizeof(char *) * max);
	cols->params = palloc(sizeof(Jsonb *) * max);
	cols->tags = palloc(sizeof(Jsonb *) * max);
	cols->deadlines = palloc(sizeof(TimestampTz) * max);
	cols->due = palloc(sizeof(TimestampTz) * max);
	cols->owners = palloc(sizeof(Oid) * max);
	cols->awaited = palloc(sizeof(bool) * max);
	cols->functions = palloc(sizeof(char *) * max);
	cols->queues = palloc(sizeof(char *) * max);
	cols->repeats = palloc(sizeof(char *) * max);
	cols->priorities = palloc(sizeof(int) * max);
	cols->values = palloc(sizeof(Jsonb *) * max);
	cols->ran = palloc(sizeof(bool) * max);
}

/* Add made, written awaited if so, as having run here (with its value) if ran. */
static void
columns_add(ChildColumns *cols, const DasaCreated *made, bool awaited, bool ran, TimestampTz now)
{
	int			i = cols->n++;

	cols->ids[i] = made->id;
	cols->params[i] = made->param;
	cols->tags[i] = made->tags;
	cols->deadlines[i] = made->timeout_at;
	cols->due[i] = made->run_at != 0 ? made->run_at : now;
	cols->owners[i] = made->owner;
	cols->awaited[i] = awaited && !ran;
	cols->functions[i] = made->function;
	cols->queues[i] = made->queue;
	cols->repeats[i] = made->rerun_of;
	cols->priorities[i] = made->priority;
	cols->values[i] = ran ? made->value : NULL;
	cols->ran[i] = ran;
}

/* Write the columns' children (of c, at now): the set of ids written. */
static HTAB *
columns_write(const ChildColumns *cols, DasaContext *c, TimestampTz now)
{
	int			n = cols->n;
	HTAB	   *written = dasa_id_table("dasa children written", Max(n, 1), sizeof(char *));
	Datum		args[CHILD_COLUMNS] = {dasa_text_array(cols->ids, n), dasa_jsonb_array(cols->params, n),
		dasa_jsonb_array(cols->tags, n), dasa_timestamptz_array(cols->deadlines, n),
		dasa_oid_array(cols->owners, n), dasa_bool_array(cols->awaited, n),
		dasa_nullable_text_array(cols->functions, n), dasa_nullable_text_array(cols->queues, n),
		TimestampTzGetDatum(now), CStringGetTextDatum(c->id), CStringGetTextDatum(c->root_id),
		dasa_timestamptz_array(cols->due, n), dasa_nullable_text_array(cols->repeats, n),
		dasa_int4_array(cols->priorities, n), dasa_jsonb_array(cols->values, n),
	dasa_bool_array(cols->ran, n)};
	DasaRows	rows;

	if (write_free_children(args))
	{
		for (int i = 0; i < n; i++)
			(void) dasa_idset_add(written, cols->ids[i]);
		return written;
	}
	rows = dasa_run(&insert_children, args, NULL, 0);
	for (uint64 i = 0; i < rows.n; i++)
		(void) dasa_idset_add(written, dasa_get_text(&rows, i, "id"));
	return written;
}

/*
 * Write c's children that pass keep (one statement for all of them); those
 * in waited_on (an id set, or NULL) already marked awaited; as_ran: those
 * that ran inside the attempt as settled (else as pending, their run undone
 * with the attempt). Existing ids are left as they are. Returns the set of
 * ids written.
 */
static HTAB *
write_children(DasaContext *c, bool (*keep) (const DasaCreated *made), HTAB *waited_on, bool as_ran)
{
	TimestampTz now = GetCurrentTimestamp();
	ChildColumns cols;
	ListCell   *lc;
	HTAB	   *written;

	columns_init(&cols, list_length(c->created));
	foreach(lc, c->created)
	{
		DasaCreated *made = lfirst(lc);

		if (keep(made))
			columns_add(&cols, made, waited_on != NULL && dasa_idset_contains(waited_on, made->id),
						as_ran && made->ran, now);
	}
	if (cols.n == 0)
		return dasa_id_table("dasa children written", 1, sizeof(char *));
	written = columns_write(&cols, c, now);
	wake_for(c, written, as_ran, now);
	return written;
}

static bool
not_recorded(const DasaCreated *made)
{
	return !made->recorded;
}

static bool
is_unwritten(const DasaCreated *made)
{
	return made->unwritten;
}

/*
 * Write again, in the executor's own transaction, what a suspending attempt
 * created (children an earlier attempt recorded are there already): its
 * rollback took the rows away, and those it never wrote were waiting for
 * this, but the children must go on. Those in waited_on are written
 * already marked awaited. Returns the set of ids written.
 */
HTAB *
dasa_persist_created(DasaContext *c, HTAB *waited_on)
{
	return write_children(c, not_recorded, waited_on, false);
}

/*
 * Write, in the running attempt's own transaction, the children it has not
 * written yet: before it ends with a value, before it runs one of them at
 * once, and before any statement that reads dasa's tables (which would
 * otherwise miss them). An id found taken is checked as dasa.invoke would
 * have at once, and raises the same errors. As the extension owner.
 */
void
dasa_write_unwritten(DasaContext *c)
{
	DasaUserSave save;
	HTAB	   *written;
	ListCell   *lc;

	if (c->unwritten == 0)
		return;
	c->unwritten = 0;
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	reading_around++;
	written = write_children(c, is_unwritten, NULL, true);
	foreach(lc, c->created)
	{
		DasaCreated *made = lfirst(lc);

		if (!made->unwritten)
			continue;
		made->unwritten = false;
		if (!dasa_idset_contains(written, made->id))
			check_existing(made->id, made->function, made->owner, c, true);
	}
	reading_around--;
	SPI_finish();
	dasa_restore_user(&save);
}

/* Write c's children not written yet, but spared (which stays so). */
void
dasa_write_unwritten_but(DasaContext *c, DasaCreated *spared)
{
	bool		spare = spared->unwritten;

	if (spare)
	{
		spared->unwritten = false;
		c->unwritten--;
	}
	dasa_write_unwritten(c);
	if (spare)
	{
		spared->unwritten = true;
		c->unwritten++;
	}
}

/* Is id taken? (Connected to SPI as the extension owner.) */
static DasaStatement id_taken = {
	.sql = "SELECT 1 AS taken FROM dasa.promises WHERE id = $1",
	.args = {TEXTOID},
	.columns = {"taken"},
};

/*
 * Write child made of c, which ran inside c's attempt and returned value,
 * resolved and its task completed (one statement, two rows): what its
 * invoke, run and settlement would have written. False if its id is taken
 * (then it was not run: see dasa_inline_child_id_free). Connected to SPI.
 */
static DasaStatement insert_settled_child = {
	.sql = "WITH p AS (INSERT INTO dasa.promises (id, param, tags, timeout_at, created_at, parent_id, root_id,"
	"    owner, state, value, settled_at)"
	"  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'resolved', $10, $5) ON CONFLICT (id) DO NOTHING RETURNING id) "
	"INSERT INTO dasa.tasks (id, function, run_at, state, attempt, completed_at)"
	"  SELECT id, $9, $5, 'completed', 1, $5 FROM p RETURNING id",
	.args = {TEXTOID, JSONBOID, JSONBOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, OIDOID,
	TEXTOID, JSONBOID},
	.columns = {"id"},
};

/* May unwritten child made of c run inside c's attempt: is its id still free? Connected to SPI. */
bool
dasa_inline_child_id_free(const DasaCreated *made)
{
	Datum		args[1] = {CStringGetTextDatum(made->id)};
	bool		free;

	reading_around++;
	free = dasa_run(&id_taken, args, NULL, 1).n == 0;
	reading_around--;
	return free;
}

bool
dasa_write_settled_child(DasaContext *c, DasaCreated *made, Jsonb *value)
{
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[10] = {CStringGetTextDatum(made->id), PointerGetDatum(made->param),
		PointerGetDatum(made->tags), TimestampTzGetDatum(made->timeout_at), TimestampTzGetDatum(now),
		CStringGetTextDatum(c->id), CStringGetTextDatum(c->root_id), ObjectIdGetDatum(made->owner),
	CStringGetTextDatum(made->function), PointerGetDatum(value)};
	char		nulls[10] = {' ', made->param ? ' ' : 'n', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
	value ? ' ' : 'n'};

	bool		written;

	reading_around++;
	written = dasa_run(&insert_settled_child, args, nulls, 0).n == 1;
	reading_around--;
	if (!written)
		return false;
	made->unwritten = false;
	c->unwritten--;
	dasa_recorded_settled(c, made->id);
	return true;
}

/* Which of the ids $1 are taken. */
static DasaStatement taken_ids = {
	.sql = "SELECT id FROM dasa.promises WHERE id = ANY($1)",
	.args = {TEXTARRAYOID},
	.columns = {"id"},
};

/*
 * Are the ids of those of children[0..n) not written yet still free (one
 * probe)? Connected to SPI as the extension owner.
 */
bool
dasa_children_ids_free(DasaCreated **children, int n)
{
	List	   *ids = NIL;
	Datum		args[1];
	bool		free;

	for (int i = 0; i < n; i++)
		if (children[i]->unwritten)
			ids = lappend(ids, children[i]->id);
	if (ids == NIL)
		return true;
	args[0] = dasa_text_array_of_list(ids);
	reading_around++;
	free = dasa_run(&taken_ids, args, NULL, 1).n == 0;
	reading_around--;
	return free;
}

/*
 * Before a suspension: are the ids of the children not written yet still
 * free? If one is taken (a squatter that guessed it), write them now, so
 * that the checks of dasa.invoke run as they would have at once.
 */
void
dasa_check_unwritten(DasaContext *c)
{
	List	   *ids = NIL;
	DasaUserSave save;
	uint64		taken;
	ListCell   *lc;

	if (c->unwritten == 0)
		return;
	foreach(lc, c->created)
		if (((DasaCreated *) lfirst(lc))->unwritten)
			ids = lappend(ids, ((DasaCreated *) lfirst(lc))->id);
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	{
		Datum		args[1] = {dasa_text_array_of_list(ids)};

		reading_around++;
		taken = dasa_run(&taken_ids, args, NULL, 0).n;
		reading_around--;
	}
	SPI_finish();
	dasa_restore_user(&save);
	if (taken > 0)
		dasa_write_unwritten(c);
}
