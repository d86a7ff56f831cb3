/*
 * context.c: the execution context of the invocation an executor runs now.
 *
 * Inside a running function, dasa.invoke names children "<parent>.<n>" (n
 * counts this attempt's calls in order), promises it creates become its
 * children, and dasa.await on a pending promise suspends the attempt. The
 * context remembers what the attempt created and awaited, so that the
 * executor can keep those even though it rolls the attempt's work back, and
 * it knows the attempt suspended even if user code caught the signal.
 * Outside an executor there is no context and nothing here applies.
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

/* Bytes of the root's id kept at the front of a shortened child id. */
#define ROOT_PREFIX_BYTES 64

/* Where a promise sits in its tree. */
static DasaStatement promise_lineage = {
	.sql = "SELECT parent_id, root_id FROM dasa.promises WHERE id = $1",
	.args = {TEXTOID},
	.columns = {"parent_id", "root_id"},
};

/*
 * Is $2 an ancestor of $1? Walks up one parent at a time (a LATERAL probe
 * of the primary key per level); only run for a promise of the same tree
 * that is not the invocation's own child.
 */
static DasaStatement is_ancestor = {
	.sql = "WITH RECURSIVE up(id) AS ("
	"  SELECT parent_id FROM dasa.promises WHERE id = $1 AND parent_id IS NOT NULL"
	"  UNION"
	"  SELECT p.parent_id FROM up CROSS JOIN LATERAL (SELECT parent_id FROM dasa.promises x"
	"    WHERE x.id = up.id OFFSET 0) p WHERE p.parent_id IS NOT NULL) "
	"SELECT EXISTS (SELECT 1 FROM up WHERE id = $2) AS found",
	.args = {TEXTOID, TEXTOID},
	.columns = {"found"},
};

static DasaContext *current = NULL;

/* A client session working on an external task (dasa.enter_task): lives until it leaves. */
static DasaContext *entered = NULL;
static MemoryContext entered_memory = NULL;

/* The context of the running invocation, or of the entered external task; NULL outside both. */
DasaContext *
dasa_context(void)
{
	return current ? current : entered;
}

/* The context of an executor's running attempt, which suspends rather than block; or NULL. */
DasaContext *
dasa_suspending_context(void)
{
	return current;
}

/* Start the context of one attempt of task; allocated in the current memory context. */
void
dasa_context_begin(DasaTask *task)
{
	DasaContext *c = palloc0(sizeof(DasaContext));

	c->id = task->id;
	c->root_id = task->root_id ? task->root_id : task->id;
	c->deadline = task->timeout_at;
	c->memory = CurrentMemoryContext;
	if (current == NULL)
		dasa_unwritten_reset();
	current = c;
}

void
dasa_context_end(void)
{
	current = NULL;
}

/* Make c the running attempt's context (a child run inside it, and back); returns the one before. */
DasaContext *
dasa_context_swap(DasaContext *c)
{
	DasaContext *before = current;

	current = c;
	return before;
}

/*
 * This session works on the claimed external task from now on: what it
 * invokes or creates are the task's children ("<task>.<n>", n counting
 * from 1 again at each entry, so a re-run after a lost claim finds the
 * same children), their deadlines capped at the task's. Waiting blocks as
 * in any session.
 */
void
dasa_context_enter(DasaTask *task)
{
	MemoryContext old;

	if (entered_memory == NULL)
		entered_memory = AllocSetContextCreate(TopMemoryContext, "dasa entered task",
											   ALLOCSET_SMALL_SIZES);
	entered = NULL;
	MemoryContextReset(entered_memory);
	old = MemoryContextSwitchTo(entered_memory);
	entered = palloc0(sizeof(DasaContext));
	entered->id = pstrdup(task->id);
	entered->root_id = pstrdup(task->root_id ? task->root_id : task->id);
	entered->deadline = task->timeout_at;
	entered->entered = true;
	entered->memory = entered_memory;
	MemoryContextSwitchTo(old);
}

/* Leave the entered external task (id NULL: whichever it is); true if the session was in it. */
bool
dasa_context_leave(const char *id)
{
	if (entered == NULL || (id != NULL && strcmp(entered->id, id) != 0))
		return false;
	entered = NULL;
	MemoryContextReset(entered_memory);
	return true;
}

