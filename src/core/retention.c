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
 * that a tree kept back is not read again in the same walk; a step takes a
 * batch of roots with two statements (find and lock the trees, then check
 * the holds and delete). Every row of a tree is locked, skipping: a tree
 * with a row someone holds right now waits for the next walk, so retention
 * never waits on a lock. A tree larger than a step's bound goes from its
 * deepest promises up, over several steps.
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
 * The trees under the roots $1, each with its promises deepest first (the
 * root last), and whether it may go as far as its rows say: every promise
 * settled, every task completed, none of them held by someone else right
 * now (their rows are locked, skipping: a row in use keeps its tree). Each
 * level's children are probed by parent (OFFSET 0 keeps the probe an index
 * lookup whatever the plan thinks of the trees' sizes).
 */
static DasaStatement lock_trees = {
	.since = "0.8.0",
	.sql = "WITH RECURSIVE tree(root, id, depth) AS ("
	"    SELECT r COLLATE \"C\", r COLLATE \"C\", 0 FROM unnest($1::text[]) r"
	"  UNION ALL"
	"    SELECT t.root, c.id, t.depth + 1 FROM tree t CROSS JOIN LATERAL"
	"      (SELECT p.id FROM dasa.promises p WHERE p.parent_id = t.id OFFSET 0) c),"
	"  every AS MATERIALIZED (SELECT array_agg(id) AS ids FROM tree),"
	"  lp AS (SELECT id, settled_at FROM dasa.promises WHERE id = ANY((SELECT ids FROM every)::text[])"
	"         FOR UPDATE SKIP LOCKED),"
	"  tk AS (SELECT id FROM dasa.tasks WHERE id = ANY((SELECT ids FROM every)::text[])),"
	"  lt AS (SELECT id, state FROM dasa.tasks WHERE id = ANY((SELECT ids FROM every)::text[])"
	"         FOR UPDATE SKIP LOCKED) "
	"SELECT t.root, array_agg(t.id ORDER BY t.depth DESC) AS ids,"
	"  bool_and(p.id IS NOT NULL AND p.settled_at IS NOT NULL"
	"           AND (k.id IS NULL OR (l.id IS NOT NULL AND l.state = 'completed'))) AS free "
	"FROM tree t LEFT JOIN lp p ON p.id = t.id LEFT JOIN tk k ON k.id = t.id LEFT JOIN lt l ON l.id = t.id "
	"GROUP BY t.root",
	.args = {TEXTARRAYOID},
	.columns = {"root", "ids", "free"},
};

/*
 * Remove the promises $2 (of the trees $1, those with $3 true) with their
 * tasks, attempts, callbacks, holds and listeners (and Resonate tasks and
 * callbacks), except the trees of which a promise is held by a task not
 * done, or is a step of a Resonate workflow still pending (tag
 * resonate:origin: its replay reads the step again). A statement after the locks,
 * so its snapshot sees every hold committed before them (a hold being
 * added waits for them, and then finds no promise to hold).
 */
