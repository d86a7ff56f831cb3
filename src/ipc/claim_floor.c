/*
 * claim_floor.c: where a claim of in-database tasks starts reading.
 *
 * The claim reads the index of pending tasks in run_at order. A finished
 * task leaves a dead entry behind, and those pile up at the low end until
 * vacuum removes them (or never, while an old snapshot holds them): a claim
 * reading from the start would step over every task finished since. So a
 * database keeps a floor, a time before which no pending task is due, and
 * claims read from there.
 *
 * A claim raises the floor to the first task it took (or to its own now if
 * it took none): everything before was finished, or is held by a claim
 * that runs it. Whoever makes a task pending lowers the floor to the task's
 * run_at once it commits (wakeup.c); whoever gives a task back unfinished
 * (a batch ending early, a rolled-back claim or lock) lowers it to that
 * task's run_at, or to 0. A raise is dropped if any lowering came between
 * the claim's read and its raise (the generation): that claim's snapshot
 * may predate the task that lowered it. As a last resort against a path
 * nobody thought of, a claim reads from the start every few seconds.
 */
#include "ipc/ipc.h"

#include "utils/timestamp.h"

/* A claim reads the whole index at least this often. */
#define FULL_WALK_INTERVAL_MS 5000

void
dasa_claim_floor_init(DasaClaimFloor *f)
{
	SpinLockInit(&f->lock);
	f->floor = 0;
	f->generation = 0;
	f->walked_at = 0;
}

/* The floor for a claim about to start, and the generation it was read at. */
TimestampTz
dasa_claim_floor_read(uint64 *generation)
{
	DasaDatabase *db = dasa_my_database();
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz floor;
	DasaClaimFloor *f;

	*generation = 0;
	if (db == NULL)
		return 0;
	f = &db->claim_floor;
	SpinLockAcquire(&f->lock);
	if (now - f->walked_at >= (TimestampTz) FULL_WALK_INTERVAL_MS * 1000)
	{
		f->walked_at = now;
		f->floor = 0;
		f->generation++;
	}
	floor = f->floor;
	*generation = f->generation;
	SpinLockRelease(&f->lock);
	return floor;
}

/* A claim read at generation found nothing pending before to: raise the floor. */
void
dasa_claim_floor_raise(uint64 generation, TimestampTz to)
{
	DasaDatabase *db = dasa_my_database();
	DasaClaimFloor *f;

	if (db == NULL)
		return;
	f = &db->claim_floor;
	SpinLockAcquire(&f->lock);
	if (f->generation == generation && to > f->floor)
		f->floor = to;
	SpinLockRelease(&f->lock);
}

/* A task due at to is (or may be) pending: claims must read from there. */
void
dasa_claim_floor_lower(TimestampTz to)
{
	DasaDatabase *db = dasa_my_database();
	DasaClaimFloor *f;

	if (db == NULL)
		return;
	f = &db->claim_floor;
	SpinLockAcquire(&f->lock);
	if (to < f->floor)
		f->floor = to;
	f->generation++;
	SpinLockRelease(&f->lock);
}