/* The SHA-256 of s as 64 hex digits. */
static char *
sha256_hex(const char *s)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(2 * PG_SHA256_DIGEST_LENGTH + 1);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) s, strlen(s)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	return hex;
}

/*
 * The id of the next child: "<parent>.<n>" while that fits the id limit.
 * Deeper down it would not, so the parent's id is replaced by
 * "<start of the root's id>~<SHA-256 of the parent's id>": still
 * deterministic (a replay names the same children) and at most about 140
 * bytes, so a tree may be as deep as it likes. Ids that fit keep the plain
 * form, so no existing id changes.
 */
char *
dasa_context_child_id(DasaContext *c)
{
	int			n = ++c->children;
	char	   *id = psprintf("%s.%d", c->id, n);

	if (strlen(id) > DASA_MAX_ID_BYTES)
	{
		int			keep = pg_mbcliplen(c->root_id, strlen(c->root_id), ROOT_PREFIX_BYTES);

		id = psprintf("%.*s~%s.%d", keep, c->root_id, sha256_hex(c->id), n);
	}
	return MemoryContextStrdup(c->memory, id);
}

/* A child's deadline may not pass its parent's. */
TimestampTz
dasa_context_cap(DasaContext *c, TimestampTz timeout_at)
{
	return Min(timeout_at, c->deadline);
}

/* The same for a deadline asked for in so many words: cutting it says so (a NOTICE). */
TimestampTz
dasa_context_cap_asked(DasaContext *c, const char *id, TimestampTz timeout_at)
{
	if (timeout_at <= c->deadline)
		return timeout_at;
	ereport(NOTICE,
			(errmsg("the deadline of \"%s\" is cut to that of \"%s\", %s", id, c->id,
					timestamptz_to_str(c->deadline)),
			 errdetail("A child never outlives its parent: when the parent ends, everything under it ends."),
			 errhint("Register the parent's function with a longer timeout (its deadline).")));
	return c->deadline;
}

/* Remember a promise (and, with function non-NULL, its task) this attempt created; NULL if it need not. */
DasaCreated *
dasa_context_created(DasaContext *c, const char *id, const char *function, const char *queue,
					 Jsonb *param, Jsonb *tags, TimestampTz timeout_at, Oid owner)
{
	MemoryContext old;
	DasaCreated *made;

	/* Only a suspending attempt needs them again; an entered task's writes commit as they are. */
	if (c->entered)
		return NULL;
	old = MemoryContextSwitchTo(c->memory);
	made = palloc0(sizeof(DasaCreated));

	made->id = pstrdup(id);
	made->function = function ? pstrdup(function) : NULL;
	made->queue = queue ? pstrdup(queue) : NULL;
	made->param = param ? DatumGetJsonbPCopy(PointerGetDatum(param)) : NULL;
	made->tags = DatumGetJsonbPCopy(PointerGetDatum(tags));
	made->timeout_at = timeout_at;
	made->owner = owner;
	c->created = lappend(c->created, made);
	MemoryContextSwitchTo(old);
	if (function != NULL)
		dasa_recorded_fresh(c, made);
	return made;
}

/*
 * Note that c awaited promise id, not one of its children: if the task runs
 * again, its replay reads it again, so retention must keep it (a hold).
 */
void
dasa_context_note_read(DasaContext *c, const char *id)
{
	MemoryContext old;
	char	   *kept;

	if (c->entered || (c->read_set != NULL && dasa_idset_contains(c->read_set, id)))
		return;
	old = MemoryContextSwitchTo(c->memory);
	if (c->read_set == NULL)
		c->read_set = dasa_id_table("dasa promises read", 16, sizeof(char *));
	kept = pstrdup(id);
	(void) dasa_idset_add(c->read_set, kept);
	c->read_elsewhere = lappend(c->read_elsewhere, kept);
	MemoryContextSwitchTo(old);
}

/*
 * Remember a child an earlier attempt recorded, found again by this one:
 * nothing to write for it, and nothing to wait for if it had settled.
 */
