/*
 * retention.c: settled history removed, and what must stay.
 *
 * A tree is a root promise (no parent) and everything under it, found by
 * parent links. It goes as a whole once its root settled before the
 * cut-off, every promise in it is settled, every task in it completed, and
 * no task that may run again holds one of its promises: with its tasks go
 * their attempts, callbacks and holds, and its listeners. A task holds a
 * promise of another tree that it awaited, because its replay reads it
 * again; the hold is written when the task suspends or fails with a retry
 * left (dasa_holds_keep), outside the attempt that rolled back.
 *
 * Settled roots are walked by settle time (a partial index), with a key so
 * that a tree kept back is not read again in the same walk. Every row of a
 * tree is locked, skipping: a tree with a row someone holds right now waits
 * for the next walk, so retention never waits on a lock. A tree larger than
 * a step's bound goes from its deepest promises up, over several steps.
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

/* Settled roots before $1, after the key ($3, $4), oldest first, up to $2, locked; of roles $5 reaches (NULL: all). */
static DasaStatement old_roots = {
	.since = "0.8.0",
	.sql = "SELECT id, settled_at FROM dasa.promises "
	"WHERE parent_id IS NULL AND settled_at IS NOT NULL AND settled_at < $1"
	"  AND (settled_at, id) > ($3, $4)"
	"  AND ($5::oid IS NULL OR owner::oid IN"
	"    (SELECT oid FROM pg_catalog.pg_roles WHERE pg_catalog.pg_has_role($5::oid, oid, 'USAGE')))"
	"ORDER BY settled_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
	.args = {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, TEXTOID, OIDOID},
	.columns = {"id", "settled_at"},
};

/*
 * The tree under root $1, root first and deepest last. (Each level's
 * children are probed by parent, OFFSET 0 keeping the probe an index
 * lookup whatever the plan thinks of the tree's size.)
 */
static DasaStatement tree_of = {
	.since = "0.8.0",
	.sql = "WITH RECURSIVE tree(id) AS (SELECT $1::text COLLATE \"C\" UNION ALL"
	"  SELECT c.id FROM tree t CROSS JOIN LATERAL"
	"    (SELECT p.id FROM dasa.promises p WHERE p.parent_id = t.id OFFSET 0) c) "
	"SELECT array_agg(id) AS ids FROM tree",
	.args = {TEXTOID},
	.columns = {"ids"},
};

/*
 * Lock the tree's promises and tasks by key, skipping rows held now: how
 * many of each were locked (and how many tasks exist), and of those, the
 * promises still pending and the tasks not done.
 */
static DasaStatement lock_tree = {
	.since = "0.8.0",
	.sql = "SELECT p.locked AS promises_locked, p.pending, t.locked AS tasks_locked, t.running,"
	"  (SELECT count(*) FROM dasa.tasks WHERE id = ANY($1)) AS tasks "
	"FROM (SELECT count(*) AS locked, count(*) FILTER (WHERE settled_at IS NULL) AS pending"
	"      FROM (SELECT settled_at FROM dasa.promises WHERE id = ANY($1) FOR UPDATE SKIP LOCKED) x) p,"
	"     (SELECT count(*) AS locked, count(*) FILTER (WHERE state <> 'completed') AS running"
	"      FROM (SELECT state FROM dasa.tasks WHERE id = ANY($1) FOR UPDATE SKIP LOCKED) y) t",
	.args = {TEXTARRAYOID},
	.columns = {"promises_locked", "pending", "tasks_locked", "running", "tasks"},
};

/*
 * Is a promise of the tree held by a task not done? Read after the locks
 * (a statement of its own, so its snapshot sees every hold committed
 * before them; one being added waits for them, and then finds no promise).
 */
static DasaStatement tree_held = {
	.since = "0.8.0",
	.sql = "SELECT EXISTS (SELECT FROM dasa.holds h JOIN dasa.tasks t ON t.id = h.task_id"
	"  WHERE h.promise_id = ANY($1) AND t.state <> 'completed') AS held",
	.args = {TEXTARRAYOID},
	.columns = {"held"},
};

static DasaStatement delete_promises = {
	.since = "0.8.0",
	.sql = "WITH a AS (DELETE FROM dasa.attempts WHERE task_id = ANY($1)),"
	"  c AS (DELETE FROM dasa.callbacks WHERE promise_id = ANY($1) OR task_id = ANY($1)),"
	"  h AS (DELETE FROM dasa.holds WHERE promise_id = ANY($1) OR task_id = ANY($1)),"
	"  l AS (DELETE FROM dasa.listeners WHERE promise_id = ANY($1)),"
	"  t AS (DELETE FROM dasa.tasks WHERE id = ANY($1)) "
	"DELETE FROM dasa.promises WHERE id = ANY($1)",
	.args = {TEXTARRAYOID},
};

