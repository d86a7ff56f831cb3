/*
 * recorded.c: what the running attempt knows of its children without
 * reading them again.
 *
 * A replay runs the function from the start, so it calls dasa.invoke and
 * dasa.await again for every child it started before. Read once per
 * attempt (one statement, through the parent index), the recorded children
 * answer those calls from memory: the replay check with no insert and no
 * lookup, and the value of each child that had settled (a settled promise
 * never changes). A child that had settled is neither written again nor
 * waited on when the attempt suspends, and a child created by this very
 * attempt is known to be pending. So a step of a long chain costs about
 * what the first did, and a fan-out's replay reads nothing twice.
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

/*
 * The children of $1 as they stand at $2: kind, owner, and state (value if
 * settled); with those of the invocation $1 re-runs (own false, rerun_of).
 */
static DasaStatement children_of = {
	.since = "0.9.0",
	.sql = "WITH r AS (SELECT rerun_of FROM dasa.tasks WHERE id = $1),"
	" kids AS (SELECT x.*, true AS own FROM dasa.promises x WHERE x.parent_id = $1"
	"  UNION ALL"
	"  SELECT x.*, false FROM dasa.promises x WHERE x.parent_id = (SELECT rerun_of FROM r)) "
	"SELECT p.id, t.function, p.owner::oid AS owner,"
	"  p.state <> 'pending' OR p.timeout_at <= $2 AS settled, p.state::text AS state,"
	"  CASE WHEN p.state <> 'pending' THEN p.value END AS value, p.timeout_at, p.settled_at,"
	"  p.own, (SELECT rerun_of FROM r) AS rerun_of "
	"FROM kids p LEFT JOIN LATERAL (SELECT function FROM dasa.tasks t"
	"  WHERE t.id = p.id OFFSET 0) t ON true",
	.args = {TEXTOID, TIMESTAMPTZOID},
	.columns = {"id", "function", "owner", "settled", "state", "value", "timeout_at", "settled_at",
	"own", "rerun_of"},
};

typedef struct RecordedEntry
{
	char	   *id;				/* the hash key (a pointer: ids vary in length) */
	DasaRecorded child;
} RecordedEntry;

typedef struct FreshEntry
{
	char	   *id;
	DasaCreated *made;
} FreshEntry;

typedef struct RerunEntry
{
	char	   *id;				/* the child's id in this run */
	char	   *repeats;		/* the failed child of the earlier run */
} RerunEntry;

/* Keep row i of the children as recorded under key (its own id, or its name in this run). */
static void
keep_row(DasaContext *c, const DasaRows *rows, uint64 i, char *key, bool earlier_run)
{
	char	   *id = dasa_get_text(rows, i, "id");
	char	   *function = dasa_get_text(rows, i, "function");
	bool		isnull;
	bool		found;
	RecordedEntry *e = hash_search(c->recorded, &key, HASH_ENTER, &found);
	DasaRecorded *r = &e->child;

	if (found)
		return;					/* this run's own child of that name comes first */
	e->id = pstrdup(key);
	r->id = pstrdup(id);
	r->earlier_run = earlier_run;
	r->function = function ? pstrdup(function) : NULL;
	r->owner = DatumGetObjectId(dasa_get(rows, i, "owner", &isnull));
	r->settled = dasa_get_bool(rows, i, "settled");
	r->final = strcmp(dasa_get_text(rows, i, "state"), "pending") != 0;
	if (!r->final)
		return;
	r->promise.state = pstrdup(dasa_get_text(rows, i, "state"));
	r->promise.value = dasa_get_jsonb_copy(rows, i, "value");
	r->promise.timeout_at = dasa_get_timestamp(rows, i, "timeout_at");
	r->promise.settled_at = dasa_get_timestamp(rows, i, "settled_at");
}

/*
 * The name in run c of child id of the run c repeats ("<earlier>.<n>" is
 * "<c>.<n>"); NULL if it has none (an explicit id, a shortened deep one).
 */
static char *
name_in_this_run(DasaContext *c, const char *earlier, const char *id)
{
	size_t		len = strlen(earlier);
	char	   *name;

	if (strncmp(id, earlier, len) != 0 || id[len] != '.' || strchr(id + len + 1, '.') != NULL)
		return NULL;
	name = psprintf("%s%s", c->id, id + len);
	return strlen(name) <= DASA_MAX_ID_BYTES ? name : NULL;
}

/*
 * A child of the run c repeats: one that resolved is found again under its
 * name in this run (its value reused, never run again); an invocation that
 * failed is repeated as well, by the child of that name (c->reruns).
 */
