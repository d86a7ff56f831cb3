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

void
dasa_inline_set_runner(DasaInlineRunner run)
{
	runner = run;
}

/*
 * The attempt of c awaits id, still pending: if id is an in-database
 * invocation c itself created in this attempt, try to run it right here.
 * True if it ran and settled (its value is then read as any settled one).
 */
bool
dasa_inline_try(DasaContext *c, const char *id)
{
	DasaCreated *made = dasa_recorded_fresh_child(c, id);

	if (runner == NULL || made == NULL || made->function == NULL || made->queue != NULL ||
		made->run_at > GetCurrentTimestamp() || made->rerun_of != NULL)
		return false;
	return runner(c, made);
}
