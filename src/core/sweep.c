/*
 * sweep.c: the background half of promise timeouts.
 *
 * Finds pending promises whose deadline has passed and settles them through
 * the kernel (timers resolve, the rest time out), and finds the next
 * deadline to sleep until. Both read only the partial index of pending
 * deadlines, so their cost follows what is due, not the size of the table.
 * Runs inside the caller's transaction and SPI connection; never commits.
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

/*
 * Up to $2 expired pending promises, locked. A promise whose task an
 * executor holds right now is passed by: the executor settles it itself.
 */
static DasaStatement due_promises = {
	.sql = "SELECT id FROM dasa.promises"
	"  WHERE settled_at IS NULL AND timeout_at <= $1"
	"  ORDER BY timeout_at LIMIT $2"
	"  FOR UPDATE SKIP LOCKED",
	.args = {TIMESTAMPTZOID, INT4OID},
	.columns = {"id"},
};

/*
 * The earliest deadline of a pending promise after $1 and up to $2. Bounded:
 * the index still holds the entries of settled promises until vacuum, and
 * reading up to the worker's next wake-up steps over only those.
 */
static DasaStatement next_deadline = {
	.sql = "SELECT min(timeout_at) AS next FROM dasa.promises "
	"WHERE settled_at IS NULL AND timeout_at > $1 AND timeout_at <= $2",
	.args = {TIMESTAMPTZOID, TIMESTAMPTZOID},
	.columns = {"next"},
};

/* Settle up to batch expired promises; returns how many were due. */
int
dasa_sweep_expired(TimestampTz now, int batch)
{
	Datum		args[2] = {TimestampTzGetDatum(now), Int32GetDatum(batch)};
	DasaRows	due = dasa_run(&due_promises, args, NULL, 0);
	char	  **ids = palloc(Max(due.n, 1) * sizeof(char *));

	if (due.n > 0)
		dasa_tasks_locked_here();	/* claims skip their tasks meanwhile */
	for (uint64 i = 0; i < due.n; i++)
		ids[i] = dasa_get_text(&due, i, "id");
	if (due.n > 0)
		(void) dasa_settle((int) due.n, ids, NULL, NULL, true);
	return (int) due.n;
}

/* The earliest deadline of a pending promise after now and up to until; 0 if there is none. */
TimestampTz
dasa_next_deadline(TimestampTz now, TimestampTz until)
{
	Datum		args[2] = {TimestampTzGetDatum(now), TimestampTzGetDatum(until)};
	DasaRows	rows = dasa_run(&next_deadline, args, NULL, 1);

	return dasa_get_timestamp(&rows, 0, "next");
}