static void
keep_earlier(DasaContext *c, const DasaRows *rows, uint64 i)
{
	char	   *id = dasa_get_text(rows, i, "id");
	char	   *name = name_in_this_run(c, dasa_get_text(rows, i, "rerun_of"), id);
	RerunEntry *e;

	if (name == NULL)
		return;
	if (strcmp(dasa_get_text(rows, i, "state"), "resolved") == 0)
	{
		keep_row(c, rows, i, name, true);
		return;
	}
	if (dasa_get_text(rows, i, "function") == NULL)
		return;
	if (c->reruns == NULL)
		c->reruns = dasa_id_table("dasa children re-run", 16, sizeof(RerunEntry));
	e = hash_search(c->reruns, &name, HASH_ENTER, NULL);
	e->id = name;
	e->repeats = pstrdup(id);
}

/* Read c's recorded children into c->recorded (as the extension owner). */
static void
load(DasaContext *c)
{
	Datum		args[2] = {CStringGetTextDatum(c->id), TimestampTzGetDatum(GetCurrentTimestamp())};
	DasaUserSave save;
	DasaRows	rows;
	MemoryContext old;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	rows = dasa_run(&children_of, args, NULL, 0);
	old = MemoryContextSwitchTo(c->memory);
	c->recorded = dasa_id_table("dasa recorded children", (long) rows.n, sizeof(RecordedEntry));
	for (uint64 i = 0; i < rows.n; i++)
		if (dasa_get_bool(&rows, i, "own"))
			keep_row(c, &rows, i, dasa_get_text(&rows, i, "id"), false);
	for (uint64 i = 0; i < rows.n; i++)
		if (!dasa_get_bool(&rows, i, "own"))
			keep_earlier(c, &rows, i);
	MemoryContextSwitchTo(old);
	SPI_finish();
	dasa_restore_user(&save);
}

/* What c recorded as its child id in earlier attempts, or NULL if nothing. */
const DasaRecorded *
dasa_recorded_child(DasaContext *c, const char *id)
{
	RecordedEntry *e;

	if (c->entered)
		return NULL;
	if (c->recorded == NULL)
		load(c);
	e = hash_search(c->recorded, &id, HASH_FIND, NULL);
	return e ? &e->child : NULL;
}

/* The failed child of the run c repeats that child id of c repeats in turn; NULL if none. */
char *
dasa_recorded_rerun_of(DasaContext *c, const char *id)
{
	RerunEntry *e;

	if (dasa_recorded_child(c, id) != NULL || c->reruns == NULL)
		return NULL;
	e = hash_search(c->reruns, &id, HASH_FIND, NULL);
	return e ? e->repeats : NULL;
}

/* Note a child this attempt created (made lives in c->memory). */
void
dasa_recorded_fresh(DasaContext *c, DasaCreated *made)
{
	MemoryContext old = MemoryContextSwitchTo(c->memory);
	FreshEntry *e;

	if (c->fresh == NULL)
		c->fresh = dasa_id_table("dasa fresh children", 64, sizeof(FreshEntry));
	e = hash_search(c->fresh, &made->id, HASH_ENTER, NULL);
	e->id = made->id;
	e->made = made;
	MemoryContextSwitchTo(old);
}

/* Is id a child of c that this attempt made or an earlier one recorded? */
bool
dasa_recorded_is_child(DasaContext *c, const char *id)
{
	if (c->fresh != NULL && hash_search(c->fresh, &id, HASH_FIND, NULL) != NULL)
		return true;
	return dasa_recorded_child(c, id) != NULL;
}

/* The child id this attempt created, still pending; NULL if id is not one. */
DasaCreated *
dasa_recorded_fresh_child(DasaContext *c, const char *id)
{
	FreshEntry *fresh = c->fresh ? hash_search(c->fresh, &id, HASH_FIND, NULL) : NULL;

	return fresh ? fresh->made : NULL;
}

/* A child this attempt created was settled by the attempt itself: no longer known pending. */
void
dasa_recorded_settled(DasaContext *c, const char *id)
{
	if (c->fresh != NULL)
		(void) hash_search(c->fresh, &id, HASH_REMOVE, NULL);
}

/*
 * What the attempt of c knows of promise id without reading it, as role
 * would read it: true, with *out filled, for a child this attempt created
 * (pending: nobody else can see it yet; or resolved, if it ran inside the
 * attempt) or a child that had settled when the attempt began.
 */
bool
dasa_recorded_read(DasaContext *c, const char *id, Oid role, DasaPromiseRead *out)
{
	FreshEntry *fresh = c->fresh ? hash_search(c->fresh, &id, HASH_FIND, NULL) : NULL;
	const DasaRecorded *r;

	if (fresh != NULL)
	{
		out->state = fresh->made->ran ? "resolved" : "pending";
		out->value = fresh->made->ran ? fresh->made->value : NULL;
		out->timeout_at = fresh->made->timeout_at;
		out->settled_at = fresh->made->ran ? GetCurrentTimestamp() : 0;
		return true;
	}
	r = dasa_recorded_child(c, id);
	if (r == NULL || !r->final || !dasa_may_access(role, r->owner))
		return false;
	*out = r->promise;
	return true;
}
