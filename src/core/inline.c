/*
 * inline.c: running an awaited child at once, inside its parent's attempt.
 *
 * A workflow that awaits each child right after invoking it would suspend
 * at every step and replay everything before it when resumed: N steps,
 * N(N+1)/2 replayed calls. But a child the running attempt has just
 * created is invisible to every other session until the attempt's batch
 * commits, so nobody else can run it yet: the executor may as well run it
 * here and now, in a subtransaction of the parent's, and hand its value to
 * the await. The child is settled and its task completed in the parent's
 * transaction; should the parent then suspend or fail, all of it rolls
 * back with the parent's attempt and the child runs later as any other.
 *
 * The kernel only decides what may be tried; the executor, which owns
 * attempts, registers how to run one (runtime/inline.c).
 */
#include "core/core.h"

static DasaInlineRunner runner = NULL;
static DasaInlineAllRunner runner_all = NULL;

void
dasa_inline_set_runner(DasaInlineRunner run, DasaInlineAllRunner run_all)
{
	runner = run;
	runner_all = run_all;
}

/* The in-database invocation made in c's running attempt under id, due now; NULL if id is not one. */
static DasaCreated *
runnable_here(DasaContext *c, const char *id)
{
	DasaCreated *made = dasa_recorded_fresh_child(c, id);

	if (made == NULL || made->ran || made->function == NULL || made->queue != NULL ||
		made->run_at > GetCurrentTimestamp() || made->rerun_of != NULL)
		return NULL;
	return made;
}

/*
 * The attempt of c awaits id, still pending: if id is an in-database
 * invocation c itself created in this attempt, try to run it right here.
 * True if it ran and settled (its value is then read as any settled one).
 */
bool
dasa_inline_try(DasaContext *c, const char *id)
{
	DasaCreated *made = runnable_here(c, id);

	if (runner == NULL || made == NULL)
		return false;
	return runner(c, made);
}

/*
 * The attempt of c awaits all of ids, still pending (await_all): if every
 * one is such a child, try to run them all right here, one after another.
 * A fan-out of quick children then costs neither their separate claims and
 * commits nor the parent's replay. True if all ran and resolved (each then
 * reads as resolved: DasaCreated.ran). Only all or none: had one to wait,
 * the parent would suspend, and what ran here would roll back with it.
 */
bool
dasa_inline_try_all(DasaContext *c, List *ids)
{
	DasaCreated **children = palloc(sizeof(DasaCreated *) * Max(list_length(ids), 1));
	ListCell   *lc;

	if (runner_all == NULL)
		return false;
	foreach(lc, ids)
		if ((children[foreach_current_index(lc)] = runnable_here(c, (char *) lfirst(lc))) == NULL)
			return false;
	return runner_all(c, children, list_length(ids));
}