void
dasa_context_found(DasaContext *c, const char *id, const char *function,
				   const DasaRecorded *recorded)
{
	MemoryContext old;
	DasaCreated *made;

	if (c->entered)
		return;
	old = MemoryContextSwitchTo(c->memory);
	made = palloc0(sizeof(DasaCreated));
	made->id = pstrdup(id);
	made->function = function ? pstrdup(function) : NULL;
	made->owner = recorded->owner;
	made->recorded = true;
	made->settled = recorded->settled;
	c->created = lappend(c->created, made);
	MemoryContextSwitchTo(old);
}

/* Is id the running invocation or one of its ancestors? (Connected to SPI as the owner.) */
static bool
awaits_own_line(DasaContext *c, const char *id)
{
	Datum		args[2] = {CStringGetTextDatum(c->id), CStringGetTextDatum(id)};
	DasaRows	lineage;
	DasaRows	found;

	bool		walk;

	if (strcmp(id, c->id) == 0 || strcmp(id, c->root_id) == 0)
		return true;
	/* One's own child cannot be an ancestor: known ones need no read (a fan-out awaits thousands). */
	if (dasa_recorded_is_child(c, id))
		return false;
	lineage = dasa_run(&promise_lineage, args + 1, NULL, 1);
	/* Nor can a promise of another tree. */
	walk = lineage.n == 1 &&
		!(dasa_get_text(&lineage, 0, "parent_id") != NULL &&
		  strcmp(dasa_get_text(&lineage, 0, "parent_id"), c->id) == 0) &&
		dasa_get_text(&lineage, 0, "root_id") != NULL &&
		strcmp(dasa_get_text(&lineage, 0, "root_id"), c->root_id) == 0;
	SPI_freetuptable(lineage.table);
	if (!walk)
		return false;
	found = dasa_run(&is_ancestor, args, NULL, 1);
	walk = dasa_get_bool(&found, 0, "found");
	SPI_freetuptable(found.table);
	return walk;
}

/*
 * Awaiting itself or an ancestor (which waits for it) would wait until the
 * deadline: refuse at once, with no retry.
 */
void
dasa_context_refuse_own_line(DasaContext *c, List *ids)
{
	DasaUserSave save;
	ListCell   *lc;
	char	   *culprit = NULL;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	foreach(lc, ids)
		if (culprit == NULL && awaits_own_line(c, (char *) lfirst(lc)))
			culprit = (char *) lfirst(lc);
	SPI_finish();
	dasa_restore_user(&save);
	if (culprit == NULL)
		return;
	c->final = true;
	ereport(ERROR,
			(errcode(ERRCODE_DASA_AWAITS_ITSELF),
			 errmsg("invocation \"%s\" cannot await %s", c->id,
					strcmp(culprit, c->id) == 0 ? "itself" : psprintf("its ancestor \"%s\"", culprit)),
			 errdetail("The awaited invocation waits for this one, so neither could ever finish."),
			 errhint("Await children, or promises settled elsewhere; return a value to the parent instead.")));
}

/*
 * Suspend the attempt until the given pending promises settle (all of them,
 * or any one). Raises an error to unwind the user's code; the executor reads
 * the flag, so catching the error changes nothing.
 */
void
dasa_context_suspend(DasaContext *c, List *ids, bool any)
{
	MemoryContext old;
	ListCell   *lc;

	dasa_context_refuse_own_line(c, ids);
	dasa_check_unwritten(c);
	old = MemoryContextSwitchTo(c->memory);

	foreach(lc, ids)
		c->awaited = lappend(c->awaited, pstrdup((char *) lfirst(lc)));
	c->await_any = c->await_any || any;
	c->suspended = true;
	MemoryContextSwitchTo(old);
	ereport(ERROR,
			(errcode(ERRCODE_DASA_SUSPENDED),
			 errmsg("invocation \"%s\" suspends until %s settles", c->id,
					list_length(ids) == 1 ? (char *) linitial(ids) : "what it awaits"),
			 errdetail("This is not a failure: dasa rolls this attempt back and runs the function again once the awaited promises settle."),
			 errhint("Do not catch this error; if you do, dasa suspends the invocation anyway.")));
}
