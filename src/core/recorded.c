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

/* The children of $1 as they stand at $2: kind, owner, and state (value if settled). */
static DasaStatement children_of = {
	.sql = "SELECT p.id, t.function, p.owner::oid AS owner,"
	"  p.state <> 'pending' OR p.timeout_at <= $2 AS settled, p.state::text AS state,"
	"  CASE WHEN p.state <> 'pending' THEN p.value END AS value, p.timeout_at, p.settled_at "
	"FROM dasa.promises p LEFT JOIN LATERAL (SELECT function FROM dasa.tasks t"
	"  WHERE t.id = p.id OFFSET 0) t ON true "
	"WHERE p.parent_id = $1",
	.args = {TEXTOID, TIMESTAMPTZOID},
	.columns = {"id", "function", "owner", "settled", "state", "value", "timeout_at", "settled_at"},
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

static void
keep_row(DasaContext *c, const DasaRows *rows, uint64 i)
{
	char	   *id = dasa_get_text(rows, i, "id");
	char	   *function = dasa_get_text(rows, i, "function");
	bool		isnull;
	RecordedEntry *e = hash_search(c->recorded, &id, HASH_ENTER, NULL);
	DasaRecorded *r = &e->child;

	e->id = pstrdup(id);
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
		keep_row(c, &rows, i);
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
 * (pending: nobody else can see it yet) or a child that had settled when
 * the attempt began.
 */
bool
dasa_recorded_read(DasaContext *c, const char *id, Oid role, DasaPromiseRead *out)
{
	FreshEntry *fresh = c->fresh ? hash_search(c->fresh, &id, HASH_FIND, NULL) : NULL;
	const DasaRecorded *r;

	if (fresh != NULL)
	{
		out->state = "pending";
		out->value = NULL;
		out->timeout_at = fresh->made->timeout_at;
		out->settled_at = 0;
		return true;
	}
	r = dasa_recorded_child(c, id);
	if (r == NULL || !r->final || !dasa_may_access(role, r->owner))
		return false;
	*out = r->promise;
	return true;
}