/* Holds of task $2 on the promises $1 that exist (kept from deletion until this commits). */
static DasaStatement add_holds = {
	.since = "0.8.0",
	.sql = "INSERT INTO dasa.holds (promise_id, task_id) "
	"SELECT id, $2 FROM dasa.promises WHERE id = ANY($1) FOR KEY SHARE "
	"ON CONFLICT DO NOTHING",
	.args = {TEXTARRAYOID, TEXTOID},
};

void
dasa_retention_start(DasaRetention *r, TimestampTz cutoff, Oid role, int max_rows)
{
	memset(r, 0, sizeof(*r));
	r->cutoff = cutoff;
	r->role = role;
	r->max_rows = max_rows;
	r->after_at = DT_NOBEGIN;
}

static int64
delete_ids(Datum *ids, int n)
{
	Datum		args[1] = {PointerGetDatum(construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT))};

	return (int64) dasa_run(&delete_promises, args, NULL, 0).n;
}

/*
 * Remove the tree under root, or at most max_rows of its deepest promises
 * (0: no bound); *partly: some of it is left. Returns the promises removed
 * (0 if the tree must stay or a row of it is held now).
 */
static int64
remove_tree(const char *root, int max_rows, bool *partly)
{
	Datum		args[1] = {CStringGetTextDatum(root)};
	DasaRows	tree = dasa_run(&tree_of, args, NULL, 1);
	bool		isnull;
	Datum		ids_datum = dasa_get(&tree, 0, "ids", &isnull);
	Datum	   *ids;
	int			n;
	DasaRows	locked;
	DasaRows	held;

	*partly = false;
	if (isnull)
		return 0;
	args[0] = ids_datum;
	deconstruct_array(DatumGetArrayTypeP(ids_datum), TEXTOID, -1, false, TYPALIGN_INT, &ids, NULL, &n);
	locked = dasa_run(&lock_tree, args, NULL, 1);
	if (dasa_get_int64(&locked, 0, "promises_locked") < n ||
		dasa_get_int64(&locked, 0, "tasks_locked") < dasa_get_int64(&locked, 0, "tasks") ||
		dasa_get_int64(&locked, 0, "pending") > 0 || dasa_get_int64(&locked, 0, "running") > 0)
		return 0;
	held = dasa_run(&tree_held, args, NULL, 1);
	if (dasa_get_bool(&held, 0, "held"))
		return 0;
	if (max_rows > 0 && n > max_rows)
	{
		*partly = true;
		return delete_ids(ids + (n - max_rows), max_rows);
	}
	return delete_ids(ids, n);
}

/*
 * One step of the walk: look at up to max_roots settled roots past the key,
 * removing the trees that may go (at most r->max_rows promises, if set).
 * r->done once the walk has seen every root before the cut-off.
 */
void
dasa_retention_step(DasaRetention *r, int max_roots)
{
	Datum		args[5] = {TimestampTzGetDatum(r->cutoff), Int32GetDatum(max_roots),
		TimestampTzGetDatum(r->after_at), CStringGetTextDatum(r->after_id),
	ObjectIdGetDatum(r->role)};
	char		nulls[5] = {' ', ' ', ' ', ' ', OidIsValid(r->role) ? ' ' : 'n'};
	DasaRows	roots = dasa_run(&old_roots, args, nulls, 0);
	int64		budget = r->max_rows;

	r->done = roots.n < (uint64) max_roots;
	for (uint64 i = 0; i < roots.n; i++)
	{
		char	   *id = dasa_get_text(&roots, i, "id");
		bool		partly;
		int64		removed = remove_tree(id, (int) budget, &partly);

		r->removed += removed;
		if (partly)
		{
			r->done = false;	/* the rest of it next step */
			return;
		}
		r->after_at = dasa_get_timestamp(&roots, i, "settled_at");
		strlcpy(r->after_id, id, sizeof(r->after_id));
		if (r->max_rows > 0 && (budget -= removed) <= 0)
		{
			r->done = r->done && i + 1 == roots.n;
			return;
		}
	}
}

/*
 * Task task_id, which may run again, awaited the promises promise_ids of
 * other trees: keep them while it is not done. Each is key-share locked, so
 * a removal under way finishes first and then it is not held.
 */
void
dasa_holds_keep(const char *task_id, List *promise_ids)
{
	Datum		args[2];

	if (promise_ids == NIL)
		return;
	args[0] = dasa_text_array_of_list(promise_ids);
	args[1] = CStringGetTextDatum(task_id);
	(void) dasa_run(&add_holds, args, NULL, 0);
}