static DasaStatement delete_trees = {
	.since = "0.11.0",
	.sql = "WITH d AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bool[]) AS d(root, id, go)),"
	"  held AS (SELECT DISTINCT d.root FROM d JOIN dasa.holds h ON h.promise_id = d.id"
	"           JOIN dasa.tasks k ON k.id = h.task_id WHERE k.state <> 'completed'"
	"         UNION SELECT d.root FROM d JOIN dasa.promises p ON p.id = d.id"
	"           JOIN dasa.promises o ON o.id = p.tags->>'resonate:origin'"
	"           WHERE p.tags ? 'resonate:origin' AND o.id <> p.id AND o.state = 'pending'),"
	"  gone AS MATERIALIZED (SELECT coalesce(array_agg(id), '{}') AS ids FROM d"
	"                        WHERE go AND root NOT IN (SELECT root FROM held)),"
	"  a AS (DELETE FROM dasa.attempts WHERE task_id = ANY((SELECT ids FROM gone)::text[])),"
	"  c AS (DELETE FROM dasa.callbacks WHERE promise_id = ANY((SELECT ids FROM gone)::text[])"
	"        OR task_id = ANY((SELECT ids FROM gone)::text[])),"
	"  h AS (DELETE FROM dasa.holds WHERE promise_id = ANY((SELECT ids FROM gone)::text[])"
	"        OR task_id = ANY((SELECT ids FROM gone)::text[])),"
	"  l AS (DELETE FROM dasa.listeners WHERE promise_id = ANY((SELECT ids FROM gone)::text[])),"
	"  t AS (DELETE FROM dasa.tasks WHERE id = ANY((SELECT ids FROM gone)::text[])),"
	"  rt AS (DELETE FROM resonate.tasks WHERE id = ANY((SELECT ids FROM gone)::text[])),"
	"  rc AS (DELETE FROM resonate.callbacks WHERE awaited = ANY((SELECT ids FROM gone)::text[])"
	"         OR awaiter = ANY((SELECT ids FROM gone)::text[])) "
	"DELETE FROM dasa.promises WHERE id = ANY((SELECT ids FROM gone)::text[])",
	.args = {TEXTARRAYOID, TEXTARRAYOID, BOOLARRAYOID},
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

/* What one step removes: the promises of whole trees (and the deepest of a large one). */
typedef struct Doomed
{
	List	   *roots;			/* of each id */
	List	   *ids;
	List	   *go;				/* removed now (false: only checked for holds) */
	int			n;				/* ids removed now */
} Doomed;

static void
doom(Doomed *d, char *root, Datum *ids, int n, int now)
{
	for (int i = 0; i < n; i++)
	{
		d->roots = lappend(d->roots, root);
		d->ids = lappend(d->ids, TextDatumGetCString(ids[i]));
		d->go = lappend_int(d->go, i < now);
	}
	d->n += now;
}

static int64
remove_doomed(const Doomed *d)
{
	int			n = list_length(d->ids);
	Datum	   *go = palloc(Max(n, 1) * sizeof(Datum));
	Datum		args[3];
	ListCell   *lc;

	if (d->n == 0)
		return 0;
	foreach(lc, d->go)
		go[foreach_current_index(lc)] = BoolGetDatum(lfirst_int(lc) != 0);
	args[0] = dasa_text_array_of_list(d->roots);
	args[1] = dasa_text_array_of_list(d->ids);
	args[2] = PointerGetDatum(construct_array(go, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	return (int64) dasa_run(&delete_trees, args, NULL, 0).n;
}

/* The row of lock_trees for root; -1 if there is none. */
static int64
tree_row(const DasaRows *trees, const char *root)
{
	for (uint64 i = 0; i < trees->n; i++)
		if (strcmp(dasa_get_text(trees, i, "root"), root) == 0)
			return (int64) i;
	return -1;
}

/*
 * One step of the walk: look at up to max_roots settled roots past the key,
 * removing the trees that may go (at most r->max_rows promises, if set; a
 * tree larger than that loses its deepest promises and is taken up again
 * next step). r->done once the walk has seen every root before the cut-off.
 */
void
dasa_retention_step(DasaRetention *r, int max_roots)
{
	Datum		args[5] = {TimestampTzGetDatum(r->cutoff), Int32GetDatum(max_roots),
		TimestampTzGetDatum(r->after_at), CStringGetTextDatum(r->after_id),
	ObjectIdGetDatum(r->role)};
	char		nulls[5] = {' ', ' ', ' ', ' ', OidIsValid(r->role) ? ' ' : 'n'};
	DasaRows	roots = dasa_run(&old_roots, args, nulls, 0);
	char	  **root_ids = palloc(Max(roots.n, 1) * sizeof(char *));
	Doomed		doomed = {0};
	DasaRows	trees;

	r->done = roots.n < (uint64) max_roots;
	if (roots.n == 0)
		return;
	for (uint64 i = 0; i < roots.n; i++)
		root_ids[i] = dasa_get_text(&roots, i, "id");
	args[0] = dasa_text_array(root_ids, (int) roots.n);
	trees = dasa_run(&lock_trees, args, NULL, 0);
	for (uint64 i = 0; i < roots.n; i++)
	{
		int64		row = tree_row(&trees, root_ids[i]);
		bool		isnull;
		Datum	   *ids;
		int			n;

		if (row >= 0 && dasa_get_bool(&trees, row, "free"))
		{
			deconstruct_array(DatumGetArrayTypeP(dasa_get(&trees, row, "ids", &isnull)),
							  TEXTOID, -1, false, TYPALIGN_INT, &ids, NULL, &n);
			if (r->max_rows > 0 && doomed.n + n > r->max_rows)
			{
				if (doomed.n == 0)
					doom(&doomed, root_ids[i], ids, n, r->max_rows);	/* its deepest */
				r->done = false;	/* this tree (or its rest) next step */
				break;
			}
			doom(&doomed, root_ids[i], ids, n, n);
		}
		r->after_at = dasa_get_timestamp(&roots, i, "settled_at");
		strlcpy(r->after_id, root_ids[i], sizeof(r->after_id));
	}
	r->removed += remove_doomed(&doomed);
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
